//! The sandbox's rules as data: what the seccomp filter denies, which system paths the
//! command may read, how the launcher's arguments look, and when to refuse. No I/O here,
//! except [`git_dirs`], which only lists directories.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::{InnerSpec, LAUNCHER_ARG, Layer, SandboxSpec};

/// The real uid a sandbox started by root runs under (its effective uid stays 0, so files
/// keep their owner). Linux never enforces `RLIMIT_NPROC` on a process whose real user is
/// root, not even inside a child user namespace (`copy_process` skips the check for
/// `INIT_USER`); an unused real uid makes the process limit bite. Nothing should own
/// processes or files under this uid.
pub const SANDBOX_REAL_UID: u32 = 0x7fff_fff0;

/// `PATH` inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The minimal environment: `PATH`, `HOME` and `TMPDIR` (the call's scratch directory) and
/// `LANG`.
pub fn base_env(temp_dir: &Path) -> BTreeMap<String, String> {
    let temp = temp_dir.to_string_lossy().into_owned();
    BTreeMap::from([
        ("PATH".to_string(), SANDBOX_PATH.to_string()),
        ("HOME".to_string(), temp.clone()),
        ("TMPDIR".to_string(), temp),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ])
}

/// How the command may use a system path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccess {
    /// Read files and directories, execute files.
    ReadExecute,
    /// Read files and directories.
    Read,
    /// A device the command may read, write and `ioctl` (`/dev/null`…).
    Device,
}

/// The system paths the command may use besides its granted roots: programs and libraries,
/// the `/etc` files the dynamic loader, NSS, TLS and locales need, `/proc`, and a few
/// harmless devices. Nothing under `/home`, `/root`, `/run` or `/var`. Paths missing on a
/// host are skipped.
pub const SYSTEM_PATHS: &[(&str, SystemAccess)] = &[
    ("/usr", SystemAccess::ReadExecute),
    ("/bin", SystemAccess::ReadExecute),
    ("/sbin", SystemAccess::ReadExecute),
    ("/lib", SystemAccess::ReadExecute),
    ("/lib32", SystemAccess::ReadExecute),
    ("/lib64", SystemAccess::ReadExecute),
    ("/libx32", SystemAccess::ReadExecute),
    ("/etc/ld.so.cache", SystemAccess::Read),
    ("/etc/ld.so.conf", SystemAccess::Read),
    ("/etc/ld.so.conf.d", SystemAccess::Read),
    ("/etc/ld.so.preload", SystemAccess::Read),
    ("/etc/nsswitch.conf", SystemAccess::Read),
    ("/etc/passwd", SystemAccess::Read),
    ("/etc/group", SystemAccess::Read),
    ("/etc/hosts", SystemAccess::Read),
    ("/etc/host.conf", SystemAccess::Read),
    ("/etc/resolv.conf", SystemAccess::Read),
    ("/etc/gai.conf", SystemAccess::Read),
    ("/etc/services", SystemAccess::Read),
    ("/etc/protocols", SystemAccess::Read),
    ("/etc/localtime", SystemAccess::Read),
    ("/etc/timezone", SystemAccess::Read),
    ("/etc/locale.alias", SystemAccess::Read),
    ("/etc/mime.types", SystemAccess::Read),
    ("/etc/ssl", SystemAccess::Read),
    ("/etc/ca-certificates", SystemAccess::Read),
    ("/etc/pki", SystemAccess::Read),
    ("/etc/alternatives", SystemAccess::Read),
    ("/etc/terminfo", SystemAccess::Read),
    ("/etc/os-release", SystemAccess::Read),
    ("/proc", SystemAccess::Read),
    ("/sys/devices/system/cpu", SystemAccess::Read),
    ("/dev/null", SystemAccess::Device),
    ("/dev/zero", SystemAccess::Device),
    ("/dev/full", SystemAccess::Device),
    ("/dev/random", SystemAccess::Device),
    ("/dev/urandom", SystemAccess::Device),
];

/// Syscalls the command may never make, by name (for messages and tests) and number.
/// Each fails with `EPERM`.
pub fn denied_syscalls() -> Vec<(&'static str, i64)> {
    let mut list: Vec<(&'static str, i64)> = vec![
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("kcmp", libc::SYS_kcmp),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("move_mount", libc::SYS_move_mount),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("clock_settime", libc::SYS_clock_settime),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("vhangup", libc::SYS_vhangup),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([("iopl", libc::SYS_iopl), ("ioperm", libc::SYS_ioperm)]);
    list
}

/// The x32 ABI (on x86_64) reaches the same kernel entry points with bit 30 set in the
/// syscall number, and a few through numbers of their own (512 and up).
#[cfg(target_arch = "x86_64")]
fn x32_aliases(name: &str, nr: i64) -> Vec<i64> {
    const X32: i64 = 0x4000_0000;
    let mut out = vec![X32 | nr];
    let special = match name {
        "ptrace" => Some(521),
        "kexec_load" => Some(528),
        "process_vm_readv" => Some(539),
        "process_vm_writev" => Some(540),
        _ => None,
    };
    out.extend(special.map(|n| X32 | n));
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_aliases(_name: &str, _nr: i64) -> Vec<i64> {
    Vec::new()
}

/// `clone(2)` flags that create namespaces: `clone` with any of them is denied like
/// `unshare`.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The address families a network grant allows (`AF_INET`, `AF_INET6`).
pub const NETWORK_FAMILIES: &[i32] = &[libc::AF_INET, libc::AF_INET6];

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| format!("seccomp rule: {e}"))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| format!("seccomp condition: {e}"))
}

/// The rules whose match means `EPERM`: every [`denied_syscalls`] entry (and its x32
/// aliases), `clone` with a namespace flag, and `socket` (every family without a network
/// grant; all but IPv4 and IPv6 with one). `socketpair` stays allowed: it reaches nothing.
pub fn eperm_rules(network: bool) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (name, nr) in denied_syscalls() {
        rules.insert(nr, Vec::new());
        for alias in x32_aliases(name, nr) {
            rules.insert(alias, Vec::new());
        }
    }
    let mut clone_rules = Vec::new();
    for flag in CLONE_NAMESPACE_FLAGS {
        clone_rules.push(rule(vec![cond(0, SeccompCmpOp::MaskedEq(*flag), *flag)?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let socket_rules = if network {
        let mut conditions = Vec::new();
        for family in NETWORK_FAMILIES {
            conditions.push(cond(0, SeccompCmpOp::Ne, *family as u64)?);
        }
        vec![rule(conditions)?]
    } else {
        Vec::new()
    };
    for nr in std::iter::once(libc::SYS_socket).chain(x32_aliases("socket", libc::SYS_socket)) {
        rules.insert(nr, socket_rules.clone());
    }
    Ok(rules)
}

fn target_arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp does not support this architecture: {e}"))
}

/// The compiled filters, in the order to apply them: the `EPERM` table, then `clone3` →
/// `ENOSYS` (its flags live in memory a filter cannot read; `ENOSYS` makes libc fall back
/// to `clone`, which the first filter checks). A syscall of another architecture (i386
/// through `int 0x80`) kills the process.
pub fn seccomp_programs(network: bool) -> Result<Vec<BpfProgram>, String> {
    let arch = target_arch()?;
    let eperm = SeccompFilter::new(
        eperm_rules(network)?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let clone3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let mut out = Vec::new();
    for filter in [eperm, clone3] {
        out.push(BpfProgram::try_from(filter).map_err(|e| format!("seccomp compile: {e}"))?);
    }
    Ok(out)
}

/// The decision once the launcher knows which layers it could not apply: `Ok(None)` fully
/// sandboxed, `Ok(Some(reason))` running without them because the owner allowed it, and
/// `Err(message)` refusing.
pub fn decide(
    missing: &[(Layer, String)],
    allow_unsandboxed: bool,
) -> Result<Option<String>, String> {
    if missing.is_empty() {
        return Ok(None);
    }
    let reason = missing
        .iter()
        .map(|(layer, why)| format!("{}: {why}", layer.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    if allow_unsandboxed {
        Ok(Some(format!("ran without a full sandbox ({reason})")))
    } else {
        Err(format!(
            "refusing to run the command without a sandbox ({reason}); use a kernel with user namespaces, Landlock (ABI 3+, Linux 6.2+) and seccomp, or let the owner set tools.allow_unsandboxed = true"
        ))
    }
}

/// The launcher's command line, parsed.
#[derive(Debug, PartialEq)]
pub(super) enum Invocation {
    /// From the daemon: `SPEC-JSON -- PROGRAM ARGS…`.
    Outer {
        spec: Box<SandboxSpec>,
        program: OsString,
        args: Vec<OsString>,
    },
    /// From the outer launcher: `--inner INNER-JSON -- PROGRAM ARGS…`.
    Inner {
        inner: InnerSpec,
        program: OsString,
        args: Vec<OsString>,
    },
}

/// The marker before the inner stage's arguments.
pub(super) const INNER_ARG: &str = "--inner";

fn json_arg<T: serde::de::DeserializeOwned>(arg: &OsStr, what: &str) -> Result<T, String> {
    let text = arg
        .to_str()
        .ok_or_else(|| format!("the {what} is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| format!("the {what} is not valid: {e}"))
}

/// Parses what follows [`LAUNCHER_ARG`].
pub(super) fn parse_invocation(args: &[OsString]) -> Result<Invocation, String> {
    let usage = || {
        format!(
            "usage: gyrus {LAUNCHER_ARG} SPEC-JSON -- PROGRAM [ARGS…] (started by the daemon, not by hand)"
        )
    };
    let (inner, rest) = match args.first() {
        Some(a) if a == INNER_ARG => (true, &args[1..]),
        Some(_) => (false, args),
        None => return Err(usage()),
    };
    let [json, dashes, program, tail @ ..] = rest else {
        return Err(usage());
    };
    if dashes != "--" {
        return Err(usage());
    }
    let program = program.clone();
    let args = tail.to_vec();
    if inner {
        Ok(Invocation::Inner {
            inner: json_arg(json, "inner spec")?,
            program,
            args,
        })
    } else {
        Ok(Invocation::Outer {
            spec: Box::new(json_arg(json, "sandbox spec")?),
            program,
            args,
        })
    }
}

/// Problems with a spec that the launcher refuses before doing anything.
pub fn spec_problem(spec: &SandboxSpec) -> Option<String> {
    let all = spec
        .read_paths
        .iter()
        .chain(&spec.write_paths)
        .chain([&spec.temp_dir, &spec.cwd]);
    for p in all {
        if !p.is_absolute() {
            return Some(format!("sandbox path {} is not absolute", p.display()));
        }
    }
    if spec.timeout_ms == 0 {
        return Some("the timeout must be at least 1 ms".to_string());
    }
    if spec.limits.max_processes == 0 {
        return Some("max_processes must be at least 1".to_string());
    }
    None
}

/// `.git` directories (not files, not symlinks) in `root`, down to `max_depth` levels
/// below it, looking at no more than `max_entries` directory entries in all. Does not
/// descend into `.git`, nor into symlinks.
pub fn git_dirs(root: &Path, max_depth: usize, max_entries: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut queue = vec![(root.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > max_entries {
                return found;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name() == ".git" {
                found.push(path);
            } else if depth < max_depth {
                queue.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// Keeps the first `limit` bytes of a stream and counts the rest.
#[derive(Debug, Default)]
pub struct Capture {
    limit: usize,
    kept: Vec<u8>,
    truncated: bool,
}

impl Capture {
    /// An empty capture keeping up to `limit` bytes.
    pub fn new(limit: usize) -> Capture {
        Capture {
            limit,
            kept: Vec::new(),
            truncated: false,
        }
    }

    /// Adds a chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The text kept (invalid UTF-8 replaced) and whether anything was cut.
    pub fn finish(self) -> (String, bool) {
        (
            String::from_utf8_lossy(&self.kept).into_owned(),
            self.truncated,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_table_covers_the_dangerous_syscalls() {
        let names: Vec<&str> = denied_syscalls().iter().map(|(n, _)| *n).collect();
        for must in [
            "ptrace",
            "process_vm_readv",
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "keyctl",
            "kexec_load",
            "init_module",
            "finit_module",
            "userfaultfd",
            "io_uring_setup",
            "open_by_handle_at",
            "clock_settime",
        ] {
            assert!(names.contains(&must), "{must} is not denied");
        }
        let rules = eperm_rules(false).unwrap();
        assert!(
            rules[&libc::SYS_socket].is_empty(),
            "socket is denied outright"
        );
        assert_eq!(rules[&libc::SYS_clone].len(), CLONE_NAMESPACE_FLAGS.len());
        let with_net = eperm_rules(true).unwrap();
        assert_eq!(
            with_net[&libc::SYS_socket].len(),
            1,
            "only non-INET families"
        );
        #[cfg(target_arch = "x86_64")]
        assert!(rules.contains_key(&(0x4000_0000 | 521)), "x32 ptrace");
    }

    #[test]
    fn the_filters_compile() {
        for network in [false, true] {
            let programs = seccomp_programs(network).unwrap();
            assert_eq!(programs.len(), 2);
            assert!(programs.iter().all(|p| !p.is_empty()));
        }
    }

    #[test]
    fn a_missing_layer_is_refused_unless_the_owner_allows_it() {
        assert_eq!(decide(&[], false), Ok(None));
        let missing = [(Layer::Landlock, "not enabled at boot".to_string())];
        let refused = decide(&missing, false).unwrap_err();
        assert!(
            refused.contains("Landlock: not enabled at boot"),
            "{refused}"
        );
        assert!(refused.contains("tools.allow_unsandboxed"), "{refused}");
        let allowed = decide(&missing, true).unwrap().unwrap();
        assert!(allowed.contains("Landlock"), "{allowed}");
    }

    #[test]
    fn launcher_arguments_round_trip() {
        let spec = SandboxSpec::new(PathBuf::from("/tmp/x"));
        let json = serde_json::to_string(&spec).unwrap();
        let args: Vec<OsString> = [json.as_str(), "--", "/bin/sh", "-c", "true"]
            .iter()
            .map(OsString::from)
            .collect();
        let Invocation::Outer {
            spec: parsed,
            program,
            args,
        } = parse_invocation(&args).unwrap()
        else {
            panic!("not outer");
        };
        assert_eq!(*parsed, spec);
        assert_eq!(program, "/bin/sh");
        assert_eq!(args, vec![OsString::from("-c"), OsString::from("true")]);

        let inner = serde_json::to_string(&InnerSpec {
            limits: super::super::Limits::default(),
            arg0: Some("sh".into()),
            landlock: true,
            nproc: true,
        })
        .unwrap();
        let args: Vec<OsString> = [INNER_ARG, inner.as_str(), "--", "/bin/sh"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(matches!(
            parse_invocation(&args),
            Ok(Invocation::Inner { .. })
        ));
        assert!(parse_invocation(&[]).is_err());
        assert!(parse_invocation(&[OsString::from("{}"), OsString::from("/bin/sh")]).is_err());
        let bad = parse_invocation(&[
            OsString::from("{\"nope\":1}"),
            OsString::from("--"),
            OsString::from("/bin/sh"),
        ])
        .unwrap_err();
        assert!(bad.contains("sandbox spec is not valid"), "{bad}");
    }

    #[test]
    fn specs_with_relative_paths_are_refused() {
        let mut spec = SandboxSpec::new(PathBuf::from("/tmp/x"));
        assert_eq!(spec_problem(&spec), None);
        spec.write_paths.push(PathBuf::from("work"));
        assert!(spec_problem(&spec).unwrap().contains("not absolute"));
    }

    #[test]
    fn git_dirs_are_found_but_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/modules/sub/.git")).unwrap();
        std::fs::create_dir_all(root.join("a/b/.git")).unwrap();
        std::fs::create_dir_all(root.join("a/b/c/d/e/.git")).unwrap();
        std::fs::write(root.join("a/.git"), "gitdir: elsewhere").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        let found = git_dirs(root, 3, 10_000);
        assert_eq!(found, vec![root.join(".git"), root.join("a/b/.git")]);
    }

    #[test]
    fn capture_keeps_the_head_and_says_it_cut() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        c.push(b"defg");
        assert_eq!(c.finish(), ("abcde".to_string(), true));
        let mut c = Capture::new(5);
        c.push(b"abcde");
        assert_eq!(c.finish(), ("abcde".to_string(), false));
    }

    #[test]
    fn the_base_environment_is_minimal() {
        let env = base_env(Path::new("/t"));
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            vec!["HOME", "LANG", "PATH", "TMPDIR"]
        );
        assert_eq!(env["HOME"], "/t");
    }
}
