//! `gyrus`: the daemon (`gyrus up`) and the command-line clients that talk to it.

mod audit;
mod cli;
mod client;
mod commands;
mod consent;
mod ipc;
mod render;
mod up;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::report_usage_error(e),
    };
    let result = match cli.command {
        Command::Up(args) => up::run(cli.home.as_deref(), args),
        Command::Status(args) => commands::status(cli.home.as_deref(), args),
        Command::Token(args) => commands::token(cli.home.as_deref(), args),
        Command::Agent(args) => commands::agent(cli.home.as_deref(), args),
        Command::Audit(args) => audit::run(cli.home.as_deref(), args),
        Command::Grant(args) => consent::grant(cli.home.as_deref(), args),
        Command::Approvals(json) => consent::approvals(cli.home.as_deref(), json),
        Command::Approve {
            id,
            valid_for,
            uses,
            json,
        } => consent::approve(cli.home.as_deref(), &id, valid_for, uses, json),
        Command::Deny { id, json } => consent::deny(cli.home.as_deref(), &id, json),
        Command::Send(args) => ipc::send(cli.home.as_deref(), args),
        Command::Recv(args) => ipc::recv(cli.home.as_deref(), args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then its causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
