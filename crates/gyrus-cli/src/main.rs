//! `gyrus`: the daemon (`gyrus up`) and the command-line clients that talk to it.

mod audit;
mod cli;
mod client;
mod commands;
mod consent;
mod cortex;
mod frontal;
mod ipc;
mod mcp;
mod memory;
mod pull;
mod render;
mod sessions;
mod tools;
mod up;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // The sandbox launcher is this same binary: `process.spawn` runs
    // `gyrus __sandbox-exec …`, which enters the sandbox and execs the command. It is
    // dispatched before clap, logging or any thread exists (entering a user namespace
    // needs a single-threaded process).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a.as_os_str() == gyrus_tools::sandbox::LAUNCHER_ARG)
    {
        return gyrus_tools::sandbox::launcher_main(&args[2..]);
    }
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
        Command::Tool(args) => tools::tool(cli.home.as_deref(), args),
        Command::Mcp => mcp::run(cli.home.as_deref()),
        Command::Ask(args) => frontal::ask(cli.home.as_deref(), args),
        Command::Route(args) => frontal::route(cli.home.as_deref(), args),
        Command::Cortex(args) => cortex::cortex(cli.home.as_deref(), args),
        Command::Memory(args) => memory::memory(cli.home.as_deref(), args),
        Command::Session(args) => sessions::session(cli.home.as_deref(), args),
        Command::Hook { client } => return sessions::hook(cli.home.as_deref(), client),
        Command::Undo {
            action_id,
            intent,
            json,
        } => tools::undo(cli.home.as_deref(), &action_id, intent, json),
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
