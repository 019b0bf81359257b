//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keel: an infrastructure gateway for async Rust services.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    /// Options of `serve`, accepted without the subcommand's name.
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway (the default command).
    Serve(ServeArgs),
    /// Validate a configuration file (with `KEEL_*` overrides) and print
    /// `ok` or every error in it.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file; without one, the embedded defaults are used.
    #[arg(long, short, env = "KEEL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on, overriding `server.listen`.
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
}

/// An error and its sources on one line, `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}
