//! Field deserializers whose errors say what is allowed.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

const DURATION_EXAMPLE: &str = r#"a duration such as "300ms", "5s" or "1h""#;

/// A duration written as a string: `"300ms"`, `"5s"`, `"1h 30m"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(DURATION_EXAMPLE)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim())
                .map_err(|e| E::custom(format_args!("expected {DURATION_EXAMPLE} ({e})")))
        }
    }
    d.deserialize_str(V)
}

/// A [`duration`] no longer than `max`.
pub(crate) fn duration_at_most<'de, D: Deserializer<'de>>(
    d: D,
    max: Duration,
) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value > max {
        return Err(de::Error::custom(format_args!(
            "must be at most {}",
            humantime::format_duration(max)
        )));
    }
    Ok(value)
}

/// A socket address such as `127.0.0.1:8080` or `[::1]:8080`.
pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a socket address such as "127.0.0.1:8080" or "[::1]:8080""#)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<SocketAddr, E> {
            s.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
        }
    }
    d.deserialize_str(V)
}

/// An optional string that, when present, is not empty.
pub(crate) fn non_empty_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    if s.is_empty() {
        return Err(de::Error::custom(
            "must not be empty; remove the key to leave it unset",
        ));
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, StrDeserializer};

    fn de(s: &str) -> StrDeserializer<'_, Error> {
        s.into_deserializer()
    }

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(duration(de("300ms")).unwrap(), Duration::from_millis(300));
        assert_eq!(duration(de("5s")).unwrap(), Duration::from_secs(5));
        assert_eq!(duration(de("1h")).unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn a_bad_duration_says_what_is_allowed() {
        let err = duration(de("5 parsecs")).unwrap_err().to_string();
        assert!(err.contains(DURATION_EXAMPLE), "{err}");
        assert!(err.contains("parsecs"), "{err}");
    }

    #[test]
    fn duration_at_most_rejects_longer_values() {
        let max = Duration::from_secs(60);
        assert!(duration_at_most(de("60s"), max).is_ok());
        let err = duration_at_most(de("61s"), max).unwrap_err().to_string();
        assert_eq!(err, "must be at most 1m");
    }
}
