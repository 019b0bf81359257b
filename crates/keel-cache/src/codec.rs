//! The versioned binary envelope every value stored in Redis goes through.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | magic `0xC7` |
//! | 1 | format version (`1`) |
//! | 1 | kind: `0` value, `1` cached absence (negative caching), `2` deleted |
//! | 8 | fresh until, milliseconds since the Unix epoch; `0` = no expiry (for a deletion: a unique id) |
//! | 4 | fingerprint of the value's Rust type name (`0` for a deletion) |
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
//! recognisable as stale. postcard is not self-describing, so the type
//! fingerprint keeps a value written as one type from being read as garbage
//! of another: a mismatch is a miss, like any other undecodable bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: u8 = 0xC7;
/// The envelope format this build writes and reads.
pub const CODEC_VERSION: u8 = 1;
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
    /// Written as a different Rust type than the one asked for.
    #[error("envelope holds another type")]
    Type,
    /// The payload does not decode as the requested type.
    #[error("payload does not decode as the requested type")]
    Payload(#[source] postcard::Error),
    /// Bytes left over after the value.
    #[error("{0} bytes after the value")]
    Trailing(usize),
}

/// FNV-1a of the type's name: equal for the same type in the same build,
/// and in practice across builds that did not rename it.
fn fingerprint<V: ?Sized>() -> u32 {
    std::any::type_name::<V>()
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
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
    /// An envelope from bytes read from Redis.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
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
    out.extend_from_slice(&fingerprint::<V>().to_le_bytes());
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
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
    decode_stored(bytes).map(Envelope::from)
}

/// [`decode`], leaving the expiry as written.
pub(crate) fn decode_stored<V: DeserializeOwned>(bytes: &[u8]) -> Result<Stored<V>, DecodeError> {
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
    let mut type_id = [0u8; 4];
    type_id.copy_from_slice(&bytes[11..HEADER]);
    if u32::from_le_bytes(type_id) != fingerprint::<V>() {
        return Err(DecodeError::Type);
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

    #[test]
    fn values_and_absences_round_trip() {
        let until = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let bytes = encode(Some(&("user".to_owned(), 42u32)), Some(until)).unwrap();
        let env: Envelope<(String, u32)> = decode(&bytes).unwrap();
        assert_eq!(env.value, Some(("user".to_owned(), 42)));
        assert_eq!(env.fresh_until, Some(until));

        let bytes = encode::<u32>(None, None).unwrap();
        let env: Envelope<u32> = decode(&bytes).unwrap();
        assert_eq!(
            env,
            Envelope {
                value: None,
                fresh_until: None
            }
        );
    }

    #[test]
    fn every_kind_of_corruption_is_an_error_not_a_panic() {
        let good = encode(Some(&"hello".to_owned()), None).unwrap();
        assert!(matches!(
            decode::<String>(&[]),
            Err(DecodeError::TooShort(0))
        ));
        assert!(matches!(
            decode::<String>(b"plain text value"),
            Err(DecodeError::BadMagic)
        ));
        let mut v2 = good.clone();
        v2[1] = 2;
        assert!(matches!(
            decode::<String>(&v2),
            Err(DecodeError::Version(2))
        ));
        let mut kind = good.clone();
        kind[2] = 9;
        assert!(matches!(decode::<String>(&kind), Err(DecodeError::Kind(9))));
        let truncated = &good[..good.len() - 2];
        assert!(matches!(
            decode::<String>(truncated),
            Err(DecodeError::Payload(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<String>(&trailing),
            Err(DecodeError::Trailing(1))
        ));
        assert!(matches!(decode::<Vec<u64>>(&good), Err(DecodeError::Type)));
        // Every prefix and every single-byte flip decodes or errors; none panics.
        for i in 0..good.len() {
            let _ = decode::<String>(&good[..i]);
            let mut flipped = good.clone();
            flipped[i] ^= 0xFF;
            let _ = decode::<String>(&flipped);
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn tombstones_are_unique_and_never_decode_as_a_value() {
        let (a, b) = (tombstone(), tombstone());
        assert_ne!(a, b);
        assert!(is_tombstone(&a) && is_tombstone(&b));
        assert!(matches!(decode::<String>(&a), Err(DecodeError::Type)));
        assert!(decode::<()>(&a).is_err());
        let value = encode(Some(&7u32), None).unwrap();
        assert!(!is_tombstone(&value));
        assert!(!is_tombstone(&encode::<u32>(None, None).unwrap()));
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
