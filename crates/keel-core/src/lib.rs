//! The types every Keel room shares, so that a service using several rooms
//! meets one type for one idea. Each room re-exports what its API uses
//! (`keel_pool::InvalidField` is this crate's [`InvalidField`]), so a user
//! need not depend on this crate directly.
//!
//! Today that is [`InvalidField`], the problem a config section's
//! `validate()` reports: which field, and what is allowed; and, with the
//! `redis` feature, `topology`: what a Redis address names (one server
//! or a Cluster) and a connection to either.
//!
//! ```
//! use keel_core::InvalidField;
//!
//! fn validate(min: u32, max: u32) -> Result<(), Vec<InvalidField>> {
//!     let mut problems = Vec::new();
//!     if max == 0 {
//!         problems.push(InvalidField::new("pool.max", "must be at least 1"));
//!     }
//!     if min > max {
//!         problems.push(InvalidField::new(
//!             "pool.min",
//!             format!("{min} must not exceed max {max}"),
//!         ));
//!     }
//!     if problems.is_empty() { Ok(()) } else { Err(problems) }
//! }
//!
//! let problems = validate(3, 2).unwrap_err();
//! assert_eq!(problems[0].field, "pool.min");
//! assert_eq!(problems[0].to_string(), "pool.min: 3 must not exceed max 2");
//! ```
//!
//! # Feature flags
//!
//! - `redis`: the `topology` module, on the `redis` crate.
//!
//! Without features the crate depends on `thiserror` alone. It holds no
//! logic of any room: a piece moves here only when two rooms or more
//! share it.

#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "redis")]
pub mod topology;

pub use error::InvalidField;
