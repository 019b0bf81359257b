//! Lines survive any number of rotations and compressions, complete and in order.

mod support;

use keel_log::{LoggingConfig, StructuredLogEntry};
use support::{names, parse, read_all_lines};

#[test]
fn every_line_survives_ten_rotations_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        r#"
        directory = "{}"
        queue_size = 16
        overflow = "block"
        [rotation]
        size = "4KB"
        "#,
        dir.path().display()
    ))
    .expect("config");
    let (dispatch, guard) = config.build().expect("build");
    const N: u64 = 2_000;
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..N {
            tracing::info!(seq = i, user = "ada", ok = true, "line {i}");
        }
    });
    let stats = guard.stats().clone();
    drop(guard);

    let snapshot = stats.snapshot();
    assert!(
        snapshot.rotations >= 10,
        "only {} rotations",
        snapshot.rotations
    );
    assert_eq!(snapshot.compressed, snapshot.rotations);
    assert_eq!(snapshot.dropped, 0);
    assert_eq!(snapshot.written, N);
    // Only compressed rotated files and the active one are left.
    for name in names(dir.path()) {
        assert!(name == "app.log" || name.ends_with(".log.gz"), "{name}");
    }

    let lines = read_all_lines(dir.path(), "app");
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| parse(l).fields["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    let first: StructuredLogEntry = parse(&lines[0]);
    assert_eq!(first.message, "line 0");
}
