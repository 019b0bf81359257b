//! One module per suite; [`run`] dispatches by name.

mod cache;
mod gateway;
mod hitratio;
mod log;
mod monitor;
mod pool;
mod queue;
mod ratelimit;
mod tiered;
mod websocket;

pub(crate) use log::{CHILD_ENV as LOG_CHILD_ENV, child_main as log_child_main};
pub(crate) use websocket::{
    CLIENT_ENV as WEBSOCKET_CLIENT_ENV, client_main as websocket_client_main,
};

use crate::Ctx;

/// Runs the suite called `name`.
pub(crate) fn run(name: &str, ctx: &mut Ctx) -> anyhow::Result<()> {
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
