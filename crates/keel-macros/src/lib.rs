//! Attribute macros for Keel. [`macro@monitored`] measures every call of
//! a function in `keel-monitor`'s default performance monitor (see its
//! own documentation). [`macro@cached`] memoizes an `async fn` in a
//! named cache of `keel-cache`: the first call with given arguments runs
//! the body and stores its value under a key built from the arguments;
//! later calls with the same key get the stored value without running it.
//!
//! ```no_run
//! # extern crate self as keel_cache;
//! # #[doc(hidden)]
//! # pub mod __private {
//! #     pub use std::time::Duration;
//! #     use std::future::Future;
//! #     pub async fn cached<T, F: Future<Output = T>>(_: &'static str, _: String, _: Option<Duration>, fut: F) -> T { fut.await }
//! #     pub async fn cached_result<T, E, F: Future<Output = Result<T, E>>>(_: &'static str, _: String, _: Option<Duration>, fut: F) -> Result<T, E> { fut.await }
//! #     pub async fn cached_option<T, F: Future<Output = Option<T>>>(_: &'static str, _: String, _: Option<Duration>, fut: F) -> Option<T> { fut.await }
//! # }
//! use keel_macros::cached;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct User {
//!     id: u64,
//!     name: String,
//! }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! struct Db;
//!
//! impl Db {
//!     async fn find(&self, id: u64) -> Result<User, DbError> {
//!         Ok(User { id, name: format!("user {id}") })
//!     }
//! }
//!
//! /// Kept for five minutes in the "api_cache" cache, under
//! /// `expensive_api_call:"<param>"`.
//! #[cached(cache = "api_cache", ttl = "300s")]
//! async fn expensive_api_call(param: String) -> String {
//!     format!("answer to {param}")
//! }
//!
//! /// Kept in the "default" cache for an hour, under `user:<user_id>`;
//! /// a `None` is kept only if that cache caches negative results.
//! #[cached(ttl = "1h", prefix = "user")]
//! async fn get_user_info(user_id: u64) -> Option<User> {
//!     (user_id != 0).then(|| User { id: user_id, name: "ada".into() })
//! }
//!
//! /// Kept under `user:<user_id>` for the "users" cache's own TTL; the
//! /// database handle is not part of the key, and errors are not cached.
//! #[cached(cache = "users", key = "user:{user_id}")]
//! async fn load(user_id: u64, db: &Db) -> Result<User, DbError> {
//!     db.find(user_id).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let user = load(42, &Db).await;
//! # let _ = (user, get_user_info(1).await, expensive_api_call("q".into()).await);
//! # }
//! ```
//!
//! # The key
//!
//! By default the key is the prefix followed by every argument in
//! [`Debug`](std::fmt::Debug) form, separated by colons:
//! `get_user_info(42)` with `prefix = "user"` is stored under `user:42`,
//! `expensive_api_call("q".into())` under `expensive_api_call:"q"`. The
//! prefix defaults to the function's name, so two functions of the same
//! name that share a cache need distinct prefixes.
//!
//! Debug output is the key, so it must be stable for a value: the same
//! value must always print the same way, in every process that shares the
//! cache. Integers, strings, `bool`s and derived `Debug` on such fields are;
//! a `HashMap` (random iteration order) or a type that prints an address or
//! a counter is not, and gives a key that never hits.
//!
//! `key = "..."` replaces the default key with a template: a `format!`
//! string whose `{name}` (or `{name:spec}`, e.g. `{name:?}`) placeholders
//! are the function's argument names, formatted with `Display` unless a
//! spec says otherwise; `{{` and `}}` are literal braces. Arguments the
//! template does not name are not part of the key, which keeps handles such
//! as a database pool out of it. A placeholder that is not an argument is a
//! compile error naming it.
//!
//! The key is computed when the function is called, before the body runs.
//!
//! # Time to live
//!
//! `ttl = "..."` is a [`humantime`] duration (`"300ms"`, `"5s"`, `"1h"`,
//! `"1h 30m"`), checked at compile time: an unknown unit, a zero duration
//! or a sub-millisecond part is a compile error at the literal. Without
//! `ttl` the cache's own TTL applies.
//!
//! # What is cached
//!
//! - A return type whose path ends in `Result` (`Result<T, E>`,
//!   `std::io::Result<T>`, any alias named `Result`): only `Ok` values;
//!   an `Err` is returned to the caller and the next call runs the body
//!   again.
//! - A return type whose path ends in `Option`: `Some` values, and `None`
//!   only when the cache has negative caching turned on.
//! - Anything else: every value.
//!
//! On a cache with a Bloom filter (`bloom` in its config), a key the
//! filter has not been told about is answered "absent" before the body
//! could run: a function returning `Option` gets `None`, others run the
//! body and mark the key with what it returns. Mark the keys that exist,
//! as the key template writes them, with
//! `keel_cache::default_manager().mark_exists("users", &format!("user:{id}"))`.
//!
//! The cached type (`T` above, or the whole return type) must be
//! `Clone + Serialize + DeserializeOwned + Send + Sync + 'static`: values
//! may live in Redis as well as in process.
//!
//! # The runtime crate
//!
//! The expansion calls `::keel_cache::__private::{cached, cached_result,
//! cached_option}`, which look the cache name up in the default
//! `CacheManager` of `keel-cache`, so a crate using the macro depends on
//! `keel-cache`. Through the `keel` facade, name the path instead:
//! `#[cached(crate = "keel::cache", ...)]`.
//!
//! # Arguments
//!
//! | argument | meaning | default |
//! |---|---|---|
//! | `cache = "name"` | the named cache to use | `"default"` |
//! | `ttl = "5m"` | time to live of the stored values | the cache's TTL |
//! | `prefix = "user"` | first part of the default key | the function's name |
//! | `key = "user:{user_id}"` | key template (excludes `prefix`) | every argument |
//! | `crate = "keel::cache"` | path of the runtime crate | `::keel_cache` |
//!
//! # Compile errors
//!
//! The macro rejects, with a message at the offending token: a function
//! that is not `async`; methods with a `self` receiver (cache a free
//! function taking what the key needs); generic functions (type or const
//! parameters, `where` clauses) and `impl Trait` arguments or return
//! types; arguments written as patterns (`(a, b): (u8, u8)`) rather than
//! names; functions returning `()`; unknown, duplicate or valueless
//! attribute arguments; a `ttl` that is not a valid duration (an integer
//! such as `ttl = 300` gets a hint to write `"300s"`); a malformed key
//! template or one naming a non-argument; `prefix` together with `key`.
//! Bad values and signature problems are reported together; a syntax
//! error in the attribute (an unknown or valueless argument) stops its
//! parsing at that argument. Type errors in the expansion point at the
//! user's tokens: a value type that is not `Serialize` at the return type,
//! an argument without `Debug` (in the default key) at the argument.
//!
//! # Feature flags
//!
//! None (`default = []`).
//!
//! # Guarantees
//!
//! - The function keeps its attributes, doc comments, visibility and
//!   signature; only the body is wrapped.
//! - The key is built from the arguments before the body runs; the body
//!   runs at most once per call, and not at all when the runtime serves a
//!   stored value.
//! - The generated future is `Send` whenever the original body's future is.
//! - Everything else — single-flight loading, expiry, tiers,
//!   invalidation — is the runtime's: see `keel-cache`.

#![forbid(unsafe_code)]

mod cached;
mod monitored;

use proc_macro::TokenStream;

/// Memoizes an `async fn` in a named Keel cache:
/// `#[cached(cache = "users", ttl = "5m", key = "user:{user_id}")]`.
///
/// Arguments: `cache` (default `"default"`), `ttl` (a duration string;
/// default the cache's own TTL), `prefix` (default the function's name) or
/// `key` (a template over argument names), `crate` (default
/// `::keel_cache`). The [crate documentation](crate) has an example and the
/// rules for keys, TTLs and return types.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    cached::expand(attr.into(), item.into()).into()
}

/// Measures every call of a function (sync or `async`) under its name, or
/// `name = "..."`: `#[monitored]`, `#[monitored(name = "db.query")]`.
///
/// Each call's count (exact) and latency (sampled at the monitor's
/// `sample_rate`) go to the default `keel_monitor::PerformanceMonitor`
/// (`DataMonitoringService::set_default`); the call is recorded on every
/// way out, `?` and panics included. When the return type's path ends in
/// `Result` (without `impl Trait` inside), an `Err` is also counted as a
/// failed call and recorded in the error statistics under the error's Rust
/// type name with its `Display` message, so the error type must implement
/// `Display`.
///
/// Arguments: `name` (default the function's name), `crate` (default
/// `::keel_monitor`; through the facade, `crate = "keel::monitor"`).
/// Methods, generic functions and any signature are accepted; a `const fn`
/// is not.
///
/// ```no_run
/// # extern crate self as keel_monitor;
/// # #[doc(hidden)]
/// # pub mod __private {
/// #     pub struct Site;
/// #     pub struct Measure;
/// #     impl Site { pub const fn new(_: &'static str) -> Self { Site } pub fn start(&'static self) -> Measure { Measure } }
/// #     pub fn finish<T, E: std::fmt::Display>(_: Measure, _: &Result<T, E>) {}
/// #     pub fn typed<R, F: std::future::Future<Output = R>>(f: F) -> F { f }
/// # }
/// use keel_macros::monitored;
///
/// #[monitored(name = "db.query")]
/// async fn query(sql: &str) -> Result<u64, std::io::Error> {
///     Ok(sql.len() as u64)
/// }
///
/// #[monitored]
/// fn checksum(bytes: &[u8]) -> u32 {
///     bytes.iter().map(|&b| u32::from(b)).sum()
/// }
/// # fn main() {}
/// ```
#[proc_macro_attribute]
pub fn monitored(attr: TokenStream, item: TokenStream) -> TokenStream {
    monitored::expand(attr.into(), item.into()).into()
}

/// The item as written, after the compile errors found in it: the user
/// sees the macro's messages and no others caused by a missing item.
fn with_errors(error: syn::Error, item: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let errors = error.to_compile_error();
    quote::quote!(#errors #item)
}
