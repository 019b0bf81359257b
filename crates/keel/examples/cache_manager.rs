//! The cache manager: values of any serde type by string key, with a TTL,
//! and typed named caches that load on a miss.
//!
//! ```text
//! cargo run -p keel --example cache_manager
//! ```

use std::time::Duration;

use keel::KeelConfig;
use keel::cache::CacheManager;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeelConfig::from_toml(
        r#"
        [cache]
        capacity = 10000
        ttl = "5m"

        [cache.caches.users]
        capacity = 1000
        ttl = "1h"
        "#,
    )?;
    let manager = CacheManager::new(config.cache)?;

    // The string-keyed API of the `default` cache, with a TTL per value.
    manager
        .set("session:42", &"ada", Some(Duration::from_secs(3600)))
        .await?;
    let user: Option<String> = manager.get("session:42").await?;
    println!("session:42 -> {user:?}");
    assert_eq!(user.as_deref(), Some("ada"));
    manager.delete("session:42").await?;
    assert_eq!(manager.get::<String>("session:42").await?, None);

    // A typed cache: the loader runs on a miss, once per key however many
    // callers ask at the same moment.
    let users = manager.cache::<u64, String>("users")?;
    let mut loads = 0;
    for _ in 0..3 {
        let name = users
            .get_or_load(7, || {
                loads += 1;
                async { "grace".to_owned() }
            })
            .await?;
        assert_eq!(name, "grace");
    }
    println!("users[7] loaded {loads} time(s) for 3 reads");
    assert_eq!(loads, 1);

    for report in manager.reports() {
        println!(
            "cache {:<8} entries {:>3} / {:<5} hits {} misses {}",
            report.name, report.entries, report.capacity, report.local.hits, report.local.misses
        );
    }
    Ok(())
}
