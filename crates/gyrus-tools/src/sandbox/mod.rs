//! Sandboxed execution: `process.spawn` runs a command inside a sandbox that the `gyrus`
//! binary builds around itself, so no `unsafe` code (no `pre_exec`) is needed.
//!
//! The daemon runs `gyrus __sandbox-exec SPEC-JSON -- PROGRAM ARGS…` (see [`run`]). That
//! process, the *launcher*, while still single-threaded:
//!
//! 1. enters new user, mount and PID namespaces (and an empty network namespace without a
//!    network grant), mapping its own uid and gid to themselves so file ownership is
//!    unchanged. When it runs as root it first moves its *real* uid to an unused one
//!    ([`policy::SANDBOX_REAL_UID`]) and keeps the effective uid 0: the kernel never applies
//!    `RLIMIT_NPROC` to a process whose real user is root, in any user namespace;
//! 2. makes its mounts private and bind-mounts every `.git` directory under a write root
//!    read-only onto itself;
//! 3. restricts itself with Landlock (file system, TCP, signal and abstract-socket scopes)
//!    and seccomp (no ptrace, mounts, namespaces, module loading, BPF, io_uring, sockets
//!    without a network grant, …), with `no_new_privs`;
//! 4. starts `gyrus __sandbox-exec --inner …` as PID 1 of the new PID namespace. That stage
//!    adds a nested Landlock domain (so nothing in the sandbox can signal or trace the
//!    launcher), drops every capability, sets the resource limits and execs the command;
//! 5. waits with the wall-clock timeout, kills the PID namespace (and any descendant left),
//!    and prints its result as one JSON line on its stdout.
//!
//! The pure parts (the seccomp table, the Landlock path lists, the decision to refuse) live
//! in [`policy`] and are tested without a kernel.

mod daemon;
mod launcher;
pub mod policy;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use daemon::run;

/// The first argument of `gyrus` that makes it the sandbox launcher instead of the CLI.
pub const LAUNCHER_ARG: &str = "__sandbox-exec";

/// The launcher's entry point: `gyrus __sandbox-exec ARGS…` (everything after
/// [`LAUNCHER_ARG`]). Enters the sandbox, runs the command, and prints its result.
pub fn launcher_main(args: &[OsString]) -> ExitCode {
    launcher::main(args)
}

/// Resource limits for a sandboxed command (enforced with `setrlimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU seconds (`RLIMIT_CPU`), per process.
    pub cpu_secs: u64,
    /// Address space in bytes (`RLIMIT_AS`), per process.
    pub memory_bytes: u64,
    /// Processes and threads alive at once, the command and all it starts
    /// (`RLIMIT_NPROC`, counted in the sandbox's own user namespace).
    pub max_processes: u64,
    /// Largest file the command may write (`RLIMIT_FSIZE`).
    pub max_file_bytes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            cpu_secs: 60,
            memory_bytes: 1 << 30,
            max_processes: 64,
            max_file_bytes: 256 << 20,
            max_open_files: 1024,
        }
    }
}

/// A sandbox layer the kernel may lack; used in messages and, for tests, in
/// [`SandboxSpec::pretend_missing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// User, mount and PID namespaces (and the network namespace).
    UserNamespace,
    /// Landlock, ABI 3 or later.
    Landlock,
    /// Seccomp filters.
    Seccomp,
}

impl Layer {
    /// The layer's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::UserNamespace => "user namespaces",
            Layer::Landlock => "Landlock",
            Layer::Seccomp => "seccomp",
        }
    }
}

/// Everything the launcher needs besides the program and its arguments. Paths must be
/// absolute and already resolved ([`crate::paths::resolve`]) and approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Trees the command may read (and execute from).
    pub read_paths: Vec<PathBuf>,
    /// Trees the command may read and write; `.git` directories in them stay read-only.
    pub write_paths: Vec<PathBuf>,
    /// The call's private scratch directory (must exist); writable, and `HOME`/`TMPDIR`.
    pub temp_dir: PathBuf,
    /// The working directory.
    pub cwd: PathBuf,
    /// The command's whole environment (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// `argv[0]`, when it should differ from the program path.
    pub arg0: Option<String>,
    /// Whether the command may use the host's network (TCP/UDP over IPv4 and IPv6 only). Without it the command has an empty network namespace and
    /// cannot create any socket.
    pub network: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Wall-clock limit; the command and everything it started are killed after it.
    pub timeout_ms: u64,
    /// The most bytes kept of stdout and of stderr, each.
    pub max_output_bytes: usize,
    /// Run even when a sandbox layer is missing from the kernel (the owner's
    /// `tools.allow_unsandboxed`); the outcome then says `sandboxed: false`.
    pub allow_unsandboxed: bool,
    /// For tests only: behave as if the kernel lacked these layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pretend_missing: Vec<Layer>,
}

impl SandboxSpec {
    /// A spec with no roots, no network, default limits, a 30 s timeout and 1 MiB of
    /// output each, working in (and with `HOME`/`TMPDIR` set to) `temp_dir`.
    pub fn new(temp_dir: PathBuf) -> SandboxSpec {
        SandboxSpec {
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            cwd: temp_dir.clone(),
            env: policy::base_env(&temp_dir),
            temp_dir,
            arg0: None,
            network: false,
            limits: Limits::default(),
            timeout_ms: 30_000,
            max_output_bytes: 1 << 20,
            allow_unsandboxed: false,
            pretend_missing: Vec::new(),
        }
    }
}

/// Which layers were in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxReport {
    /// The Landlock ABI in force, if Landlock was applied.
    pub landlock_abi: Option<u32>,
    /// Whether the seccomp filter was applied.
    pub seccomp: bool,
    /// Whether the command ran in its own user, mount and PID namespaces.
    pub user_ns: bool,
    /// Whether the command ran in an empty network namespace.
    pub net_ns: bool,
}

/// What a sandboxed command came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxOutcome {
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// Its stdout (invalid UTF-8 replaced), at most `max_output_bytes`.
    pub stdout: String,
    /// Its stderr (invalid UTF-8 replaced), at most `max_output_bytes`.
    pub stderr: String,
    /// Whether stdout was cut.
    pub stdout_truncated: bool,
    /// Whether stderr was cut.
    pub stderr_truncated: bool,
    /// Wall-clock time, start to end.
    pub duration_ms: u64,
    /// Whether every sandbox layer was in force.
    pub sandboxed: bool,
    /// Why not, when `sandboxed` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsandboxed_reason: Option<String>,
    /// The layers in force.
    pub sandbox: SandboxReport,
}

/// One line the launcher prints on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LauncherMessage {
    /// The command started; its PID as the daemon sees it (PID 1 of the sandbox's PID
    /// namespace), for the daemon's last-resort kill.
    Started { pid: i32 },
    /// The command ran.
    Done(SandboxOutcome),
    /// The sandbox could not be built (a layer is missing and the owner did not allow
    /// running without it).
    Refused { message: String },
    /// The command could not be started (a bad spec, a missing working directory).
    Failed { message: String },
}

/// What the outer launcher tells the inner stage (after `--inner`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InnerSpec {
    limits: Limits,
    arg0: Option<String>,
    /// Whether to add the nested Landlock domain.
    landlock: bool,
    /// Whether to set `RLIMIT_NPROC` (only in a user namespace of its own, where it counts
    /// the sandbox's processes alone).
    nproc: bool,
}
