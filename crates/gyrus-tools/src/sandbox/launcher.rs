//! The launcher: the `gyrus` process that builds the sandbox around itself and runs the
//! command in it. Runs single-threaded until the sandbox is in force.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, make_bitflags,
};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Pid, Resource, Rlimit, Signal, WaitOptions};

use super::policy::{self, Capture, INNER_ARG, Invocation, SystemAccess};
use super::{
    InnerSpec, LAUNCHER_ARG, LauncherMessage, Layer, SandboxOutcome, SandboxReport, SandboxSpec,
};

/// The Landlock ABI the rules are written for (tested on a kernel with ABI 7); older
/// kernels get the subset they support.
const LANDLOCK_ABI: ABI = ABI::V6;
/// The oldest Landlock ABI accepted as a sandbox (V3 handles truncation).
const LANDLOCK_MIN_ABI: u32 = 3;
/// How deep below a write root `.git` directories are looked for.
const GIT_SEARCH_DEPTH: usize = 3;
/// How many directory entries that search looks at, at most.
const GIT_SEARCH_ENTRIES: usize = 20_000;

pub(super) fn main(args: &[OsString]) -> ExitCode {
    match policy::parse_invocation(args) {
        Err(e) => {
            eprintln!("gyrus sandbox: {e}");
            ExitCode::from(125)
        }
        Ok(Invocation::Outer {
            spec,
            program,
            args,
        }) => {
            let message = match outer(&spec, &program, &args) {
                Ok(outcome) => LauncherMessage::Done(outcome),
                Err(e) => e,
            };
            let code = match message {
                LauncherMessage::Done(_) => 0,
                _ => 125,
            };
            emit(&message);
            ExitCode::from(code)
        }
        Ok(Invocation::Inner {
            inner,
            program,
            args,
        }) => inner_main(&inner, &program, &args),
    }
}

fn emit(message: &LauncherMessage) {
    if let Ok(mut line) = serde_json::to_string(message) {
        line.push('\n');
        let mut out = std::io::stdout().lock();
        // The daemon may be gone; there is no one else to tell.
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

fn refused(message: impl Into<String>) -> LauncherMessage {
    LauncherMessage::Refused {
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> LauncherMessage {
    LauncherMessage::Failed {
        message: message.into(),
    }
}

/// Builds the sandbox, runs the command, and says how it went.
fn outer(
    spec: &SandboxSpec,
    program: &OsString,
    args: &[OsString],
) -> Result<SandboxOutcome, LauncherMessage> {
    let started = Instant::now();
    if let Some(problem) = policy::spec_problem(spec) {
        return Err(failed(problem));
    }
    let exe = std::env::current_exe()
        .map_err(|e| failed(format!("cannot find the launcher's own binary: {e}")))?;
    let pretend = |layer| spec.pretend_missing.contains(&layer);
    let mut missing: Vec<(Layer, String)> = Vec::new();
    let mut report = SandboxReport::default();

    if pretend(Layer::UserNamespace) {
        missing.push((Layer::UserNamespace, "pretended missing (test)".into()));
    } else {
        match enter_namespaces(spec) {
            Ok(()) => {
                report.user_ns = true;
                report.net_ns = !spec.network;
            }
            Err(e) => missing.push((Layer::UserNamespace, e)),
        }
    }
    if pretend(Layer::Landlock) {
        missing.push((Layer::Landlock, "pretended missing (test)".into()));
    } else {
        match apply_landlock(spec, &exe, Path::new(program)) {
            Ok(abi) => report.landlock_abi = Some(abi),
            Err(e) => missing.push((Layer::Landlock, e)),
        }
    }
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| refused(format!("cannot set no_new_privs: {e}")))?;
    if pretend(Layer::Seccomp) {
        missing.push((Layer::Seccomp, "pretended missing (test)".into()));
    } else {
        match apply_seccomp(spec.network) {
            Ok(()) => report.seccomp = true,
            Err(e) => missing.push((Layer::Seccomp, e)),
        }
    }
    let unsandboxed_reason = policy::decide(&missing, spec.allow_unsandboxed).map_err(refused)?;

    // Orphans come back to the launcher (without a PID namespace) so they can be killed.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let inner = InnerSpec {
        limits: spec.limits,
        arg0: spec.arg0.clone(),
        landlock: report.landlock_abi.is_some(),
        nproc: report.user_ns,
    };
    let inner_json = serde_json::to_string(&inner).map_err(|e| failed(e.to_string()))?;
    let mut child = Command::new(&exe)
        .arg(LAUNCHER_ARG)
        .arg(INNER_ARG)
        .arg(inner_json)
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot start {} in {}: {e}",
                Path::new(program).display(),
                spec.cwd.display()
            ))
        })?;
    emit(&LauncherMessage::Started {
        pid: i32::try_from(child.id()).unwrap_or(0),
    });
    // After `unshare(CLONE_NEWPID)` this process can no longer start threads: one poll
    // loop reads both pipes and watches the clock.
    let mut streams = [
        Stream::new(
            child.stdout.take().map(OwnedFd::from),
            spec.max_output_bytes,
        ),
        Stream::new(
            child.stderr.take().map(OwnedFd::from),
            spec.max_output_bytes,
        ),
    ];
    let deadline = started + Duration::from_millis(spec.timeout_ms);
    let (status, timed_out) = wait_until(&mut child, deadline, &mut streams);
    kill_descendants();
    // Everything that could write to the pipes is dead now; take what is left.
    let drain_until = Instant::now() + Duration::from_secs(1);
    while streams.iter().any(Stream::is_open) && Instant::now() < drain_until {
        pump(&mut streams, Duration::from_millis(20));
    }
    let [stdout, stderr] = streams;
    let (stdout, stdout_truncated) = stdout.capture.finish();
    let (stderr, stderr_truncated) = stderr.capture.finish();
    let status = status.map_err(|e| failed(format!("lost the command: {e}")))?;
    Ok(SandboxOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        sandboxed: unsandboxed_reason.is_none(),
        unsandboxed_reason,
        sandbox: report,
    })
}

/// New user, mount and PID namespaces (and network, without a grant), the uid and gid
/// mapped to themselves, mounts private, `.git` under write roots read-only.
fn enter_namespaces(spec: &SandboxSpec) -> Result<(), String> {
    use rustix::thread::UnshareFlags;
    let euid = rustix::process::geteuid();
    let egid = rustix::process::getegid();
    let ruid = rustix::process::getuid();
    if euid.is_root() {
        // See `policy::SANDBOX_REAL_UID`: a real uid of root bypasses RLIMIT_NPROC.
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(policy::SANDBOX_REAL_UID),
            euid,
            euid,
        )
        .map_err(|e| format!("cannot change the real uid: {e}"))?;
    }
    let mut flags = UnshareFlags::NEWUSER | UnshareFlags::NEWNS | UnshareFlags::NEWPID;
    if !spec.network {
        flags |= UnshareFlags::NEWNET;
    }
    // `unshare` is deprecated in rustix only because `CLONE_FILES` can confuse other
    // threads; this process has one thread and does not unshare its file table.
    #[allow(deprecated)]
    if let Err(e) = rustix::thread::unshare(flags) {
        let _ = rustix::thread::set_thread_res_uid(ruid, euid, euid);
        return Err(format!("unshare: {e} (user namespaces disabled?)"));
    }
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| format!("cannot write /proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".to_string())?;
    write("uid_map", format!("{0} {0} 1\n", euid.as_raw()))?;
    write("gid_map", format!("{0} {0} 1\n", egid.as_raw()))?;

    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| format!("cannot make the mounts private: {e}"))?;
    for root in &spec.write_paths {
        for git in policy::git_dirs(root, GIT_SEARCH_DEPTH, GIT_SEARCH_ENTRIES) {
            bind_read_only(&git)
                .map_err(|e| format!("cannot make {} read-only: {e}", git.display()))?;
        }
    }
    Ok(())
}

/// Bind-mounts `path` onto itself read-only, keeping the flags of the mount it is on
/// (a child namespace may not clear `nosuid`, `nodev`… that it inherited).
fn bind_read_only(path: &Path) -> rustix::io::Result<()> {
    use rustix::fs::StatVfsMountFlags as S;
    rustix::mount::mount_bind(path, path)?;
    let current = rustix::fs::statvfs(path)?.f_flag;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (have, keep) in [
        (S::NOSUID, MountFlags::NOSUID),
        (S::NODEV, MountFlags::NODEV),
        (S::NOEXEC, MountFlags::NOEXEC),
        (S::NOATIME, MountFlags::NOATIME),
        (S::NODIRATIME, MountFlags::NODIRATIME),
        (S::RELATIME, MountFlags::RELATIME),
    ] {
        if current.contains(have) {
            flags |= keep;
        }
    }
    rustix::mount::mount_remount(path, flags, "")
}

fn add_path(
    ruleset: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, String> {
    // A path that does not exist on this host has nothing to grant.
    let Ok(fd) = PathFd::new(path) else {
        return Ok(ruleset);
    };
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(LANDLOCK_ABI)
    };
    ruleset
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|e| format!("rule for {}: {e}", path.display()))
}

/// Landlock: system paths, the roots, the scratch directory, the launcher and the
/// program; TCP denied without a network grant; signals and abstract sockets scoped.
/// Returns the ABI in force.
fn apply_landlock(spec: &SandboxSpec, exe: &Path, program: &Path) -> Result<u32, String> {
    let abi = LANDLOCK_ABI;
    let all = AccessFs::from_all(abi);
    let read_exec = AccessFs::from_read(abi);
    let read = make_bitflags!(AccessFs::{ReadFile | ReadDir});
    let exec_file = make_bitflags!(AccessFs::{ReadFile | Execute});
    let device = make_bitflags!(AccessFs::{ReadFile | WriteFile | IoctlDev});
    let e = |e: landlock::RulesetError| format!("{e}");
    let mut ruleset = Ruleset::default().handle_access(all).map_err(e)?;
    if !spec.network {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(e)?;
    }
    let mut created = ruleset
        .scope(Scope::from_all(abi))
        .map_err(e)?
        .create()
        .map_err(e)?;
    for (path, kind) in policy::SYSTEM_PATHS {
        let access = match kind {
            SystemAccess::ReadExecute => read_exec,
            SystemAccess::Read => read,
            SystemAccess::Device => device,
        };
        created = add_path(created, Path::new(path), access)?;
    }
    for p in &spec.read_paths {
        created = add_path(created, p, read_exec)?;
    }
    for p in spec.write_paths.iter().chain([&spec.temp_dir]) {
        created = add_path(created, p, all)?;
    }
    created = add_path(created, exe, exec_file)?;
    created = add_path(created, program, exec_file)?;
    let status = created.restrict_self().map_err(e)?;
    let effective = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        LandlockStatus::NotEnabled => return Err("not enabled at boot (lsm=)".into()),
        LandlockStatus::NotImplemented => return Err("not built into this kernel".into()),
    };
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("the ruleset is not enforced".into());
    }
    if effective < LANDLOCK_MIN_ABI {
        return Err(format!(
            "ABI {effective} is older than the {LANDLOCK_MIN_ABI} required"
        ));
    }
    Ok(effective.min(LANDLOCK_ABI as u32))
}

fn apply_seccomp(network: bool) -> Result<(), String> {
    for program in policy::seccomp_programs(network)? {
        seccompiler::apply_filter(&program).map_err(|e| format!("{e}"))?;
    }
    Ok(())
}

/// One of the command's output pipes and what was read from it.
struct Stream {
    fd: Option<OwnedFd>,
    capture: Capture,
}

impl Stream {
    fn new(fd: Option<OwnedFd>, limit: usize) -> Stream {
        Stream {
            fd,
            capture: Capture::new(limit),
        }
    }

    fn is_open(&self) -> bool {
        self.fd.is_some()
    }
}

/// Waits up to `wait` for output, reads what is there, and closes streams at their end.
fn pump(streams: &mut [Stream], wait: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut ready = [false; 2];
    {
        let open: Vec<(usize, &OwnedFd)> = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.fd.as_ref().map(|fd| (i, fd)))
            .collect();
        if open.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|(_, fd)| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
            return;
        }
        for ((i, _), fd) in open.iter().zip(&fds) {
            if !fd.revents().is_empty()
                && let Some(r) = ready.get_mut(*i)
            {
                *r = true;
            }
        }
    }
    let mut buf = [0u8; 16384];
    for (stream, ready) in streams.iter_mut().zip(ready) {
        if !ready {
            continue;
        }
        let Some(fd) = stream.fd.as_ref() else {
            continue;
        };
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => stream.fd = None,
            Ok(n) => stream.capture.push(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => stream.fd = None,
        }
    }
}

/// Waits for the command until `deadline`, reading its output meanwhile, then kills it
/// (as PID 1 of its namespace, all its descendants with it). Returns its status and
/// whether it timed out.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    streams: &mut [Stream],
) -> (std::io::Result<ExitStatus>, bool) {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Ok(status), false),
            Ok(None) => {}
            Err(e) => return (Err(e), false),
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            return (child.wait(), true);
        }
        pump(streams, (deadline - now).min(Duration::from_millis(10)));
    }
}

/// This process's children, from `/proc/self/task/*/children`.
fn children() -> Vec<Pid> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter_map(Pid::from_raw),
            );
        }
    }
    out
}

/// Kills and reaps every process left under the launcher (orphans reparent to it: it is a
/// child subreaper), until none is left.
fn kill_descendants() {
    for _ in 0..1000 {
        let kids = children();
        for pid in &kids {
            let _ = rustix::process::kill_process(*pid, Signal::KILL);
        }
        while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
        if kids.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The inner stage, PID 1 of the sandbox: a nested Landlock domain (so nothing inside can
/// signal or trace the launcher), no capabilities, the resource limits, then the command.
fn inner_main(inner: &InnerSpec, program: &OsString, args: &[OsString]) -> ExitCode {
    if inner.landlock {
        // Scopes need ABI 6; on older kernels this layer adds nothing and is skipped.
        let _ = Ruleset::default()
            .scope(Scope::from_all(LANDLOCK_ABI))
            .and_then(|r| r.create())
            .and_then(|r| r.restrict_self());
    }
    drop_capabilities();
    if let Err(e) = set_limits(inner) {
        eprintln!("gyrus sandbox: {e}");
        return ExitCode::from(125);
    }
    let mut command = Command::new(program);
    if let Some(arg0) = &inner.arg0 {
        command.arg0(arg0);
    }
    let err = command.args(args).exec();
    eprintln!(
        "gyrus sandbox: cannot run {}: {err}",
        Path::new(program).display()
    );
    ExitCode::from(127)
}

/// Empties the bounding, ambient, permitted, effective and inheritable sets, so the
/// command (root in its namespace when the daemon is root) gets no capability at exec.
/// Without capabilities to drop (a non-root daemon), every step fails harmlessly.
fn drop_capabilities() {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    for cap in CapabilitySet::all().iter() {
        let _ = rustix::thread::remove_capability_from_bounding_set(cap);
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    let _ = rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    );
}

fn set_limits(inner: &InnerSpec) -> Result<(), String> {
    let l = &inner.limits;
    let mut limits = vec![
        (Resource::Cpu, l.cpu_secs, "cpu_secs"),
        (Resource::As, l.memory_bytes, "memory_bytes"),
        (Resource::Fsize, l.max_file_bytes, "max_file_bytes"),
        (Resource::Nofile, l.max_open_files, "max_open_files"),
        (Resource::Core, 0, "core"),
    ];
    if inner.nproc {
        // Counted per user in the sandbox's own user namespace, where the launcher is
        // one of them.
        limits.push((
            Resource::Nproc,
            l.max_processes.saturating_add(1),
            "max_processes",
        ));
    }
    for (resource, value, name) in limits {
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|e| format!("cannot set the {name} limit to {value}: {e}"))?;
    }
    Ok(())
}
