//! The process tools: `process.spawn` (a command in the sandbox, see [`crate::sandbox`]),
//! `process.list` and `process.kill`.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::paths::{resolve, tree_resource};
use crate::sandbox::{self, Limits, SandboxOutcome, SandboxSpec};
use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};
use crate::{ToolEnv, Tools};

/// Registers the process tools.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(ProcessSpawn));
    tools.register(Typed::new(ProcessList));
    tools.register(Typed::new(ProcessKill));
}

/// Where a program named without a slash is looked for.
const PROGRAM_DIRS: &[&str] = &["/usr/bin", "/bin"];
/// The longest wall-clock timeout a caller may ask for.
const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The default wall-clock timeout.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The most output a caller may ask for, per stream.
const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// The default output kept, per stream.
const DEFAULT_OUTPUT_BYTES: usize = 1 << 20;
/// The largest standard input.
const MAX_STDIN_BYTES: usize = 4 << 20;
/// Upper bounds on the limits a caller may ask for.
const MAX_LIMITS: Limits = Limits {
    cpu_secs: 3600,
    memory_bytes: 16 << 30,
    max_processes: 1024,
    max_file_bytes: 4 << 30,
    max_open_files: 4096,
};

/// Resource limits a caller may set; each defaults to the sandbox's default.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// CPU seconds, per process (default 60, at most 3600).
    pub cpu_secs: Option<u64>,
    /// Address space in bytes, per process (default 1 GiB, at most 16 GiB).
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once (default 64, at most 1024).
    pub max_processes: Option<u64>,
    /// Largest file written, in bytes (default 256 MiB, at most 4 GiB).
    pub max_file_bytes: Option<u64>,
}

/// Arguments of `process.spawn`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnArgs {
    /// An absolute path, or a name looked up in /usr/bin and /bin.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The working directory (absolute); default: the call's scratch directory. It must be
    /// in a granted root, or it becomes a read root itself.
    pub cwd: Option<String>,
    /// Extra environment variables. The command gets only PATH, HOME and TMPDIR (its
    /// scratch directory), LANG and these.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Trees the command may read (absolute paths).
    #[serde(default)]
    pub read_paths: Vec<String>,
    /// Trees the command may read and write (absolute paths); `.git` directories in them
    /// stay read-only.
    #[serde(default)]
    pub write_paths: Vec<String>,
    /// Whether the command may use the host's network (IPv4/IPv6 sockets only).
    #[serde(default)]
    pub network: bool,
    /// Wall-clock limit in ms (default 30000, at most 600000).
    pub timeout_ms: Option<u64>,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitArgs,
    /// Standard input (default: empty).
    pub stdin: Option<String>,
    /// The most bytes kept of stdout and of stderr, each (default 1 MiB, at most 4 MiB).
    pub max_output_bytes: Option<usize>,
}

/// `process.spawn`.
#[derive(Debug)]
pub struct ProcessSpawn;

/// A program name or path, resolved to the file that would run.
fn resolve_program(program: &str) -> Result<PathBuf, ToolError> {
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else if program.is_empty() || program == "." || program == ".." {
        return Err(ToolError::InvalidArgs("field `program`: empty".into()));
    } else {
        PROGRAM_DIRS
            .iter()
            .map(|d| format!("{d}/{program}"))
            .collect()
    };
    for candidate in &candidates {
        let path = resolve(candidate, true)?;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(path);
        }
    }
    Err(ToolError::InvalidArgs(format!(
        "field `program`: {program:?} is not an executable file{}",
        if program.contains('/') {
            String::new()
        } else {
            format!(" in {}; give an absolute path", PROGRAM_DIRS.join(" or "))
        }
    )))
}

fn bounded(field: &str, value: Option<u64>, default: u64, max: u64) -> Result<u64, ToolError> {
    let v = value.unwrap_or(default);
    if v == 0 || v > max {
        return Err(ToolError::InvalidArgs(format!(
            "field `{field}`: must be between 1 and {max}"
        )));
    }
    Ok(v)
}

/// Everything a spawn needs, checked and resolved.
#[derive(Debug)]
struct Plan {
    program: PathBuf,
    read_paths: Vec<PathBuf>,
    write_paths: Vec<PathBuf>,
    cwd: Option<PathBuf>,
    limits: Limits,
    timeout_ms: u64,
    max_output_bytes: usize,
}

fn plan(args: &SpawnArgs) -> Result<Plan, ToolError> {
    let program = resolve_program(&args.program)?;
    let roots = |paths: &[String]| -> Result<Vec<PathBuf>, ToolError> {
        paths.iter().map(|p| resolve(p, true)).collect()
    };
    let write_paths = roots(&args.write_paths)?;
    let mut read_paths = roots(&args.read_paths)?;
    let cwd = args.cwd.as_deref().map(|c| resolve(c, true)).transpose()?;
    if let Some(cwd) = &cwd
        && !write_paths.iter().any(|w| cwd.starts_with(w))
        && !read_paths.iter().any(|r| cwd.starts_with(r))
    {
        read_paths.push(cwd.clone());
    }
    for (key, value) in &args.env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(ToolError::InvalidArgs(format!(
                "field `env`: {key:?} is not a valid variable (no '=' or NUL in names, no NUL in values)"
            )));
        }
    }
    if args.args.iter().any(|a| a.contains('\0')) {
        return Err(ToolError::InvalidArgs(
            "field `args`: an argument may not contain NUL".into(),
        ));
    }
    if args
        .stdin
        .as_ref()
        .is_some_and(|s| s.len() > MAX_STDIN_BYTES)
    {
        return Err(ToolError::InvalidArgs(format!(
            "field `stdin`: at most {MAX_STDIN_BYTES} bytes"
        )));
    }
    let d = Limits::default();
    let l = &args.limits;
    let limits = Limits {
        cpu_secs: bounded(
            "limits.cpu_secs",
            l.cpu_secs,
            d.cpu_secs,
            MAX_LIMITS.cpu_secs,
        )?,
        memory_bytes: bounded(
            "limits.memory_bytes",
            l.memory_bytes,
            d.memory_bytes,
            MAX_LIMITS.memory_bytes,
        )?,
        max_processes: bounded(
            "limits.max_processes",
            l.max_processes,
            d.max_processes,
            MAX_LIMITS.max_processes,
        )?,
        max_file_bytes: bounded(
            "limits.max_file_bytes",
            l.max_file_bytes,
            d.max_file_bytes,
            MAX_LIMITS.max_file_bytes,
        )?,
        max_open_files: d.max_open_files,
    };
    let timeout_ms = bounded(
        "timeout_ms",
        args.timeout_ms,
        DEFAULT_TIMEOUT_MS,
        MAX_TIMEOUT_MS,
    )?;
    let max_output_bytes = bounded(
        "max_output_bytes",
        args.max_output_bytes.map(|b| b as u64),
        DEFAULT_OUTPUT_BYTES as u64,
        MAX_OUTPUT_BYTES as u64,
    )? as usize;
    Ok(Plan {
        program,
        read_paths,
        write_paths,
        cwd,
        limits,
        timeout_ms,
        max_output_bytes,
    })
}

/// Makes the call's private scratch directory, `runtime/sandbox/<random>` (mode 0700).
fn scratch_dir(env: &ToolEnv) -> Result<PathBuf, ToolError> {
    let parent = env.home.layer(gyrus_home::Layer::Runtime).join("sandbox");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(|e| ToolError::internal(format!("cannot create {}: {e}", parent.display())))?;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(ToolError::internal)?;
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = parent.join(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ToolError::internal(format!("cannot create {}: {e}", dir.display())))?;
    // Canonical, so Landlock and the command see the same path.
    std::fs::canonicalize(&dir).map_err(ToolError::internal)
}

impl TypedTool for ProcessSpawn {
    type Args = SpawnArgs;
    type Output = SandboxOutcome;
    const NAME: &'static str = "process.spawn";
    const DESCRIPTION: &'static str = "Run a command in a sandbox: it sees only the system's programs and libraries and the roots granted to it, has no network unless asked, runs under resource limits and a timeout, and everything it starts is killed when it ends.";
    const RISK: Risk = Risk::Irreversible;

    fn timeout(&self) -> Duration {
        Duration::from_millis(MAX_TIMEOUT_MS) + Duration::from_secs(10)
    }

    fn max_output_bytes(&self) -> usize {
        // Both streams at their largest, escaped as JSON.
        MAX_OUTPUT_BYTES * 2 * 6 + (64 << 10)
    }

    fn requirements(
        &self,
        args: &SpawnArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        let plan = plan(args)?;
        let program = plan.program.to_str().ok_or_else(|| {
            ToolError::InvalidArgs("field `program`: the path is not UTF-8".into())
        })?;
        let mut reqs = vec![Requirement::new(
            "process.spawn",
            format!("exec:{program}"),
        )?];
        for root in &plan.read_paths {
            reqs.push(Requirement::new("fs.read", tree_resource(root)?)?);
        }
        for root in &plan.write_paths {
            reqs.push(Requirement::new("fs.write", tree_resource(root)?)?);
        }
        if args.network {
            reqs.push(Requirement::new("net.connect", "net:*")?);
        }
        Ok(reqs)
    }

    fn run(&self, cx: &CallContext<'_>, args: SpawnArgs) -> Result<Ran<SandboxOutcome>, ToolError> {
        let launcher = cx.env.sandbox_launcher.as_deref().ok_or_else(|| {
            ToolError::Unavailable(
                "process.spawn needs the sandbox launcher (the gyrus binary), and this daemon has none configured".into(),
            )
        })?;
        let plan = plan(&args)?;
        let left = cx.deadline.saturating_duration_since(Instant::now());
        let timeout_ms = plan
            .timeout_ms
            .min(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        let temp = scratch_dir(cx.env)?;
        let mut spec = SandboxSpec::new(temp.clone());
        spec.env.extend(args.env);
        spec.read_paths = plan.read_paths;
        spec.write_paths = plan.write_paths;
        if let Some(cwd) = plan.cwd {
            spec.cwd = cwd;
        }
        spec.arg0 = Some(args.program.clone());
        spec.network = args.network;
        spec.limits = plan.limits;
        spec.timeout_ms = timeout_ms;
        spec.max_output_bytes = plan.max_output_bytes;
        spec.allow_unsandboxed = cx.env.allow_unsandboxed;
        let result = sandbox::run(
            launcher,
            &spec,
            &plan.program,
            &args.args,
            args.stdin.as_deref().map(str::as_bytes),
        );
        if let Err(e) = std::fs::remove_dir_all(&temp) {
            tracing::warn!(dir = %temp.display(), error = %e, "could not remove a sandbox scratch directory");
        }
        Ok(Ran::output(result?))
    }
}

/// Arguments of `process.list` (none).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {}

/// One process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// Its real uid.
    pub uid: u32,
    /// Its command name (`comm`, at most 15 bytes).
    pub command: String,
    /// Its command line, arguments separated by spaces, cut at 512 bytes.
    pub cmdline: String,
    /// Its state: R running, S sleeping, D waiting on I/O, Z zombie, T stopped, …
    pub state: String,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// When it started, Unix seconds.
    pub start_time: u64,
}

/// Output of `process.list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// The processes, by pid.
    pub processes: Vec<ProcessInfo>,
    /// True if there were more than were returned.
    pub truncated: bool,
}

/// The most processes `process.list` returns.
const MAX_LISTED: usize = 5000;
const MAX_CMDLINE: usize = 512;

/// The fields of `/proc/<pid>/stat` that `process.list` uses.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    command: String,
    state: String,
    ppid: i32,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command sits in parentheses and may itself contain
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let command = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(Stat {
        command,
        state: rest.first()?.to_string(),
        ppid: rest.get(1)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
        rss_pages: rest.get(21)?.parse().ok()?,
    })
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn real_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text: String = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    if text.len() > MAX_CMDLINE {
        let mut cut = MAX_CMDLINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// `process.list`.
#[derive(Debug)]
pub struct ProcessList;

impl TypedTool for ProcessList {
    type Args = ListArgs;
    type Output = ListOutput;
    const NAME: &'static str = "process.list";
    const DESCRIPTION: &'static str = "List the host's processes visible to the daemon: pid, parent, uid, command, command line, state, resident memory and start time.";
    const RISK: Risk = Risk::Read;

    fn requirements(
        &self,
        _args: &ListArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new("process.list", "process:*")?])
    }

    fn run(&self, _cx: &CallContext<'_>, _args: ListArgs) -> Result<Ran<ListOutput>, ToolError> {
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        let page = rustix::param::page_size() as u64;
        let btime = boot_time();
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .map_err(|e| ToolError::failed(format!("cannot read /proc: {e}")))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        pids.sort_unstable();
        let truncated = pids.len() > MAX_LISTED;
        let processes = pids
            .into_iter()
            .take(MAX_LISTED)
            .filter_map(|pid| {
                // A process can end while it is being read; it is then left out.
                let stat = read_stat(pid)?;
                Some(ProcessInfo {
                    pid,
                    ppid: stat.ppid,
                    uid: real_uid(pid)?,
                    command: stat.command,
                    cmdline: cmdline(pid),
                    state: stat.state,
                    rss_bytes: stat.rss_pages.saturating_mul(page),
                    start_time: btime + stat.start_ticks / ticks,
                })
            })
            .collect();
        Ok(Ran::output(ListOutput {
            processes,
            truncated,
        }))
    }
}

/// The signals `process.kill` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KillSignal {
    /// SIGTERM: ask it to end.
    #[serde(rename = "TERM")]
    Term,
    /// SIGKILL: end it now.
    #[serde(rename = "KILL")]
    Kill,
    /// SIGINT: as Ctrl-C.
    #[serde(rename = "INT")]
    Int,
    /// SIGHUP: hang up (many daemons reload).
    #[serde(rename = "HUP")]
    Hup,
}

impl KillSignal {
    fn signal(self) -> Signal {
        match self {
            KillSignal::Term => Signal::TERM,
            KillSignal::Kill => Signal::KILL,
            KillSignal::Int => Signal::INT,
            KillSignal::Hup => Signal::HUP,
        }
    }
}

fn default_signal() -> KillSignal {
    KillSignal::Term
}

/// Arguments of `process.kill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillArgs {
    /// The process.
    pub pid: i32,
    /// The signal (default TERM).
    #[serde(default = "default_signal")]
    pub signal: KillSignal,
}

/// Output of `process.kill`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct KillOutput {
    /// The process signalled.
    pub pid: i32,
    /// Its command name.
    pub command: String,
    /// The signal sent.
    pub signal: KillSignal,
}

/// The daemon itself and its ancestors, up to pid 1.
fn protected_pids() -> Vec<i32> {
    let mut out = vec![1];
    let mut pid = rustix::process::getpid().as_raw_nonzero().get();
    for _ in 0..1024 {
        out.push(pid);
        match read_stat(pid) {
            Some(stat) if stat.ppid > 1 => pid = stat.ppid,
            _ => break,
        }
    }
    out
}

/// Why `pid` may not be signalled, if it may not.
fn kill_refusal(pid: i32, protected: &[i32]) -> Option<String> {
    if pid <= 0 {
        return Some(format!(
            "field `pid`: {pid} is not a process (process groups and -1 are not accepted)"
        ));
    }
    if pid == 1 {
        return Some("refusing to signal pid 1 (init): it would bring the system down".into());
    }
    if protected.contains(&pid) {
        return Some(format!(
            "refusing to signal pid {pid}: it is the gyrus daemon or one of its parents; stop the daemon with `gyrus down` or its service manager"
        ));
    }
    None
}

/// `process.kill`.
#[derive(Debug)]
pub struct ProcessKill;

impl TypedTool for ProcessKill {
    type Args = KillArgs;
    type Output = KillOutput;
    const NAME: &'static str = "process.kill";
    const DESCRIPTION: &'static str =
        "Send TERM, KILL, INT or HUP to a process (not pid 1, not the daemon or its parents).";
    const RISK: Risk = Risk::Irreversible;

    fn requirements(&self, args: &KillArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        if let Some(why) = kill_refusal(args.pid, &protected_pids()) {
            return Err(ToolError::InvalidArgs(why));
        }
        let stat = read_stat(args.pid)
            .ok_or_else(|| ToolError::failed(format!("no process with pid {}", args.pid)))?;
        Ok(vec![
            Requirement::new("process.kill", format!("process:{}", args.pid))?
                .with_attr("command", stat.command),
        ])
    }

    fn run(&self, _cx: &CallContext<'_>, args: KillArgs) -> Result<Ran<KillOutput>, ToolError> {
        if let Some(why) = kill_refusal(args.pid, &protected_pids()) {
            return Err(ToolError::InvalidArgs(why));
        }
        let pid = Pid::from_raw(args.pid).ok_or_else(|| {
            ToolError::InvalidArgs(format!("field `pid`: {} is not a process", args.pid))
        })?;
        let gone = || ToolError::failed(format!("no process with pid {}", args.pid));
        // Hold the process by a pidfd first, so the pid cannot be reused under us between
        // the check below and the signal.
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(|_| gone())?;
        let stat = read_stat(args.pid).ok_or_else(gone)?;
        rustix::process::pidfd_send_signal(&pidfd, args.signal.signal()).map_err(|e| {
            ToolError::failed(format!(
                "cannot signal pid {} ({}): {e}",
                args.pid, stat.command
            ))
        })?;
        Ok(Ran::output(KillOutput {
            pid: args.pid,
            command: stat.command,
            signal: args.signal,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 123456 10000000 789 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                command: "a (b) c".into(),
                state: "S".into(),
                ppid: 17,
                start_ticks: 123456,
                rss_pages: 789,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_reads_back() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let stat = read_stat(me).unwrap();
        assert!(stat.rss_pages > 0);
        assert!(!cmdline(me).is_empty());
    }

    #[test]
    fn init_the_daemon_and_its_parents_are_protected() {
        let protected = protected_pids();
        let me = rustix::process::getpid().as_raw_nonzero().get();
        assert!(kill_refusal(1, &protected).unwrap().contains("pid 1"));
        assert!(kill_refusal(me, &protected).unwrap().contains("daemon"));
        let parent = read_stat(me).unwrap().ppid;
        if parent > 1 {
            assert!(kill_refusal(parent, &protected).is_some());
        }
        assert!(kill_refusal(-1, &protected).is_some());
        assert!(kill_refusal(0, &protected).is_some());
        assert_eq!(kill_refusal(999_999_999, &protected), None);
    }

    fn spawn_args(json: serde_json::Value) -> SpawnArgs {
        crate::parse_args(&json).unwrap()
    }

    #[test]
    fn spawn_requirements_name_the_program_and_every_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::create_dir(root.join("out")).unwrap();
        let args = spawn_args(serde_json::json!({
            "program": "sh",
            "read_paths": [format!("{}/src/../src", root.display())],
            "write_paths": [root.join("out")],
            "cwd": root,
            "network": true,
        }));
        let env = ToolEnv::new(gyrus_home::Home::new(root.clone()));
        let reqs = ProcessSpawn.requirements(&args, &env).unwrap();
        let got: Vec<(String, String)> = reqs
            .iter()
            .map(|r| (r.action.as_str().to_string(), r.resource.clone()))
            .collect();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let sh = if std::fs::canonicalize("/usr/bin/sh").is_ok() {
            std::fs::canonicalize("/usr/bin/sh").unwrap()
        } else {
            sh
        };
        assert_eq!(
            got,
            vec![
                ("process.spawn".into(), format!("exec:{}", sh.display())),
                ("fs.read".into(), format!("path:{}/src/**", root.display())),
                ("fs.read".into(), format!("path:{}/**", root.display())),
                ("fs.write".into(), format!("path:{}/out/**", root.display())),
                ("net.connect".into(), "net:*".into()),
            ]
        );
    }

    #[test]
    fn spawn_refuses_limits_past_the_bounds_and_unknown_programs() {
        let args = spawn_args(serde_json::json!({
            "program": "sh",
            "limits": {"max_processes": 100000},
        }));
        let err = plan(&args).unwrap_err().to_string();
        assert!(err.contains("limits.max_processes"), "{err}");
        let args = spawn_args(serde_json::json!({"program": "no-such-program-here"}));
        assert!(
            plan(&args)
                .unwrap_err()
                .to_string()
                .contains("absolute path")
        );
        let args = spawn_args(serde_json::json!({"program": "sh", "env": {"A=B": "x"}}));
        assert!(plan(&args).is_err());
        assert!(
            crate::parse_args::<SpawnArgs>(&serde_json::json!({"program": "sh", "nope": 1}))
                .is_err()
        );
    }

    #[test]
    fn kill_signal_names_are_upper_case() {
        let args: KillArgs =
            crate::parse_args(&serde_json::json!({"pid": 5, "signal": "KILL"})).unwrap();
        assert_eq!(args.signal, KillSignal::Kill);
        assert!(
            crate::parse_args::<KillArgs>(&serde_json::json!({"pid": 5, "signal": "STOP"}))
                .is_err()
        );
    }
}
