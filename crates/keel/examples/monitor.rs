//! The performance monitor: `#[monitored]` functions, `measure` blocks,
//! the metrics they collect, and the Prometheus text of it all.
//!
//! ```text
//! cargo run -p keel --example monitor
//! ```

use std::time::Duration;

use keel::KeelConfig;
use keel::monitor::DataMonitoringService;

/// Every call is measured under `expensive_operation`; an `Err` is counted
/// under its type.
#[keel::monitored(crate = "keel::monitor")]
async fn expensive_operation(n: u64) -> Result<u64, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if n == 3 {
        return Err(std::io::Error::other("upstream refused"));
    }
    Ok(n * 2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeelConfig::from_toml(
        r#"
        [monitoring]
        enabled = true
        sample_rate = 1.0
        report_interval = "60s"
        "#,
    )?;
    let service = DataMonitoringService::new(config.monitoring)?;
    service.set_default()?;

    for n in 0..10 {
        let _ = expensive_operation(n).await;
    }
    // A custom measuring point: recorded when the guard drops.
    for _ in 0..5 {
        let _call = service.monitor().measure("custom_operation");
        std::thread::sleep(Duration::from_millis(1));
    }

    let metrics = service.monitor().get_metrics();
    for op in &metrics.operations {
        println!(
            "{:<20} calls {:>2} errors {} p50 {:.2} ms p99 {:.2} ms",
            op.name, op.calls, op.errors, op.p50_ms, op.p99_ms
        );
    }
    let op = metrics
        .operations
        .iter()
        .find(|op| op.name == "expensive_operation")
        .ok_or("expensive_operation was not measured")?;
    assert_eq!((op.calls, op.errors), (10, 1));

    let text = service.render_prometheus();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("expensive_operation") && l.contains("_count"))
        .collect();
    println!("{}", lines.join("\n"));
    Ok(())
}
