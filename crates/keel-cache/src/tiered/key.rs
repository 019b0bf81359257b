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
}

impl CacheKey for String {
    fn to_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(key.to_owned())
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn to_key(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
            fn from_key(key: &str) -> Option<Self> {
                key.parse().ok()
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
}
