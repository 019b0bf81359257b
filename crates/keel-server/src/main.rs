//! `keel`: the Keel gateway.
//!
//! `keel` (or `keel serve`) runs the gateway; `keel check-config FILE`
//! validates a configuration file and prints `ok` or every error in it.

mod admin;
mod app;
mod cli;
mod demo;
mod gateway;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => report(serve::run(args)),
        Command::CheckConfig { file } => match keel::KeelConfig::load(Some(&file)) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{}: {}", file.display(), cli::chain(&error));
                ExitCode::FAILURE
            }
        },
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
