//! The daemon's settings for tools.

use std::path::PathBuf;
use std::time::Duration;

use gyrus_home::Home;

/// What tools need from the daemon: the home, where the sandbox launcher is, and the owner's
/// choices.
#[derive(Debug, Clone)]
pub struct ToolEnv {
    /// The home.
    pub home: Home,
    /// The program that enters the sandbox and runs a command in it: the `gyrus` binary
    /// itself (`gyrus sandbox-exec`). `None`: `process.spawn` is unavailable.
    pub sandbox_launcher: Option<PathBuf>,
    /// Whether the owner's policy lets `process.spawn` run without a sandbox on a kernel that
    /// lacks Landlock or seccomp (`tools.allow_unsandboxed`). Off by default.
    pub allow_unsandboxed: bool,
    /// How long undo records are kept.
    pub undo_retention: Duration,
    /// The most bytes the undo journal keeps (snapshots included); the oldest go first.
    pub undo_max_bytes: u64,
}

impl ToolEnv {
    /// Defaults for `home`: no launcher, sandbox required, undo kept 7 days and up to 1 GiB.
    pub fn new(home: Home) -> ToolEnv {
        ToolEnv {
            home,
            sandbox_launcher: None,
            allow_unsandboxed: false,
            undo_retention: Duration::from_secs(7 * 24 * 3600),
            undo_max_bytes: 1 << 30,
        }
    }
}
