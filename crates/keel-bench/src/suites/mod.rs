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
mod websocket;

pub(crate) use child::{CHILD_ENV as UNCOUNTED_CHILD_ENV, child_main as uncounted_child_main};
pub(crate) use websocket::{
    CLIENT_ENV as WEBSOCKET_CLIENT_ENV, client_main as websocket_client_main,
};

use crate::Ctx;

/// Suites whose timed cases allocate on the hot path: they run in a child
/// process with allocation counting off ([`child`]); `cache` measures its
/// memory case in the parent afterwards.
const UNCOUNTED: [&str; 3] = ["cache", "log", "queue"];

/// Runs the suite called `name`.
pub(crate) fn run(name: &str, ctx: &mut Ctx) -> anyhow::Result<()> {
    if ctx.counting && UNCOUNTED.contains(&name) {
        child::run(name, ctx)?;
        return match name {
            "cache" => cache::memory(ctx),
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
