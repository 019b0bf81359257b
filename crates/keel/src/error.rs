//! Errors of the facade: loading and validating [`KeelConfig`](crate::KeelConfig).

use std::fmt;
use std::path::PathBuf;

use keel_core::InvalidField;

/// Loading a configuration failed.
///
/// [`ConfigError::Invalid`] carries every problem found in the input, not
/// just the first, so a user can fix a file in one pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config is not valid TOML: {message}")]
    Syntax {
        /// The parser's description, with line and column.
        message: String,
    },
    /// The input parsed but some fields are unknown or have bad values.
    #[error("{}", DisplayFields(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The field errors, empty unless this is [`ConfigError::Invalid`].
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

/// One bad field: where it is, what it held and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldError {
    /// Full dotted path of the field, such as `server.listen`.
    pub path: String,
    /// The rejected value as written in TOML, when there was one.
    pub value: Option<String>,
    /// The environment variable the value came from, if it did.
    pub env_var: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            value: None,
            env_var: None,
            message: message.into(),
        }
    }
}

/// A room's `validate()` problem as a loader error: the same path and
/// message, no value or environment variable.
impl From<InvalidField> for FieldError {
    fn from(problem: InvalidField) -> Self {
        Self::new(problem.field, problem.reason)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        if let Some(var) = &self.env_var {
            write!(f, " (from {var})")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct DisplayFields<'a>(&'a [FieldError]);

impl fmt::Display for DisplayFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} invalid config field{}",
            if n == 1 { "" } else { "s" }
        )?;
        for error in self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}
