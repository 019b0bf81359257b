//! Structured JSON logs: named loggers with levels, categories and extra
//! data, routed by category to their own rotating files.
//!
//! ```text
//! cargo run -p keel --example logging
//! ```

use keel::KeelConfig;
use keel::log::{LogCategory, LogLevel, get_logger};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = KeelConfig::from_toml(&format!(
        r#"
        [logging]
        level = "info"
        directory = "{}"
        [logging.rotation]
        size = "10MB"
        time = "daily"
        [logging.routes]
        business = "business"
        "#,
        dir.path().display()
    ))?;
    let guard = config.logging.install()?;

    let logger = get_logger("my_service");
    logger.log_structured(
        LogLevel::Info,
        LogCategory::Business,
        "user action",
        &json!({"user_id": 123, "action": "login"}),
    );
    // Plain tracing events go through the same pipeline.
    tracing::warn!(queue = "emails", depth = 900, "queue is filling up");

    // Dropping the guard writes every queued line and stops the writer.
    drop(guard);
    for file in ["business.log", "app.log"] {
        let text = std::fs::read_to_string(dir.path().join(file))?;
        print!("{file}: {text}");
    }
    let business = std::fs::read_to_string(dir.path().join("business.log"))?;
    assert!(business.contains(r#""extra":{"action":"login","user_id":123}"#));
    Ok(())
}
