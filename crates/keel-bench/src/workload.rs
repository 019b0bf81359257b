//! Access streams shared by the cache suites: seeded Zipf keys and trace files.
//!
//! Everything here runs before a timed loop starts: suites generate or read
//! the whole stream into a `Vec<u64>` first.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context as _, bail};
use rand::SeedableRng as _;
use rand::rngs::SmallRng;
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
    }
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
    use std::collections::HashMap;
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
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
