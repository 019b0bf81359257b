//! Hand-written JSON output: string escaping, numbers and timestamps,
//! appended to a byte buffer without allocating.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer};

/// A fixed offset from UTC for timestamps and time-based rotation.
///
/// Written in config as `"Z"`, `"UTC"` or `"+HH:MM"` / `"-HH:MM"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampOffset {
    seconds: i32,
}

impl TimestampOffset {
    /// UTC (timestamps end in `Z`).
    pub const UTC: Self = Self { seconds: 0 };

    /// An offset of `hours:minutes` east of UTC (negative `hours` for west);
    /// `None` beyond ±23:59.
    pub fn from_hours_minutes(hours: i8, minutes: u8) -> Option<Self> {
        if hours.unsigned_abs() > 23 || minutes > 59 {
            return None;
        }
        let magnitude = i32::from(hours.unsigned_abs()) * 3600 + i32::from(minutes) * 60;
        Some(Self {
            seconds: if hours < 0 { -magnitude } else { magnitude },
        })
    }

    /// The offset in seconds east of UTC.
    pub const fn seconds(self) -> i32 {
        self.seconds
    }

    /// Parses `Z`, `UTC` or `±HH:MM`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
            return Some(Self::UTC);
        }
        let bytes = text.as_bytes();
        if bytes.len() != 6 || bytes[3] != b':' {
            return None;
        }
        let sign = match bytes[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i8 = text.get(1..3)?.parse().ok()?;
        let minutes: u8 = text.get(4..6)?.parse().ok()?;
        let offset = Self::from_hours_minutes(hours, minutes)?;
        Some(Self {
            seconds: sign * offset.seconds,
        })
    }
}

impl<'de> Deserialize<'de> for TimestampOffset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timestamp offset {text:?}: expected \"Z\", \"UTC\" or \"+HH:MM\"/\"-HH:MM\""
            ))
        })
    }
}

/// Appends `s` as a quoted JSON string.
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    write_escaped(buf, s);
    buf.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string.
pub(crate) fn write_escaped(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// A [`fmt::Write`] that escapes what it is given into a JSON string body,
/// so `Debug` and `Display` values are written without a temporary `String`.
pub(crate) struct Escaper<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s);
        Ok(())
    }
}

pub(crate) fn write_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub(crate) fn write_i64(buf: &mut Vec<u8>, n: i64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Finite floats as numbers; NaN and infinities (not JSON numbers) as strings.
pub(crate) fn write_f64(buf: &mut Vec<u8>, n: f64) {
    if n.is_finite() {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(n).as_bytes());
    } else if n.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if n > 0.0 {
        buf.extend_from_slice(b"\"inf\"");
    } else {
        buf.extend_from_slice(b"\"-inf\"");
    }
}

/// A point in time broken into calendar fields at a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) micros: u32,
}

/// Seconds since the epoch (negative before 1970) and sub-second micros.
pub(crate) fn epoch_parts(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_micros() {
                0 => (-secs, 0),
                us => (-secs - 1, 1_000_000 - us),
            }
        }
    }
}

pub(crate) fn civil(time: SystemTime, offset: TimestampOffset) -> Civil {
    let (secs, micros) = epoch_parts(time);
    let local = secs.saturating_add(i64::from(offset.seconds));
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        micros,
    }
}

fn push2(buf: &mut Vec<u8>, n: u32) {
    buf.push(b'0' + (n / 10 % 10) as u8);
    buf.push(b'0' + (n % 10) as u8);
}

fn push_year(buf: &mut Vec<u8>, year: i64) {
    if (0..10_000).contains(&year) {
        let y = year as u32;
        push2(buf, y / 100);
        push2(buf, y % 100);
    } else {
        write_i64(buf, year);
    }
}

/// Appends an RFC 3339 timestamp with microseconds, e.g.
/// `2026-11-21T10:00:00.000000Z` or `2026-11-21T11:00:00.000000+01:00`.
pub(crate) fn write_timestamp(buf: &mut Vec<u8>, time: SystemTime, offset: TimestampOffset) {
    let c = civil(time, offset);
    push_year(buf, c.year);
    buf.push(b'-');
    push2(buf, c.month);
    buf.push(b'-');
    push2(buf, c.day);
    buf.push(b'T');
    push2(buf, c.hour);
    buf.push(b':');
    push2(buf, c.minute);
    buf.push(b':');
    push2(buf, c.second);
    buf.push(b'.');
    push2(buf, c.micros / 10_000);
    push2(buf, c.micros / 100 % 100);
    push2(buf, c.micros % 100);
    if offset.seconds == 0 {
        buf.push(b'Z');
    } else {
        buf.push(if offset.seconds < 0 { b'-' } else { b'+' });
        let abs = offset.seconds.unsigned_abs();
        push2(buf, abs / 3600);
        buf.push(b':');
        push2(buf, abs % 3600 / 60);
    }
}

/// The timestamp used in rotated file names: `2026-11-21T10-00-00`.
pub(crate) fn file_stamp(time: SystemTime, offset: TimestampOffset) -> String {
    let c = civil(time, offset);
    let mut buf = Vec::with_capacity(20);
    push_year(&mut buf, c.year);
    buf.push(b'-');
    push2(&mut buf, c.month);
    buf.push(b'-');
    push2(&mut buf, c.day);
    buf.push(b'T');
    push2(&mut buf, c.hour);
    buf.push(b'-');
    push2(&mut buf, c.minute);
    buf.push(b'-');
    push2(&mut buf, c.second);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ts(secs: u64, offset: TimestampOffset) -> String {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, UNIX_EPOCH + Duration::from_micros(secs), offset);
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(ts(0, TimestampOffset::UTC), "1970-01-01T00:00:00.000000Z");
        // 2026-11-21T10:00:00Z = 1795255200
        assert_eq!(
            ts(1_795_255_200_000_123, TimestampOffset::UTC),
            "2026-11-21T10:00:00.000123Z"
        );
        let plus = TimestampOffset::parse("+05:30").unwrap_or_default();
        assert_eq!(
            ts(1_795_255_200_000_000, plus),
            "2026-11-21T15:30:00.000000+05:30"
        );
        let minus = TimestampOffset::parse("-10:00").unwrap_or_default();
        assert_eq!(
            ts(1_795_255_200_000_000, minus),
            "2026-11-21T00:00:00.000000-10:00"
        );
        // leap day
        assert_eq!(
            ts(1_709_164_800_000_000, TimestampOffset::UTC),
            "2024-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn offsets_parse_and_reject() {
        assert_eq!(TimestampOffset::parse("Z"), Some(TimestampOffset::UTC));
        assert_eq!(
            TimestampOffset::parse("+01:00").map(|o| o.seconds()),
            Some(3600)
        );
        assert_eq!(
            TimestampOffset::parse("-00:30").map(|o| o.seconds()),
            Some(-1800)
        );
        for bad in ["+1:00", "01:00", "+24:00", "+01:60", "+ab:cd", ""] {
            assert_eq!(TimestampOffset::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn escaping_yields_valid_json_for_any_text() {
        let hostile = "quote\" back\\ nl\n cr\r tab\t nul\0 bell\x07 del\x7f é 🦀 \u{2028}";
        let mut buf = Vec::new();
        write_str(&mut buf, hostile);
        let back: String = serde_json::from_slice(&buf).unwrap_or_default();
        assert_eq!(back, hostile);
        assert!(!buf.contains(&b'\n'));
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips_through_json(text in proptest::prelude::any::<String>()) {
            let mut buf = Vec::new();
            write_str(&mut buf, &text);
            let back: String = serde_json::from_slice(&buf).unwrap_or_default();
            proptest::prop_assert_eq!(back, text);
            proptest::prop_assert!(!buf.contains(&b'\n'));
        }

        #[test]
        fn calendar_fields_invert_to_the_same_instant(secs in 0u64..253_402_000_000, minutes in -1439i32..=1439) {
            let offset = TimestampOffset { seconds: minutes * 60 };
            let mut buf = Vec::new();
            write_timestamp(&mut buf, UNIX_EPOCH + Duration::from_secs(secs), offset);
            let text = String::from_utf8(buf).unwrap_or_default();
            // Read the written fields back and undo the offset.
            let field = |r: std::ops::Range<usize>| text.get(r).and_then(|f| f.parse::<i64>().ok()).unwrap_or(-1);
            let (y, mo, d) = (field(0..4), field(5..7), field(8..10));
            let (h, mi, s) = (field(11..13), field(14..16), field(17..19));
            proptest::prop_assert!((1..=12).contains(&mo) && (1..=31).contains(&d), "{}", text);
            let local = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s;
            proptest::prop_assert_eq!(local - i64::from(offset.seconds), secs as i64, "{}", text);
        }
    }

    /// The inverse conversion, to check `civil` against.
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[test]
    fn non_finite_floats_are_strings() {
        for (n, want) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"inf\""),
            (1.5, "1.5"),
        ] {
            let mut buf = Vec::new();
            write_f64(&mut buf, n);
            assert_eq!(buf, want.as_bytes());
        }
    }
}
