//! `keel-bench`: Keel and its peers, same process, same workload, one table.
//!
//! ```text
//! cargo run --release -p keel-bench -- <suite> [--quick] [--json]
//! ```
//!
//! Each suite prints a table of every (case, metric) against every
//! implementation; `--json` prints one object per measurement instead
//! (`{"suite":..,"case":..,"impl":..,"metric":..,"value":..}`), the
//! contract scripts read.

mod caches;
mod memory;
mod reference;
mod report;
mod suites;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use report::Report;

/// Side-by-side benchmarks of Keel against peer crates.
#[derive(Debug, Parser)]
#[command(name = "keel-bench", version, about)]
struct Cli {
    /// Which suite to run.
    suite: Suite,
    /// Shorter runs: each suite finishes in under 60 s on 2 cores.
    #[arg(long)]
    quick: bool,
    /// One JSON object per measurement instead of tables.
    #[arg(long)]
    json: bool,
    /// `hitratio`: replay this trace file instead of the built-in workloads.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// `hitratio`: the trace's format.
    #[arg(long, value_enum, default_value = "text")]
    format: TraceFormat,
    /// `hitratio`: cache capacity in entries (repeatable).
    #[arg(long)]
    capacity: Vec<usize>,
    /// `gateway`: run only the soak, for this many seconds, and report the
    /// gateway's resident memory over it.
    #[arg(long, value_name = "SECS")]
    soak: Option<u64>,
}

/// A benchmark suite (crates/keel-bench/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    Cache,
    Hitratio,
    Tiered,
    Pool,
    Monitor,
    Log,
    Websocket,
    Queue,
    Gateway,
    All,
}

/// How a trace file stores its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TraceFormat {
    /// Big-endian u32 keys (cache2k's traces).
    #[value(alias = "cache2k")]
    U32be,
    /// Big-endian u64 keys.
    U64be,
    /// One integer key per line; other lines are skipped (LIRS traces).
    #[value(alias = "lirs")]
    Text,
    /// ARC traces: each line `start count [ignored...]` is the keys
    /// `start`, `start + 1`, …, `start + count − 1`; other lines are skipped,
    /// and a file without one such line is an error.
    Arc,
}

/// What every suite gets: the options and where to report.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) quick: bool,
    pub(crate) trace: Option<PathBuf>,
    pub(crate) format: TraceFormat,
    pub(crate) capacities: Vec<usize>,
    pub(crate) soak: Option<u64>,
    /// Whether this process counts allocations (`memory`): false in the
    /// child processes of `suites::child`.
    pub(crate) counting: bool,
    pub(crate) report: Report,
}

const ALL: [Suite; 8] = [
    Suite::Cache,
    Suite::Hitratio,
    Suite::Tiered,
    Suite::Pool,
    Suite::Monitor,
    Suite::Log,
    Suite::Websocket,
    Suite::Queue,
];

/// What this process is: the bench, or one of the children it starts
/// (this binary again, told by a variable in the environment).
#[derive(Debug, PartialEq)]
enum Role {
    /// The `websocket` suite's clients, with their spec.
    WebsocketClients(String),
    /// A timed suite with allocation counting off, with its spec.
    Uncounted(String),
    /// The bench itself, reading its command line.
    Bench,
}

impl Role {
    fn from_env() -> Self {
        Self::of(
            std::env::var(suites::WEBSOCKET_CLIENT_ENV).ok(),
            std::env::var_os(suites::UNCOUNTED_CHILD_ENV).map(|s| s.to_string_lossy().into_owned()),
        )
    }

    /// The websocket clients' variable wins: the clients are started by a
    /// suite running uncounted, and inherit its variable.
    fn of(websocket_clients: Option<String>, uncounted: Option<String>) -> Self {
        match (websocket_clients, uncounted) {
            (Some(spec), _) => Role::WebsocketClients(spec),
            (None, Some(spec)) => Role::Uncounted(spec),
            (None, None) => Role::Bench,
        }
    }
}

fn main() -> ExitCode {
    let child = match Role::from_env() {
        Role::WebsocketClients(spec) => suites::websocket_client_main(&spec)
            .map_err(|error| format!("websocket clients: {error:#}")),
        Role::Uncounted(spec) => {
            // Before anything else allocates in the measured work.
            memory::stop_counting();
            suites::uncounted_child_main(&spec).map_err(|error| format!("{error:#}"))
        }
        Role::Bench => return bench(),
    };
    match child {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> ExitCode {
    let cli = Cli::parse();
    let mut ctx = Ctx {
        quick: cli.quick,
        trace: cli.trace,
        format: cli.format,
        capacities: cli.capacity,
        soak: cli.soak,
        counting: true,
        report: Report::new(cli.json),
    };
    let suites: Vec<Suite> = match cli.suite {
        Suite::All => ALL.into_iter().chain([Suite::Gateway]).collect(),
        one => vec![one],
    };
    let mut failed = false;
    for suite in suites {
        let name = suite
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        ctx.report.begin(&name);
        let result = suites::run(&name, &mut ctx);
        ctx.report.end();
        if let Err(error) = result {
            eprintln!("error: suite {name}: {error:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_knows_its_role_and_the_websocket_clients_win() {
        let spec = || Some("x".to_owned());
        assert_eq!(Role::of(None, None), Role::Bench);
        assert_eq!(Role::of(None, spec()), Role::Uncounted("x".into()));
        assert_eq!(Role::of(spec(), None), Role::WebsocketClients("x".into()));
        // Clients started by the uncounted websocket suite carry both.
        assert_eq!(
            Role::of(Some("c".into()), Some("websocket full".into())),
            Role::WebsocketClients("c".into())
        );
    }
}
