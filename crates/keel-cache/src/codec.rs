//! The versioned binary envelope every value stored in Redis goes through.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | magic `0xC7` |
//! | 1 | format version (`2`) |
//! | 1 | kind: `0` value, `1` cached absence (negative caching), `2` deleted |
//! | 8 | fresh until, milliseconds since the Unix epoch; `0` = no expiry (for a deletion: a unique id) |
//! | 4 | the cache's [`Schema`] tag (`0` for a deletion) |
//! | … | the value, `postcard`-encoded (empty for an absence or a deletion) |
//!
//! A *deletion* (tombstone) is what a delete leaves for a while instead of
//! nothing: a reader takes it for a miss, and a load that began before the
//! delete finds the bytes changed and does not fill the key (see
//! `RedisCache::fill`). Each one is unique, so no two deletions compare
//! equal.
//!
//! The logical expiry lives in the envelope, not only in Redis's TTL, so a
//! reader can back-fill L1 with the *remaining* freshness without a second
//! round trip, and an entry kept past its freshness (for stale-if-error) is
//! recognisable as stale. postcard is not self-describing, so the schema
//! tag keeps a value written as one type from being read as garbage of
//! another: a mismatch is a miss, like any other undecodable bytes. The tag
//! comes from names the user chose (the cache's `schema`, by default its
//! name, and `schema_version`), never from the build, so instances built by
//! different compilers read each other's entries, and a deploy that changes
//! a cache's value type changes its `schema_version` to leave the old
//! entries behind as misses.
//!
//! Format 1 tagged values with a hash of `std::any::type_name`, which the
//! standard library does not keep stable between compiler releases; its
//! entries read as misses (`DecodeError::Version(1)`) and are rewritten by
//! the next load.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: u8 = 0xC7;
/// The envelope format this build writes and reads.
pub const CODEC_VERSION: u8 = 2;
const HEADER: usize = 15;
const KIND_VALUE: u8 = 0;
const KIND_ABSENT: u8 = 1;
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
const KIND_DELETED: u8 = 2;

/// Why bytes read from Redis could not be decoded. Callers treat every one
/// of these as a miss.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header needs.
    #[error("envelope too short ({0} bytes)")]
    TooShort(usize),
    /// The first byte is not the envelope's magic: not written by Keel.
    #[error("not a keel envelope")]
    BadMagic,
    /// Written by a different format version.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// Written under another schema (name or version) than the reader's.
    #[error("envelope written under another schema")]
    Schema,
    /// The payload does not decode as the requested type.
    #[error("payload does not decode as the requested type")]
    Payload(#[source] postcard::Error),
    /// Bytes left over after the value.
    #[error("{0} bytes after the value")]
    Trailing(usize),
}

/// What the values of one cache are tagged with in Redis (and in warm
/// snapshots): a name and a version the user controls, so the tag is the
/// same in every build and changes only when the user says the value type
/// changed.
///
/// A cache's schema is `schema` from its config section (by default the
/// cache's name) at `schema_version` (by default 1).
///
/// ```
/// use keel_cache::Schema;
///
/// let v1 = Schema::new("profiles", 1);
/// assert_eq!(v1, Schema::new("profiles", 1));
/// assert_ne!(v1.tag(), Schema::new("profiles", 2).tag());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Schema {
    tag: u32,
}

impl Schema {
    /// The schema `name` at `version`.
    pub fn new(name: &str, version: u32) -> Self {
        // FNV-1a over the name, a separator no UTF-8 text holds, and the
        // version: fixed by this definition, not by the compiler.
        let fnv = |h: u32, b: u8| (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        let h = name.bytes().fold(0x811c_9dc5_u32, fnv);
        let h = version.to_le_bytes().into_iter().fold(fnv(h, 0xFF), fnv);
        // 0 marks a deletion.
        Self { tag: h.max(1) }
    }

    /// The four bytes written into each envelope.
    pub fn tag(&self) -> u32 {
        self.tag
    }
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<V> {
    /// The value, or `None` for a cached absence.
    pub value: Option<V>,
    /// When the entry stops being fresh; `None` = never.
    pub fresh_until: Option<SystemTime>,
}

impl<V: DeserializeOwned> Envelope<V> {
    /// An envelope from bytes read from Redis, written under `schema`.
    pub fn decode(bytes: &[u8], schema: Schema) -> Result<Self, DecodeError> {
        decode(bytes, schema)
    }
}

impl<V> Envelope<V> {
    /// Whether the entry is still fresh at `now`.
    pub fn is_fresh_at(&self, now: SystemTime) -> bool {
        self.fresh_until.is_none_or(|t| now < t)
    }

    /// Freshness left at `now`: `None` = unlimited, zero when stale.
    pub fn remaining_at(&self, now: SystemTime) -> Option<Duration> {
        self.fresh_until
            .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Encodes a value (or, with `None`, a cached absence).
pub(crate) fn encode<V: Serialize>(
    value: Option<&V>,
    fresh_until: Option<SystemTime>,
    schema: Schema,
) -> Result<Vec<u8>, postcard::Error> {
    let millis = fresh_until.map_or(0, |t| {
        t.duration_since(UNIX_EPOCH).map_or(1, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
    });
    let mut out = Vec::with_capacity(HEADER + 16);
    out.push(MAGIC);
    out.push(CODEC_VERSION);
    out.push(if value.is_some() {
        KIND_VALUE
    } else {
        KIND_ABSENT
    });
    out.extend_from_slice(&millis.to_le_bytes());
    out.extend_from_slice(&schema.tag.to_le_bytes());
    if let Some(value) = value {
        out = postcard::to_extend(value, out)?;
    }
    Ok(out)
}

#[cfg(feature = "redis")]
/// A deletion marker: the header with kind `2` and a unique id in place of
/// the freshness.
pub(crate) fn tombstone() -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Unique within the process by the counter, across processes (with
    // overwhelming likelihood) by the random start.
    let id = NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(*TOMBSTONE_SEED);
    let mut out = Vec::with_capacity(HEADER);
    out.push(MAGIC);
    out.push(CODEC_VERSION);
    out.push(KIND_DELETED);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

#[cfg(feature = "redis")]
static TOMBSTONE_SEED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| fastrand::u64(..));

#[cfg(feature = "redis")]
/// Whether `bytes` are a deletion marker written by [`tombstone`].
pub(crate) fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.len() == HEADER
        && bytes[0] == MAGIC
        && bytes[1] == CODEC_VERSION
        && bytes[2] == KIND_DELETED
}

/// An envelope as stored: its expiry still in milliseconds since the Unix
/// epoch (`0` = never), for readers that compare it with a clock of their
/// own rather than a [`SystemTime`].
#[derive(Debug)]
pub(crate) struct Stored<V> {
    pub(crate) value: Option<V>,
    pub(crate) fresh_until_ms: u64,
}

impl<V> From<Stored<V>> for Envelope<V> {
    fn from(stored: Stored<V>) -> Self {
        let millis = stored.fresh_until_ms;
        Envelope {
            value: stored.value,
            fresh_until: (millis != 0).then(|| UNIX_EPOCH + Duration::from_millis(millis)),
        }
    }
}

/// Decodes bytes written by [`encode`].
pub(crate) fn decode<V: DeserializeOwned>(
    bytes: &[u8],
    schema: Schema,
) -> Result<Envelope<V>, DecodeError> {
    decode_stored(bytes, schema).map(Envelope::from)
}

/// [`decode`], leaving the expiry as written.
pub(crate) fn decode_stored<V: DeserializeOwned>(
    bytes: &[u8],
    schema: Schema,
) -> Result<Stored<V>, DecodeError> {
    if bytes.len() < HEADER {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[1] != CODEC_VERSION {
        return Err(DecodeError::Version(bytes[1]));
    }
    let mut millis = [0u8; 8];
    millis.copy_from_slice(&bytes[3..11]);
    let millis = u64::from_le_bytes(millis);
    let mut tag = [0u8; 4];
    tag.copy_from_slice(&bytes[11..HEADER]);
    if u32::from_le_bytes(tag) != schema.tag {
        return Err(DecodeError::Schema);
    }
    let value = match bytes[2] {
        KIND_VALUE => {
            let (value, rest) =
                postcard::take_from_bytes(&bytes[HEADER..]).map_err(DecodeError::Payload)?;
            if !rest.is_empty() {
                return Err(DecodeError::Trailing(rest.len()));
            }
            Some(value)
        }
        KIND_ABSENT => None,
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(Stored {
        value,
        fresh_until_ms: millis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new("users", 1)
    }

    #[test]
    fn values_and_absences_round_trip() {
        let until = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let bytes = encode(Some(&("user".to_owned(), 42u32)), Some(until), schema()).unwrap();
        let env: Envelope<(String, u32)> = decode(&bytes, schema()).unwrap();
        assert_eq!(env.value, Some(("user".to_owned(), 42)));
        assert_eq!(env.fresh_until, Some(until));

        let bytes = encode::<u32>(None, None, schema()).unwrap();
        let env: Envelope<u32> = decode(&bytes, schema()).unwrap();
        assert_eq!(
            env,
            Envelope {
                value: None,
                fresh_until: None
            }
        );
    }

    #[test]
    fn the_tag_depends_on_the_schema_name_and_version_only() {
        assert_eq!(Schema::new("users", 1), schema());
        assert_ne!(Schema::new("users", 2), schema());
        assert_ne!(Schema::new("user", 1), schema());
        // The name and the version cannot run into each other.
        assert_ne!(Schema::new("a1", 0).tag(), Schema::new("a", 1).tag());
        let bytes = encode(Some(&7u32), None, schema()).unwrap();
        assert!(matches!(
            decode::<u32>(&bytes, Schema::new("users", 2)),
            Err(DecodeError::Schema)
        ));
        assert_eq!(decode::<u32>(&bytes, schema()).unwrap().value, Some(7));
    }

    #[test]
    fn every_kind_of_corruption_is_an_error_not_a_panic() {
        let s = schema();
        let good = encode(Some(&"hello".to_owned()), None, s).unwrap();
        assert!(matches!(
            decode::<String>(&[], s),
            Err(DecodeError::TooShort(0))
        ));
        assert!(matches!(
            decode::<String>(b"plain text value", s),
            Err(DecodeError::BadMagic)
        ));
        let mut v1 = good.clone();
        v1[1] = 1;
        assert!(matches!(
            decode::<String>(&v1, s),
            Err(DecodeError::Version(1))
        ));
        let mut kind = good.clone();
        kind[2] = 9;
        assert!(matches!(
            decode::<String>(&kind, s),
            Err(DecodeError::Kind(9))
        ));
        let truncated = &good[..good.len() - 2];
        assert!(matches!(
            decode::<String>(truncated, s),
            Err(DecodeError::Payload(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<String>(&trailing, s),
            Err(DecodeError::Trailing(1))
        ));
        // Every prefix and every single-byte flip decodes or errors; none panics.
        for i in 0..good.len() {
            let _ = decode::<String>(&good[..i], s);
            let mut flipped = good.clone();
            flipped[i] ^= 0xFF;
            let _ = decode::<String>(&flipped, s);
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn tombstones_are_unique_and_never_decode_as_a_value() {
        let (a, b) = (tombstone(), tombstone());
        assert_ne!(a, b);
        assert!(is_tombstone(&a) && is_tombstone(&b));
        assert!(matches!(
            decode::<String>(&a, schema()),
            Err(DecodeError::Schema)
        ));
        assert!(decode::<()>(&a, schema()).is_err());
        let value = encode(Some(&7u32), None, schema()).unwrap();
        assert!(!is_tombstone(&value));
        assert!(!is_tombstone(&encode::<u32>(None, None, schema()).unwrap()));
    }

    #[test]
    fn remaining_freshness_is_measured_from_now() {
        let now = SystemTime::now();
        let env = Envelope {
            value: Some(1u8),
            fresh_until: Some(now + Duration::from_secs(5)),
        };
        assert_eq!(env.remaining_at(now), Some(Duration::from_secs(5)));
        assert!(env.is_fresh_at(now));
        assert!(!env.is_fresh_at(now + Duration::from_secs(5)));
        assert_eq!(
            env.remaining_at(now + Duration::from_secs(9)),
            Some(Duration::ZERO)
        );
    }
}
