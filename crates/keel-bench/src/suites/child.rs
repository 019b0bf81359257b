//! Running a suite in a child process with allocation counting off.
//!
//! The counting allocator (`crate::memory`) adds an atomic
//! read-modify-write to every allocation and free, a tax on whichever side
//! allocates more per operation. Suites whose timed cases allocate on the
//! hot path run in a child process, this binary again with [`CHILD_ENV`]
//! set, which stops counting before anything else; the child prints every
//! measurement and note as a JSON line and the parent records them as its
//! own. What measures memory runs in the parent, where counting is on.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::report::{Report, Row};
use crate::{Ctx, TraceFormat};

/// Set (to `<suite> quick` or `<suite> full`) in the child process.
pub(crate) const CHILD_ENV: &str = "KEEL_BENCH_UNCOUNTED";

/// One line of the child's output.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Row(Row),
    Note { note: String },
}

/// Runs `suite` in a child process and records what it measured.
pub(crate) fn run(suite: &str, ctx: &mut Ctx) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the bench binary")?;
    let mode = if ctx.quick { "quick" } else { "full" };
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{suite} {mode}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start the {suite} process"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("read the {suite} process"))?;
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Row(row)) => {
                ctx.report
                    .record(&row.case, &row.implementation, &row.metric, row.value);
            }
            Ok(Line::Note { note }) => ctx.report.note(&note),
            Err(_) => eprintln!("{suite} process: {line}"),
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("wait for the {suite} process"))?;
    anyhow::ensure!(status.success(), "the {suite} process failed ({status})");
    Ok(())
}

/// The child process: runs the suite named in `spec` ([`CHILD_ENV`]'s
/// value) with counting off and prints its rows and notes as JSON lines.
pub(crate) fn child_main(spec: &str) -> anyhow::Result<()> {
    let (suite, quick) = match spec.split_once(' ') {
        Some((suite, "quick")) => (suite, true),
        Some((suite, "full")) => (suite, false),
        _ => bail!("{CHILD_ENV}={spec:?}: expected \"<suite> quick\" or \"<suite> full\""),
    };
    let mut ctx = Ctx {
        quick,
        trace: None,
        format: TraceFormat::Text,
        capacities: Vec::new(),
        soak: None,
        counting: false,
        report: Report::child(),
    };
    ctx.report.begin(suite);
    super::run(suite, &mut ctx)?;
    ctx.report.end();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_reads_the_childs_rows_and_notes() {
        let row = r#"{"suite":"log","case":"c","impl":"keel","metric":"lost","value":0.0}"#;
        match serde_json::from_str::<Line>(row) {
            Ok(Line::Row(row)) => {
                assert_eq!(
                    (row.case.as_str(), row.implementation.as_str()),
                    ("c", "keel")
                );
            }
            _ => panic!("a row is read as a row"),
        }
        let note = serde_json::json!({ "note": "keel / peer = 1.00" }).to_string();
        match serde_json::from_str::<Line>(&note) {
            Ok(Line::Note { note }) => assert_eq!(note, "keel / peer = 1.00"),
            _ => panic!("a note is read as a note"),
        }
        assert!(serde_json::from_str::<Line>("progress text").is_err());
    }
}
