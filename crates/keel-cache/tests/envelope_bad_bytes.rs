//! Bad bytes never panic: whatever sits under a key in Redis (garbage, a
//! valid envelope with bits flipped, cut short, extended or overwritten, a
//! value written under another schema), the envelope decoder answers a
//! value or an error (which the Redis tier counts as a miss), and a valid
//! envelope reads back as written. On a real Redis, a `TieredCache` reads
//! such bytes as exactly what the decoder says: a value, or a counted miss.
//!
//! Envelopes are built here from the layout documented in `src/codec.rs`
//! (header, then the postcard payload), not by the code under test.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use keel_cache::{CODEC_VERSION, DecodeError, Envelope, Schema};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const MAGIC: u8 = 0xC7;
const KIND_VALUE: u8 = 0;
const KIND_ABSENT: u8 = 1;
const KIND_DELETED: u8 = 2;
const HEADER: usize = 15;

/// A value with the shapes postcard encodes differently: varints, lengths,
/// options, a nested sequence and a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    lines: Vec<(String, u32)>,
    coupon: Option<String>,
    paid_at: Option<u64>,
    attributes: BTreeMap<String, Vec<u8>>,
    discount: i16,
    express: bool,
}

/// An enum, whose variant index is one more varint a mutation can break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Created { at: u64 },
    Renamed(String, String),
    Deleted,
}

fn order() -> impl Strategy<Value = Order> {
    (
        any::<u64>(),
        ".{0,24}",
        proptest::collection::vec((".{0,8}", any::<u32>()), 0..6),
        proptest::option::of("[A-Z0-9]{0,10}"),
        proptest::option::of(any::<u64>()),
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            proptest::collection::vec(any::<u8>(), 0..8),
            0..4,
        ),
        any::<i16>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, customer, lines, coupon, paid_at, attributes, discount, express)| Order {
                id,
                customer,
                lines,
                coupon,
                paid_at,
                attributes,
                discount,
                express,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        any::<u64>().prop_map(|at| Event::Created { at }),
        (".{0,12}", ".{0,12}").prop_map(|(a, b)| Event::Renamed(a, b)),
        Just(Event::Deleted),
    ]
}

/// A schema name and version as a user would write them.
fn schema() -> impl Strategy<Value = (String, u32)> {
    ("[a-z][a-z0-9_-]{0,15}", any::<u32>())
}

/// The bytes of an envelope: the header, then the postcard payload of
/// `value` (`None`: a cached absence).
fn envelope<V: Serialize>(value: Option<&V>, fresh_until_ms: u64, schema: Schema) -> Vec<u8> {
    let mut out = vec![
        MAGIC,
        CODEC_VERSION,
        if value.is_some() {
            KIND_VALUE
        } else {
            KIND_ABSENT
        },
    ];
    out.extend_from_slice(&fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&schema.tag().to_le_bytes());
    if let Some(value) = value {
        out.extend(postcard::to_allocvec(value).expect("test values serialize"));
    }
    out
}

/// The envelope a reader should see for what [`envelope`] wrote.
fn expected<V>(value: Option<V>, fresh_until_ms: u64) -> Envelope<V> {
    Envelope {
        value,
        fresh_until: (fresh_until_ms != 0)
            .then(|| UNIX_EPOCH + Duration::from_millis(fresh_until_ms)),
    }
}

/// One way bytes go bad between a writer and a reader.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Replace(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    Extend(Vec<u8>),
    /// Overwrites one header field with an arbitrary byte, so mutations
    /// also reach the checks after the magic byte.
    Header(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Header(i, b)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..5)
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Replace(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        Mutation::Remove(i) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes.remove(i);
        }
        Mutation::Truncate(i) => {
            let len = i.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Header(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len().min(HEADER));
            bytes[i] = *b;
        }
        _ => {}
    }
}

/// The decoder's answer for `bytes` read as `V` under `schema`: `Some`
/// envelope, or `None` for an error (a miss to the Redis tier). A panic
/// fails the case; so does a decoded envelope that does not read back the
/// same once written again.
fn outcome<V>(bytes: &[u8], schema: Schema) -> Result<Option<Envelope<V>>, TestCaseError>
where
    V: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(decoded) = Envelope::<V>::decode(bytes, schema) else {
        return Ok(None);
    };
    let ms = decoded.fresh_until.map_or(0, |t| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let again = envelope(decoded.value.as_ref(), ms, schema);
    let reread = Envelope::<V>::decode(&again, schema);
    prop_assert!(
        reread.as_ref().is_ok_and(|r| r == &decoded),
        "{decoded:?} rewritten as {again:02x?} reads {reread:?}"
    );
    Ok(Some(decoded))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_a_miss_or_a_value_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        (name, version) in schema(),
    ) {
        let schema = Schema::new(&name, version);
        outcome::<String>(&bytes, schema)?;
        outcome::<Order>(&bytes, schema)?;
        outcome::<Option<u64>>(&bytes, schema)?;
        outcome::<Event>(&bytes, schema)?;
        outcome::<()>(&bytes, schema)?;
    }

    #[test]
    fn any_payload_after_a_valid_header_is_a_miss_or_a_value_never_a_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..96),
        kind in prop_oneof![Just(KIND_VALUE), Just(KIND_ABSENT), Just(KIND_DELETED), any::<u8>()],
        fresh_until_ms in any::<u64>(),
        (name, version) in schema(),
    ) {
        let schema = Schema::new(&name, version);
        let mut bytes = vec![MAGIC, CODEC_VERSION, kind];
        bytes.extend_from_slice(&fresh_until_ms.to_le_bytes());
        bytes.extend_from_slice(&schema.tag().to_le_bytes());
        bytes.extend_from_slice(&payload);
        outcome::<String>(&bytes, schema)?;
        outcome::<Order>(&bytes, schema)?;
        outcome::<Option<u64>>(&bytes, schema)?;
        outcome::<Vec<Order>>(&bytes, schema)?;
        outcome::<Event>(&bytes, schema)?;
        // Only a value kind carries a payload: anything else with bytes
        // after the header, or an unknown kind, is never read as a value.
        if kind != KIND_VALUE {
            let decoded = outcome::<String>(&bytes, schema)?;
            prop_assert!(decoded.is_none_or(|e| e.value.is_none()));
        }
    }

    #[test]
    fn a_valid_envelope_reads_back_as_written(
        value in order(),
        event in event(),
        absent in any::<bool>(),
        fresh_until_ms in any::<u64>(),
        (name, version) in schema(),
    ) {
        let schema = Schema::new(&name, version);
        let value = (!absent).then_some(value);
        let bytes = envelope(value.as_ref(), fresh_until_ms, schema);
        let decoded = Envelope::<Order>::decode(&bytes, schema);
        prop_assert!(decoded.is_ok(), "{decoded:?}");
        if let Ok(decoded) = decoded {
            prop_assert_eq!(decoded, expected(value, fresh_until_ms));
        }
        let bytes = envelope(Some(&event), fresh_until_ms, schema);
        let decoded = Envelope::<Event>::decode(&bytes, schema);
        prop_assert!(decoded.is_ok(), "{decoded:?}");
        if let Ok(decoded) = decoded {
            prop_assert_eq!(decoded, expected(Some(event), fresh_until_ms));
        }
    }

    #[test]
    fn mutated_strings_are_a_miss_or_a_value_never_a_panic(
        value in ".{0,40}",
        fresh_until_ms in any::<u64>(),
        mutations in mutations(),
    ) {
        let schema = Schema::new("names", 1);
        let mut bytes = envelope(Some(&value), fresh_until_ms, schema);
        let original = bytes.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let decoded = outcome::<String>(&bytes, schema)?;
        if bytes == original {
            prop_assert_eq!(decoded, Some(expected(Some(value), fresh_until_ms)));
        }
    }

    #[test]
    fn mutated_structs_are_a_miss_or_a_value_never_a_panic(
        value in order(),
        fresh_until_ms in any::<u64>(),
        mutations in mutations(),
    ) {
        let schema = Schema::new("orders", 3);
        let mut bytes = envelope(Some(&value), fresh_until_ms, schema);
        let original = bytes.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let decoded = outcome::<Order>(&bytes, schema)?;
        // Bytes that decode as an `Order` may still be read as another
        // type by a reader with a wrong idea of the schema: no panic there
        // either.
        outcome::<Vec<Order>>(&bytes, schema)?;
        outcome::<Event>(&bytes, schema)?;
        if bytes == original {
            prop_assert_eq!(decoded, Some(expected(Some(value), fresh_until_ms)));
        }
    }

    #[test]
    fn mutated_absences_and_optional_values_are_a_miss_or_a_value_never_a_panic(
        value in proptest::option::of(proptest::option::of(any::<u64>())),
        fresh_until_ms in any::<u64>(),
        mutations in mutations(),
    ) {
        // `None`: a cached absence; `Some(None)`: a cached `Option` that is
        // `None`, a value like any other.
        let schema = Schema::new("maybe", 1);
        let mut bytes = envelope(value.as_ref(), fresh_until_ms, schema);
        let original = bytes.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let decoded = outcome::<Option<u64>>(&bytes, schema)?;
        if bytes == original {
            prop_assert_eq!(decoded, Some(expected(value, fresh_until_ms)));
        }
    }

    #[test]
    fn a_value_read_under_another_schema_or_version_is_a_schema_miss(
        value in order(),
        absent in any::<bool>(),
        fresh_until_ms in any::<u64>(),
        (name, version) in schema(),
        (other_name, other_version) in schema(),
        bump in 1u32..,
    ) {
        let written = Schema::new(&name, version);
        let value = (!absent).then_some(value);
        let bytes = envelope(value.as_ref(), fresh_until_ms, written);
        // A deploy that raises the version, and a reader of another cache.
        let readers = [
            Schema::new(&name, version.wrapping_add(bump)),
            Schema::new(&other_name, other_version),
        ];
        for reader in readers {
            // The tag is 32 bits: two schemas may (rarely) share one.
            if reader.tag() == written.tag() {
                continue;
            }
            let decoded = Envelope::<Order>::decode(&bytes, reader);
            prop_assert!(matches!(decoded, Err(DecodeError::Schema)), "{decoded:?}");
            // Whatever the reader thinks the type is.
            let decoded = Envelope::<String>::decode(&bytes, reader);
            prop_assert!(matches!(decoded, Err(DecodeError::Schema)), "{decoded:?}");
        }
    }
}

#[test]
fn the_envelopes_built_here_are_the_pinned_format() {
    // The first bytes of `tests/data/envelope-v2.txt`'s `absent` entry:
    // the layout this file builds envelopes from.
    let bytes = envelope::<()>(None, 1_800_000_000_000, Schema::new("profiles", 1));
    let pinned = [
        0xc7, 0x02, 0x01, 0x00, 0x50, 0x5c, 0x18, 0xa3, 0x01, 0x00, 0x00, 0x99, 0x6a, 0x0c, 0x33,
    ];
    assert_eq!(bytes, pinned);
}

#[cfg(feature = "redis")]
mod on_redis {
    //! What a `TieredCache` reads when the bytes under its key went bad.

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    use keel_cache::{CacheSettings, RedisCache, RedisConfig, TieredCache};
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    const CACHE: &str = "orders";

    /// Bytes a broken writer, another program or a disk fault could leave:
    /// garbage, and valid `Order` envelopes (fresh, stale, absent) mutated.
    fn stored_bytes() -> impl Strategy<Value = Vec<u8>> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let fresh_until = prop_oneof![Just(0u64), (now_ms + 3_600_000..u64::MAX), (1..now_ms),];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (
                proptest::option::of(order()),
                fresh_until,
                proptest::collection::vec(mutation(), 0..4)
            )
                .prop_map(|(value, fresh_until_ms, mutations)| {
                    let mut bytes = envelope(value.as_ref(), fresh_until_ms, Schema::new(CACHE, 1));
                    for m in &mutations {
                        apply(&mut bytes, m);
                    }
                    bytes
                }),
        ]
    }

    /// Whether `bytes` have the shape of the marker a delete leaves: the
    /// header alone, with kind `2`.
    fn is_deletion(bytes: &[u8]) -> bool {
        bytes.len() == HEADER && bytes[..3] == [MAGIC, CODEC_VERSION, KIND_DELETED]
    }

    #[test]
    fn garbage_under_a_tiered_cache_key_is_a_counted_miss_never_a_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let Some(redis) = runtime.block_on(keel_test_support::redis()) else {
            return;
        };
        let (cache, remote, conn) = runtime.block_on(async {
            let remote =
                RedisCache::new(RedisConfig::new(redis.url()).key_prefix(redis.prefix())).unwrap();
            let mut settings = CacheSettings::default();
            settings.ttl = Some(Duration::from_secs(600));
            let cache: TieredCache<u64, Order> = TieredCache::builder(CACHE, settings)
                .redis(remote.clone(), None)
                .build()
                .unwrap();
            (cache, remote, redis.connection().await.unwrap())
        });
        let schema = Schema::new(CACHE, 1);
        let next_key = AtomicU64::new(0);
        let mut runner = TestRunner::new(Config::with_cases(64));
        let result = runner.run(&stored_bytes(), |bytes| {
            // A key of its own per case: nothing in the local tier.
            let key = next_key.fetch_add(1, Ordering::Relaxed);
            let expected = outcome::<Order>(&bytes, schema)?;
            let (before, corrupt_before) = (cache.stats(), remote.stats().corrupt);
            let mut conn = conn.clone();
            let read = runtime.block_on(async {
                let _: () = redis::cmd("SET")
                    .arg(format!("{}:{CACHE}:{key}", redis.prefix()))
                    .arg(bytes.as_slice())
                    .query_async(&mut conn)
                    .await
                    .expect("SET");
                cache.get(&key).await
            });
            let (after, corrupt_after) = (cache.stats(), remote.stats().corrupt);
            prop_assert_eq!(after.remote_errors, before.remote_errors, "never an error");
            match expected {
                None => {
                    prop_assert_eq!(read, None);
                    prop_assert_eq!(after.misses, before.misses + 1, "a miss");
                    prop_assert_eq!(after.l2_hits, before.l2_hits);
                    // A deletion marker is a miss by design, not corruption.
                    let corrupt = u64::from(!is_deletion(&bytes));
                    prop_assert_eq!(
                        corrupt_after,
                        corrupt_before + corrupt,
                        "counted as corrupt"
                    );
                }
                Some(decoded) => {
                    prop_assert_eq!(corrupt_after, corrupt_before);
                    let fresh = decoded.is_fresh_at(SystemTime::now());
                    match decoded.value {
                        Some(value) if fresh => prop_assert_eq!(read, Some(value)),
                        // A cached absence, or a value past its freshness.
                        _ => prop_assert_eq!(read, None),
                    }
                }
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
