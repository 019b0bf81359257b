//! `#[monitored]` on sync and async functions and methods, recording into
//! the default monitor: counts, latencies and `Err` returns by type.

use std::fmt;
use std::time::Duration;

use keel_macros::monitored;
use keel_monitor::{DataMonitoringService, MonitoringConfig, OperationMetrics};

#[derive(Debug)]
enum DbError {
    Timeout,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query timed out")
    }
}

#[derive(Debug)]
struct ParseError;

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a number")
    }
}

impl From<std::num::ParseIntError> for ParseError {
    fn from(_: std::num::ParseIntError) -> Self {
        ParseError
    }
}

#[monitored(name = "db.query")]
async fn query(id: u64) -> Result<u64, DbError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    if id == 0 {
        return Err(DbError::Timeout);
    }
    Ok(id * 2)
}

#[monitored]
fn parse(text: &str) -> Result<u64, ParseError> {
    // `?` converts the error as without the macro.
    let n: u64 = text.parse()?;
    Ok(n)
}

#[monitored]
fn checksum(bytes: &[u8]) -> u32 {
    if bytes.is_empty() {
        return 0;
    }
    bytes.iter().map(|&b| u32::from(b)).sum()
}

struct Repo {
    hits: u64,
}

impl Repo {
    #[monitored(name = "repo.find")]
    async fn find(&mut self, id: u64) -> Option<u64> {
        self.hits += 1;
        (id > 0).then_some(id)
    }
}

fn op<'a>(ops: &'a [OperationMetrics], name: &str) -> &'a OperationMetrics {
    ops.iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} not in {ops:?}"))
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn monitored_functions_record_calls_errors_and_latency() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    service.set_default().unwrap();

    let call = query(21);
    assert_send(&call);
    assert_eq!(call.await.unwrap(), 42);
    assert!(query(0).await.is_err());
    assert_eq!(parse("12").unwrap(), 12);
    assert!(parse("twelve").is_err());
    assert!(parse("-1").is_err());
    assert_eq!(checksum(&[1, 2, 3]), 6);
    assert_eq!(checksum(&[]), 0);
    let mut repo = Repo { hits: 0 };
    assert_eq!(repo.find(3).await, Some(3));
    assert_eq!(repo.hits, 1);

    let metrics = service.monitor().get_metrics();
    let ops = &metrics.operations;
    let db = op(ops, "db.query");
    assert_eq!((db.calls, db.errors), (2, 1));
    // Both calls slept at least 1 ms.
    assert!(
        db.p50_ms >= 1.0 * (1.0 - keel_monitor::RELATIVE_ERROR),
        "{db:?}"
    );
    assert_eq!((op(ops, "parse").calls, op(ops, "parse").errors), (3, 2));
    assert_eq!(
        (op(ops, "checksum").calls, op(ops, "checksum").errors),
        (2, 0)
    );
    assert_eq!(op(ops, "repo.find").calls, 1);

    let errors = service.errors().snapshot();
    assert_eq!(errors.by_type[std::any::type_name::<DbError>()], 1);
    assert_eq!(errors.by_type[std::any::type_name::<ParseError>()], 2);
    let last = errors.recent.last().unwrap();
    assert_eq!(last.message, "not a number");
    assert_eq!(last.operation.as_deref(), Some("parse"));
    let first = &errors.recent[0];
    assert_eq!(
        (first.operation.as_deref(), first.message.as_str()),
        (Some("db.query"), "query timed out")
    );
    let text = service.render_prometheus();
    assert!(
        text.contains("keel_operation_errors_total{operation=\"parse\"} 2"),
        "{text}"
    );
}
