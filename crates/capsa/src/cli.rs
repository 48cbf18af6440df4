//! The Docker-style front end: `capsa caps`, `capsa run`, ...

use clap::{Parser, Subcommand};
use std::ffi::OsString;

#[derive(Parser)]
#[command(name = "capsa", version, about = "A daemonless, least-privilege container runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, decode, explain and resolve Linux capabilities.
    Caps(crate::caps_cmd::CapsArgs),
}

/// Parses the user command line and runs it; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cli.command {
        Command::Caps(args) => crate::caps_cmd::run(args),
    }
}
