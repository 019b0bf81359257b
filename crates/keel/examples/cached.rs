//! `#[cached]` on async functions: the result is kept in a named cache of
//! the default manager, keyed by the arguments.
//!
//! ```text
//! cargo run -p keel --example cached
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use keel::KeelConfig;
use keel::cache::{CacheManager, set_default_manager};

static API_CALLS: AtomicU32 = AtomicU32::new(0);

/// Cached for five minutes in `api_cache`, under `expensive_api_call:<param>`.
#[keel::cached(crate = "keel::cache", cache = "api_cache", ttl = "300s")]
async fn expensive_api_call(param: String) -> String {
    API_CALLS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    format!("result for {param}")
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// `Result` caches `Ok` only: an error is returned to the caller and the
/// next call runs the body again.
#[keel::cached(crate = "keel::cache", ttl = "1h", prefix = "user")]
async fn get_user_info(user_id: u64) -> Result<User, String> {
    if user_id == 0 {
        return Err("no user 0".into());
    }
    Ok(User {
        id: user_id,
        name: format!("user-{user_id}"),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeelConfig::from_toml(
        r#"
        [cache.caches.api_cache]
        capacity = 1000
        "#,
    )?;
    if set_default_manager(CacheManager::new(config.cache)?).is_err() {
        return Err("the default cache manager was already set".into());
    }

    // Ten concurrent calls with one argument run the body once.
    let calls = (0..10).map(|_| expensive_api_call("eur".to_owned()));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r == "result for eur"));
    expensive_api_call("usd".to_owned()).await;
    expensive_api_call("eur".to_owned()).await;
    let ran = API_CALLS.load(Ordering::Relaxed);
    println!("12 calls over 2 arguments ran the body {ran} times");
    assert_eq!(ran, 2);

    let user = get_user_info(42).await?;
    println!("{user:?}");
    assert_eq!(user.id, 42);
    assert!(get_user_info(0).await.is_err());
    Ok(())
}
