//! One module per suite; [`run`] dispatches by name.

mod cache;
mod child;
mod gateway;
mod hitratio;
mod log;
mod monitor;
mod pool;
mod queue;
mod ratelimit;
mod tiered;
mod tiered_cluster;
mod websocket;

pub(crate) use child::{CHILD_ENV as UNCOUNTED_CHILD_ENV, child_main as uncounted_child_main};
pub(crate) use websocket::{
    CLIENT_ENV as WEBSOCKET_CLIENT_ENV, client_main as websocket_client_main,
};

use crate::Ctx;

/// Suites that time nothing, and so run in this process.
const COUNTED: [&str; 1] = ["hitratio"];

/// Whether suite `name` measures in a child process with counting off.
fn in_child(name: &str) -> bool {
    !COUNTED.contains(&name)
}

/// Runs the suite called `name`.
///
/// The counting allocator taxes every allocation and free with an atomic
/// read-modify-write, most on whichever side allocates more per operation,
/// so every timed suite runs in a child process with counting off
/// ([`child`]); what measures heap bytes (`cache`'s `memory`,
/// `websocket`'s `idle`) runs here afterwards.
pub(crate) fn run(name: &str, ctx: &mut Ctx) -> anyhow::Result<()> {
    if ctx.counting && in_child(name) {
        child::run(name, ctx)?;
        return match name {
            "cache" => cache::memory(ctx),
            "websocket" => websocket::memory(ctx),
            _ => Ok(()),
        };
    }
    match name {
        "cache" => cache::run(ctx),
        "gateway" => gateway::run(ctx),
        "hitratio" => hitratio::run(ctx),
        "log" => log::run(ctx),
        "monitor" => monitor::run(ctx),
        "pool" => pool::run(ctx),
        "queue" => queue::run(ctx),
        "tiered" => tiered::run(ctx),
        "websocket" => websocket::run(ctx),
        _ => {
            ctx.report.note(&format!(
                "suite {name}: not available yet (lands with its room)"
            ));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timed_suite_measures_uncounted() {
        for suite in [
            "cache",
            "gateway",
            "log",
            "monitor",
            "pool",
            "queue",
            "tiered",
            "websocket",
        ] {
            assert!(in_child(suite), "{suite} is timed");
        }
        assert!(!in_child("hitratio"), "hitratio times nothing");
    }
}
