//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// gyrus: one durable "frontal lobe" under all your AI tools.
///
/// `gyrus up` runs the daemon; the other commands talk to it over its Unix socket, or over HTTP
/// when GYRUS_URL and GYRUS_TOKEN are set.
#[derive(Debug, Parser)]
#[command(
    name = "gyrus",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The gyrus home [default: $GYRUS_HOME, else $XDG_DATA_HOME/gyrus, else ~/.local/share/gyrus]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home if new and run gyrus in the foreground until Ctrl-C or SIGTERM
    Up(UpArgs),
    /// Show what is running, where, and how large each state layer is
    Status(JsonArg),
    /// Create, list and revoke API tokens for devices and thin clients
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// HTTP address to listen on; port 0 picks a free one [default: api.listen in user/gyrus.toml]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its SHA-256 is kept)
    Create {
        /// A name for the token, e.g. the device that will use it
        name: String,
        /// Lifetime such as 30d, 12h or 1y [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List tokens (never their secrets)
    List(JsonArg),
    /// Revoke a token; it stops working at once
    Revoke {
        /// The token's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

/// Prints a usage error in one line (clap's own output spans several) and returns exit code 2;
/// `--help` and `--version` print as usual.
pub fn report_usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {first}; see `gyrus --help`");
            ExitCode::from(2)
        }
    }
}
