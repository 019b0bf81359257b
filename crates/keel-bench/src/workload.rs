//! Access streams shared by the cache suites: seeded Zipf keys, the
//! `hitratio` suite's synthetic patterns (loops, scans, a moving hot set,
//! short-reuse streams, a change of phase) and trace files.
//!
//! Everything here runs before a timed loop starts: suites generate or read
//! the whole stream into a `Vec<u64>` first. Every random generator is
//! reproducible from its seed.
//!
//! Generated keys never collide across roles: Zipf rank `r` is
//! [`scramble`]`(r)` (ranks stay below 2^40), and the keys a generator
//! makes up as fresh (scan keys, hot sets, cold keys, short-reuse keys) are
//! `scramble(space << 40 | i)` with a distinct `space` per role.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context as _, bail};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};

use crate::TraceFormat;

/// `len` keys drawn from a Zipf distribution with exponent `s` over `keys`
/// distinct keys, reproducible from `seed`.
///
/// Rank `r` (1 = hottest) maps to [`scramble`]`(r)`, so hot keys are spread
/// over the key space instead of being the small integers.
pub(crate) fn zipf(keys: u64, s: f64, len: usize, seed: u64) -> anyhow::Result<Vec<u64>> {
    let dist =
        Zipf::new(keys as f64, s).with_context(|| format!("zipf over {keys} keys, s={s}"))?;
    let mut rng = SmallRng::seed_from_u64(seed);
    Ok((0..len)
        .map(|_| scramble(dist.sample(&mut rng) as u64))
        .collect())
}

/// Key spaces of [`fresh`]: one per role, so roles never share a key.
const SCAN_SPACE: u64 = 1;
const HOT_SPACE: u64 = 2;
const COLD_SPACE: u64 = 3;
const RECENT_SPACE: u64 = 4;

/// The `i`-th key of `space`, distinct from every Zipf key and from every
/// other space's keys (`i` below 2^40).
fn fresh(space: u64, i: u64) -> u64 {
    debug_assert!(i < 1 << 40);
    scramble((space << 40) | i)
}

/// A loop: keys `0, 1, …, period − 1, 0, 1, …` for `len` accesses, so
/// every key's next access comes exactly `period` accesses later. An LRU
/// or FIFO smaller than `period` never hits.
pub(crate) fn looping(period: u64, len: usize) -> Vec<u64> {
    (0..period).cycle().take(len).collect()
}

/// Zipf(`s`) over `keys` keys (as [`zipf`]) interrupted by one-time scans:
/// after every `between` Zipf accesses comes a run of `scan` fresh keys,
/// each accessed once and never again, until `len` accesses. A scan as long
/// as an LRU's capacity flushes it.
pub(crate) fn zipf_with_scans(
    keys: u64,
    s: f64,
    between: usize,
    scan: usize,
    len: usize,
    seed: u64,
) -> anyhow::Result<Vec<u64>> {
    if between == 0 && scan == 0 {
        bail!("zipf with scans needs Zipf accesses or scan keys between them");
    }
    let mut zipf = zipf(keys, s, len, seed)?.into_iter();
    let mut out = Vec::with_capacity(len);
    let mut scanned = 0u64;
    while out.len() < len {
        out.extend(zipf.by_ref().take(between.min(len - out.len())));
        let run = scan.min(len - out.len());
        out.extend((scanned..scanned + run as u64).map(|i| fresh(SCAN_SPACE, i)));
        scanned += run as u64;
    }
    Ok(out)
}

/// A hot set that moves: each access is, with probability `hot_share`, a
/// uniformly drawn key of the current hot set of `hot` keys, otherwise a
/// uniformly drawn key of `cold` cold keys. Every `period` accesses the hot
/// set moves to `hot` keys never used before.
pub(crate) fn shifting_hot_set(
    hot: u64,
    hot_share: f64,
    cold: u64,
    period: usize,
    len: usize,
    seed: u64,
) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len)
        .map(|t| {
            if rng.random_bool(hot_share) {
                let set = (t / period) as u64;
                fresh(HOT_SPACE, set * hot + rng.random_range(0..hot))
            } else {
                fresh(COLD_SPACE, rng.random_range(0..cold))
            }
        })
        .collect()
}

/// Short reuse, flat frequencies: each access is, with probability
/// `new_share`, a key never accessed before, otherwise a uniformly drawn
/// one of the `window` keys introduced last. A key is reused only while it
/// is among the last `window` new keys and never after, every key has the
/// same chance of reuse (on average `1 / new_share − 1` times), and at
/// most `2 × window − 2` other keys come between two accesses to one key,
/// so an LRU of `2 × window − 1` entries hits every reuse.
pub(crate) fn short_reuse(window: u64, new_share: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut introduced = 0u64;
    (0..len)
        .map(|_| {
            if introduced == 0 || rng.random_bool(new_share) {
                introduced += 1;
                fresh(RECENT_SPACE, introduced - 1)
            } else {
                let oldest = introduced.saturating_sub(window);
                fresh(RECENT_SPACE, rng.random_range(oldest..introduced))
            }
        })
        .collect()
}

/// A bijection on `u64` (splitmix64's finaliser): distinct ranks stay
/// distinct keys.
pub(crate) fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reads every key of a trace file; `.gz` and `.xz` files are decompressed
/// on the fly.
pub(crate) fn read_trace(path: &Path, format: TraceFormat) -> anyhow::Result<Vec<u64>> {
    let file = File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    let mut raw = Vec::new();
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut BufReader::new(file), &mut raw)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot decompress {}", path.display()))?;
    } else if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(BufReader::new(file))
            .read_to_end(&mut raw)
            .with_context(|| format!("cannot decompress {}", path.display()))?;
    } else {
        BufReader::new(file)
            .read_to_end(&mut raw)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let keys = parse_trace(&raw, format).with_context(|| format!("trace {}", path.display()))?;
    if keys.is_empty() {
        bail!("trace {} holds no keys", path.display());
    }
    Ok(keys)
}

/// Decodes a trace already in memory.
pub(crate) fn parse_trace(raw: &[u8], format: TraceFormat) -> anyhow::Result<Vec<u64>> {
    match format {
        TraceFormat::U32be => fixed_width::<4>(raw, |b| u64::from(u32::from_be_bytes(b))),
        TraceFormat::U64be => fixed_width::<8>(raw, u64::from_be_bytes),
        TraceFormat::Text => Ok(raw
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| line.trim().parse::<u64>().ok())
            .collect()),
        TraceFormat::Arc => arc_ranges(raw),
    }
}

/// The most keys an ARC trace may expand to (2 GiB of keys in memory): a
/// corrupt `count` is an error, not an allocation that takes the machine.
const MAX_ARC_KEYS: u64 = 1 << 28;

/// ARC's format: each line `start count [ignored...]` stands for the keys
/// `start..start + count`; lines that do not start with two integers (or
/// whose range passes `u64::MAX`) are skipped, as the text format skips
/// lines that are not a key. A trace expanding to more than
/// [`MAX_ARC_KEYS`] keys is an error.
fn arc_ranges(raw: &[u8]) -> anyhow::Result<Vec<u64>> {
    let mut keys = Vec::new();
    let mut ranges = 0usize;
    for line in raw.lines().map_while(Result::ok) {
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(start)), Some(Ok(count))) = (fields.next(), fields.next()) else {
            continue;
        };
        if count > 0 {
            let Some(last) = start.checked_add(count - 1) else {
                continue;
            };
            if keys.len() as u64 + count > MAX_ARC_KEYS {
                bail!("line {line:?} takes the trace past {MAX_ARC_KEYS} keys");
            }
            keys.extend(start..=last);
        }
        ranges += 1;
    }
    if ranges == 0 {
        bail!("no `start count` line: wrong --format?");
    }
    Ok(keys)
}

fn fixed_width<const N: usize>(raw: &[u8], decode: fn([u8; N]) -> u64) -> anyhow::Result<Vec<u64>> {
    if !raw.len().is_multiple_of(N) {
        bail!(
            "length {} is not a multiple of {N} bytes: wrong --format?",
            raw.len()
        );
    }
    Ok(raw
        .chunks_exact(N)
        .map(|chunk| {
            let mut bytes = [0u8; N];
            bytes.copy_from_slice(chunk);
            decode(bytes)
        })
        .collect())
}

/// A trace's short name: the file name without `.gz`/`.xz` and `.trace`
/// (`web07.trace.xz` → `web07`).
pub(crate) fn trace_name(path: &Path) -> String {
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".to_owned());
    for suffix in [".gz", ".xz", ".trace", ".txt", ".bin"] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            name = stripped.to_owned();
        }
    }
    name
}

/// The median of `values` (the upper one for an even count); 0 when empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::io::Write as _;

    use super::*;

    #[test]
    fn zipf_is_reproducible_and_skewed() {
        let a = zipf(1_000_000, 0.99, 100_000, 7).unwrap();
        let b = zipf(1_000_000, 0.99, 100_000, 7).unwrap();
        assert_eq!(a, b);
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for k in &a {
            *counts.entry(*k).or_default() += 1;
        }
        // Rank 1 of Zipf(0.99) over 1M keys has probability ~1/H ≈ 6.6%.
        let hottest = counts[&scramble(1)] as f64 / a.len() as f64;
        assert!((0.05..0.08).contains(&hottest), "hottest share {hottest}");
        assert!(counts.len() > 10_000, "only {} distinct keys", counts.len());
    }

    #[test]
    fn higher_exponent_concentrates_accesses() {
        let distinct = |s| {
            let keys = zipf(1_000_000, s, 50_000, 1).unwrap();
            keys.iter().collect::<std::collections::HashSet<_>>().len()
        };
        assert!(distinct(1.2) < distinct(0.99));
        assert!(distinct(0.99) < distinct(0.8));
    }

    #[test]
    fn scramble_keeps_ranks_distinct() {
        let keys: std::collections::HashSet<u64> = (0..100_000).map(scramble).collect();
        assert_eq!(keys.len(), 100_000);
    }

    #[test]
    fn parses_each_format() {
        let u32s = [0u8, 0, 0, 1, 0xf0, 0, 0, 1];
        assert_eq!(
            parse_trace(&u32s, TraceFormat::U32be).unwrap(),
            vec![1, 0xf000_0001]
        );
        let u64s = 0x0102_0304_0506_0708u64.to_be_bytes();
        assert_eq!(
            parse_trace(&u64s, TraceFormat::U64be).unwrap(),
            vec![0x0102_0304_0506_0708]
        );
        let text = b"# header\n12\n  34 \n*\n\n56\n";
        assert_eq!(
            parse_trace(text, TraceFormat::Text).unwrap(),
            vec![12, 34, 56]
        );
    }

    #[test]
    fn truncated_binary_trace_is_an_error() {
        let err = parse_trace(&[0, 0, 1], TraceFormat::U32be).unwrap_err();
        assert!(err.to_string().contains("multiple of 4"), "{err}");
    }

    #[test]
    fn reads_gzip_and_xz_files() {
        let dir = std::env::temp_dir().join(format!("keel-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = b"1\n2\n3\n2\n";

        let gz = dir.join("t.trace.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(
            read_trace(&gz, TraceFormat::Text).unwrap(),
            vec![1, 2, 3, 2]
        );
        assert_eq!(trace_name(&gz), "t");

        let xz = dir.join("t.xz");
        let mut packed = Vec::new();
        lzma_rs::xz_compress(&mut &text[..], &mut packed).unwrap();
        std::fs::write(&xz, packed).unwrap();
        assert_eq!(
            read_trace(&xz, TraceFormat::Text).unwrap(),
            vec![1, 2, 3, 2]
        );

        let missing = read_trace(&dir.join("absent"), TraceFormat::Text).unwrap_err();
        assert!(
            missing.to_string().contains("cannot open trace"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loop_reuse_distance_is_exactly_its_period() {
        let keys = looping(1_200, 10_000);
        assert_eq!(keys.len(), 10_000);
        assert_eq!(&keys[..3], &[0, 1, 2]);
        assert!(keys.iter().all(|k| *k < 1_200));
        let next = crate::reference::next_use(&keys);
        for (i, n) in next.iter().enumerate() {
            if i + 1_200 < keys.len() {
                assert_eq!(*n, i + 1_200, "position {i}");
            } else {
                assert_eq!(*n, crate::reference::NEVER, "position {i}");
            }
        }
        assert_eq!(crate::reference::lru_hits(&keys, 1_199), 0);
    }

    #[test]
    fn scans_are_one_time_runs_between_zipf_blocks() {
        let (between, scan) = (400, 100);
        let a = zipf_with_scans(1_000_000, 0.99, between, scan, 10_450, 5).unwrap();
        assert_eq!(
            a,
            zipf_with_scans(1_000_000, 0.99, between, scan, 10_450, 5).unwrap()
        );
        assert_eq!(a.len(), 10_450);
        let plain = zipf(1_000_000, 0.99, 10_450, 5).unwrap();
        let zipf_keys: HashSet<u64> = (1..=1_000_000).map(scramble).collect();
        let mut scanned = HashSet::new();
        let mut zipf_part = Vec::new();
        for (i, key) in a.iter().enumerate() {
            if i % (between + scan) < between {
                assert!(zipf_keys.contains(key), "position {i}");
                zipf_part.push(*key);
            } else {
                assert!(!zipf_keys.contains(key), "position {i}");
                assert!(scanned.insert(*key), "scan key repeated at {i}");
            }
        }
        // The Zipf blocks are one Zipf stream, cut between the scans.
        assert_eq!(zipf_part, plain[..zipf_part.len()]);
        assert_eq!(scanned.len(), 20 * scan + 50);
        assert!(zipf_with_scans(10, 1.0, 0, 0, 10, 1).is_err());
    }

    #[test]
    fn hot_set_moves_every_period() {
        let (hot, period) = (50, 1_000);
        let a = shifting_hot_set(hot, 0.9, 1_000_000, period, 10_000, 9);
        assert_eq!(a, shifting_hot_set(hot, 0.9, 1_000_000, period, 10_000, 9));
        let cold: HashSet<u64> = (0..1_000_000).map(|i| fresh(COLD_SPACE, i)).collect();
        let mut seen_before: HashSet<u64> = HashSet::new();
        for (n, chunk) in a.chunks(period).enumerate() {
            let set: HashSet<u64> = (0..hot)
                .map(|i| fresh(HOT_SPACE, n as u64 * hot + i))
                .collect();
            let hot_hits = chunk.iter().filter(|k| set.contains(k)).count();
            assert!(chunk.iter().all(|k| set.contains(k) || cold.contains(k)));
            assert!((850..950).contains(&hot_hits), "period {n}: {hot_hits} hot");
            // The whole hot set is used, and none of it was hot before.
            let used: HashSet<u64> = chunk.iter().copied().filter(|k| set.contains(k)).collect();
            assert_eq!(used.len(), hot as usize, "period {n}");
            assert!(used.is_disjoint(&seen_before), "period {n}");
            seen_before.extend(used);
        }
    }

    #[test]
    fn short_reuse_stays_within_its_window_with_flat_frequencies() {
        let window = 100;
        let a = short_reuse(window, 0.25, 200_000, 4);
        assert_eq!(a, short_reuse(window, 0.25, 200_000, 4));
        // Every reuse is within 2 × window − 2 other keys: an LRU one larger
        // hits every access but the first to each key, and a much smaller
        // one does not.
        let distinct = a.iter().collect::<HashSet<_>>().len() as u64;
        let reuses = a.len() as u64 - distinct;
        let lru = |c| crate::reference::lru_hits(&a, c);
        assert_eq!(lru(2 * window as usize - 1), reuses);
        assert!(lru(window as usize / 4) < reuses / 2);
        // Flat: about 4 accesses per key on average, and no key is hot.
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for k in &a {
            *counts.entry(*k).or_default() += 1;
        }
        let mean = a.len() as f64 / counts.len() as f64;
        assert!((3.8..4.2).contains(&mean), "mean {mean}");
        let most = counts.values().max().copied().unwrap_or_default();
        assert!(most < 25, "a key was accessed {most} times");
    }

    #[test]
    fn parses_arc_ranges() {
        let arc = b"10 3 0 1\n\nnot a line\n7\n20 1 x\n  30   2\n5 0 9\n";
        assert_eq!(
            parse_trace(arc, TraceFormat::Arc).unwrap(),
            vec![10, 11, 12, 20, 30, 31]
        );
        let top = format!("{} 2\n1 1\n", u64::MAX - 1);
        assert_eq!(
            parse_trace(top.as_bytes(), TraceFormat::Arc).unwrap(),
            vec![u64::MAX - 1, u64::MAX, 1]
        );
        // A range past u64::MAX is malformed, and skipped.
        let past = format!("{} 2\n4 1\n", u64::MAX);
        assert_eq!(
            parse_trace(past.as_bytes(), TraceFormat::Arc).unwrap(),
            vec![4]
        );
        for nothing in [&b""[..], b"\n\n", b"# header\n12\nx y\n"] {
            let err = parse_trace(nothing, TraceFormat::Arc).unwrap_err();
            assert!(err.to_string().contains("no `start count` line"), "{err}");
        }
        // A count past the limit is an error before anything is allocated.
        let huge = format!("1 {}\n", MAX_ARC_KEYS + 1);
        let err = parse_trace(huge.as_bytes(), TraceFormat::Arc).unwrap_err();
        assert!(err.to_string().contains("past"), "{err}");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
