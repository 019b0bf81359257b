//! Under the block policy a full queue makes callers wait: from several
//! threads through a tiny queue, every line arrives, each thread's in order.

mod support;

use keel_log::LoggingConfig;
use support::{parse, read_all_lines};

#[test]
fn block_policy_loses_nothing_from_many_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        r#"
        directory = "{}"
        level = "trace"
        queue_size = 4
        overflow = "block"
        [rotation]
        size = "64KB"
        "#,
        dir.path().display()
    ))
    .expect("config");
    let (dispatch, guard) = config.build().expect("build");
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 3_000;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let dispatch = dispatch.clone();
            scope.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..PER_THREAD {
                        // Low levels too: block never sheds.
                        if i % 2 == 0 {
                            tracing::trace!(t, i, "low");
                        } else {
                            tracing::debug!(t, i, "low");
                        }
                    }
                });
            });
        }
    });
    let stats = guard.stats().clone();
    drop(guard);
    assert_eq!(stats.snapshot().dropped, 0);

    let mut next = [0u64; THREADS as usize];
    let lines = read_all_lines(dir.path(), "app");
    assert_eq!(lines.len() as u64, THREADS * PER_THREAD);
    for line in &lines {
        let entry = parse(line);
        let t = entry.fields["t"].as_u64().expect("t") as usize;
        let i = entry.fields["i"].as_u64().expect("i");
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_THREAD));
    assert!(stats.snapshot().rotations >= 10);
}
