//! [`CacheKey`]: keys that have a string form, for Redis and invalidations.

use std::borrow::Cow;
use std::hash::Hash;

/// A key of a [`TieredCache`](crate::TieredCache): hashable for the local
/// tier, and with a string form for the Redis key and for invalidation
/// messages, which other instances turn back into a key.
///
/// Implemented for `String` and the integer types; implement it for your
/// own key types (the string form must round-trip).
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The key's string form.
    fn to_key(&self) -> Cow<'_, str>;
    /// The key back from its string form; `None` if it is not one.
    fn from_key(key: &str) -> Option<Self>;
    /// Appends the key's string form (the same text as
    /// [`to_key`](Self::to_key)) to `out`. The Redis tier builds its keys
    /// with this, in one reused buffer; override it when `to_key` allocates.
    fn write_key(&self, out: &mut String) {
        out.push_str(&self.to_key());
    }
}

impl CacheKey for String {
    fn to_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(key.to_owned())
    }
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn to_key(&self) -> Cow<'_, str> {
                Cow::Owned(itoa::Buffer::new().format(*self).to_owned())
            }
            fn from_key(key: &str) -> Option<Self> {
                key.parse().ok()
            }
            fn write_key(&self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}

int_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_string_form() {
        assert_eq!(u64::from_key(&42u64.to_key()), Some(42));
        assert_eq!(i32::from_key(&(-7i32).to_key()), Some(-7));
        assert_eq!(String::from_key("user:1").as_deref(), Some("user:1"));
        assert_eq!(u64::from_key("nope"), None);
    }

    #[test]
    fn written_keys_match_the_display_form() {
        fn check<K: CacheKey + std::fmt::Display>(k: K) {
            let mut out = String::from("p:");
            k.write_key(&mut out);
            assert_eq!(out, format!("p:{k}"));
            assert_eq!(k.to_key(), k.to_string());
        }
        for v in [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            check(v);
        }
        for v in [0i64, -1, 7, -10, i64::MIN, i64::MAX] {
            check(v);
        }
        check(u128::MAX);
        check(i128::MIN);
        check(i8::MIN);
        check(u8::MAX);
        check(usize::MAX);
        check(isize::MIN);
        check("user:1".to_owned());
    }
}
