//! What `#[cached]` generates, run against a recording runtime: a local
//! module with the runtime's three `__private` functions over a
//! `HashMap` behind a `Mutex`, named with `crate = "crate::rt"`. It checks
//! the macro's code generation (keys, TTLs, which function is called, what
//! is stored); the caching engine itself is tested in `keel-cache`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_macros::cached;
use serde::{Deserialize, Serialize};

/// Mirrors `keel_cache::__private`, recording each call.
mod rt {
    pub(crate) mod __private {
        use std::collections::HashMap;
        use std::future::Future;
        use std::sync::{LazyLock, Mutex};

        use serde::Serialize;
        use serde::de::DeserializeOwned;

        pub(crate) use std::time::Duration;

        /// One call into the runtime.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct Call {
            pub(crate) cache: &'static str,
            pub(crate) key: String,
            pub(crate) ttl: Option<Duration>,
            pub(crate) function: &'static str,
        }

        #[derive(Default)]
        struct State {
            calls: Vec<Call>,
            stored: HashMap<(&'static str, String), serde_json::Value>,
        }

        static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);

        /// The cache with negative caching on.
        pub(crate) const NEGATIVE: &str = "negative";

        /// Calls made with `key`, in order.
        pub(crate) fn calls(key: &str) -> Vec<Call> {
            let state = STATE.lock().unwrap();
            state
                .calls
                .iter()
                .filter(|c| c.key == key)
                .cloned()
                .collect()
        }

        /// Whether anything is stored under (`cache`, `key`).
        pub(crate) fn stored(cache: &'static str, key: &str) -> bool {
            STATE
                .lock()
                .unwrap()
                .stored
                .contains_key(&(cache, key.to_owned()))
        }

        fn lookup<T: DeserializeOwned>(
            function: &'static str,
            cache: &'static str,
            key: &str,
            ttl: Option<Duration>,
        ) -> Option<T> {
            let mut state = STATE.lock().unwrap();
            state.calls.push(Call {
                cache,
                key: key.to_owned(),
                ttl,
                function,
            });
            let value = state.stored.get(&(cache, key.to_owned()))?;
            Some(serde_json::from_value(value.clone()).unwrap())
        }

        fn store<T: Serialize>(cache: &'static str, key: String, value: &T) {
            let value = serde_json::to_value(value).unwrap();
            STATE.lock().unwrap().stored.insert((cache, key), value);
        }

        pub(crate) async fn cached<T, F>(
            cache: &'static str,
            key: String,
            ttl: Option<Duration>,
            fut: F,
        ) -> T
        where
            F: Future<Output = T>,
            T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        {
            if let Some(hit) = lookup("cached", cache, &key, ttl) {
                return hit;
            }
            let value = fut.await;
            store(cache, key, &value);
            value
        }

        pub(crate) async fn cached_result<T, E, F>(
            cache: &'static str,
            key: String,
            ttl: Option<Duration>,
            fut: F,
        ) -> Result<T, E>
        where
            F: Future<Output = Result<T, E>>,
            T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        {
            if let Some(hit) = lookup("cached_result", cache, &key, ttl) {
                return Ok(hit);
            }
            let value = fut.await?;
            store(cache, key, &value);
            Ok(value)
        }

        pub(crate) async fn cached_option<T, F>(
            cache: &'static str,
            key: String,
            ttl: Option<Duration>,
            fut: F,
        ) -> Option<T>
        where
            F: Future<Output = Option<T>>,
            T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        {
            if let Some(hit) = lookup::<Option<T>>("cached_option", cache, &key, ttl) {
                return hit;
            }
            let value = fut.await;
            if value.is_some() || cache == NEGATIVE {
                store(cache, key, &value);
            }
            value
        }
    }
}

use rt::__private::{Call, NEGATIVE, calls, stored};

fn call(function: &'static str, cache: &'static str, key: &str, ttl: Option<Duration>) -> Call {
    Call {
        cache,
        key: key.to_owned(),
        ttl,
        function,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// Not `Debug`: it can only be used with a template that leaves it out.
struct Db {
    loads: AtomicUsize,
    fail_next: Mutex<bool>,
}

impl Db {
    fn new() -> Db {
        Db {
            loads: AtomicUsize::new(0),
            fail_next: Mutex::new(false),
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn find(&self, id: u64) -> Result<Option<User>, String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err("connection reset".to_owned());
        }
        Ok((id != 0).then(|| User {
            id,
            name: format!("user {id}"),
        }))
    }
}

#[derive(Debug)]
struct LoadError(String);

impl From<String> for LoadError {
    fn from(message: String) -> LoadError {
        LoadError(message)
    }
}

static PLAIN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(crate = "crate::rt", cache = "api_cache", ttl = "300s")]
async fn expensive_api_call(param: String, page: u32) -> Vec<String> {
    PLAIN_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![format!("{param}#{page}")]
}

#[tokio::test]
async fn default_key_is_the_function_name_and_every_argument_in_debug_form() {
    let first = expensive_api_call("rust".to_owned(), 2).await;
    let second = expensive_api_call("rust".to_owned(), 2).await;
    assert_eq!(first, ["rust#2"]);
    assert_eq!(second, first);
    assert_eq!(
        PLAIN_RUNS.load(Ordering::SeqCst),
        1,
        "second call served from the cache"
    );
    let key = r#"expensive_api_call:"rust":2"#;
    assert_eq!(
        calls(key),
        [
            call("cached", "api_cache", key, Some(Duration::from_secs(300))),
            call("cached", "api_cache", key, Some(Duration::from_secs(300))),
        ]
    );

    expensive_api_call("rust".to_owned(), 3).await;
    assert_eq!(
        PLAIN_RUNS.load(Ordering::SeqCst),
        2,
        "other arguments, other key"
    );
    assert_eq!(calls(r#"expensive_api_call:"rust":3"#).len(), 1);
}

#[cached(crate = "crate::rt", ttl = "1h", prefix = "user")]
async fn get_user_info(user_id: u64) -> Option<User> {
    (user_id != 0).then(|| User {
        id: user_id,
        name: "ada".to_owned(),
    })
}

#[tokio::test]
async fn prefix_and_ttl_reach_the_runtime_and_cache_defaults_to_default() {
    let user = get_user_info(7).await;
    assert_eq!(user.map(|u| u.id), Some(7));
    assert_eq!(
        calls("user:7"),
        [call(
            "cached_option",
            "default",
            "user:7",
            Some(Duration::from_secs(3600))
        )]
    );
    assert!(stored("default", "user:7"));
}

#[cached(crate = "crate::rt", cache = "users", key = "user:{user_id}")]
async fn load(user_id: u64, db: &Db) -> Result<User, LoadError> {
    let user = db.find(user_id)?;
    match user {
        Some(user) => Ok(user),
        None => Err(LoadError(format!("no user {user_id}"))),
    }
}

#[tokio::test]
async fn template_key_leaves_out_unnamed_arguments_and_only_ok_is_cached() {
    let db = Db::new();
    *db.fail_next.lock().unwrap() = true;
    let error = load(41, &db).await.unwrap_err();
    assert_eq!(error.0, "connection reset");
    assert!(!stored("users", "user:41"), "an Err is not stored");

    let user = load(41, &db).await.unwrap();
    assert_eq!(user.id, 41);
    assert_eq!(db.loads(), 2, "the Err made the next call run the body");

    let again = load(41, &Db::new()).await.unwrap();
    assert_eq!(again, user, "served from the cache: another Db, same key");
    assert_eq!(db.loads(), 2);
    assert_eq!(
        calls("user:41"),
        vec![call("cached_result", "users", "user:41", None); 3],
        "no ttl: the cache's own TTL applies"
    );
}

static FIND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(crate = "crate::rt", cache = "plain", key = "find:{id}")]
async fn find_plain(id: u64) -> Option<u64> {
    FIND_RUNS.fetch_add(1, Ordering::SeqCst);
    (id != 0).then_some(id)
}

static NEGATIVE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(crate = "crate::rt", cache = "negative", key = "find:{id}")]
async fn find_negative(id: u64) -> Option<u64> {
    NEGATIVE_RUNS.fetch_add(1, Ordering::SeqCst);
    (id != 0).then_some(id)
}

#[tokio::test]
async fn option_leaves_caching_none_to_the_runtime() {
    assert_eq!(find_plain(0).await, None);
    assert_eq!(find_plain(0).await, None);
    assert_eq!(
        FIND_RUNS.load(Ordering::SeqCst),
        2,
        "None not cached without negative caching"
    );

    assert_eq!(find_negative(0).await, None);
    assert_eq!(find_negative(0).await, None);
    assert_eq!(
        NEGATIVE_RUNS.load(Ordering::SeqCst),
        1,
        "None cached with negative caching"
    );
    assert!(stored(NEGATIVE, "find:0"));
}

static EARLY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `return` leaves the body, not the wrapper; `mut` arguments stay
/// mutable; a template may format with a spec.
#[cached(crate = "crate::rt", cache = "early", key = "early:{limit:?}")]
async fn early_return(mut limit: u32) -> u32 {
    EARLY_RUNS.fetch_add(1, Ordering::SeqCst);
    if limit > 10 {
        return 10;
    }
    limit *= 2;
    limit
}

#[tokio::test]
async fn early_return_and_mut_arguments_behave_as_without_the_macro() {
    assert_eq!(early_return(50).await, 10);
    assert_eq!(early_return(50).await, 10);
    assert_eq!(early_return(4).await, 8);
    assert_eq!(EARLY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(calls("early:50").len(), 2);
    assert_eq!(calls("early:4").len(), 1);
}

mod service {
    /// Visibility and attributes are kept: callable from the parent.
    #[must_use]
    #[keel_macros::cached(crate = "crate::rt", cache = "config", ttl = "1500ms")]
    pub(crate) async fn settings() -> String {
        "dark".to_owned()
    }
}

#[tokio::test]
async fn function_without_arguments_is_keyed_by_its_prefix() {
    assert_eq!(service::settings().await, "dark");
    assert_eq!(
        calls("settings"),
        [call(
            "cached",
            "config",
            "settings",
            Some(Duration::from_millis(1500))
        )]
    );
}

#[test]
fn generated_future_is_send_when_the_body_is() {
    fn assert_send<F: Send>(future: F) -> F {
        future
    }
    let db = Db::new();
    drop(assert_send(load(1, &db)));
    drop(assert_send(expensive_api_call(String::new(), 0)));
    drop(assert_send(get_user_info(0)));
}
