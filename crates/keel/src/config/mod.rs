//! [`KeelConfig`]: the whole configuration, one section per room.

mod de;
mod load;
mod server;

use std::ffi::OsString;
use std::path::Path;

use serde::Deserialize;

use crate::ConfigError;

pub use server::ServerConfig;

/// The configuration of a Keel service: one section per room.
///
/// Each section's type belongs to the room that reads it. All fields have
/// defaults, so `KeelConfig::default()` is the embedded configuration that
/// `keel` runs with when given no file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeelConfig {
    /// `[server]`: where the gateway listens and how it stops.
    pub server: ServerConfig,
}

impl KeelConfig {
    /// Loads the configuration from an optional TOML file and the process
    /// environment (`KEEL_SECTION__KEY=value` overrides).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::from_sources(text.as_deref(), std::env::vars_os())
    }

    /// Parses a TOML document, ignoring the environment.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(text), std::iter::empty::<(OsString, OsString)>())
    }

    /// Builds the configuration from an optional TOML document and a set of
    /// environment variables; variables not of the form `KEEL_A__B` are
    /// ignored.
    pub fn from_sources<I, K, V>(toml: Option<&str>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        load::load(toml, env.into_iter().map(|(k, v)| (k.into(), v.into())))
    }
}
