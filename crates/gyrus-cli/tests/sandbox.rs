//! The sandbox, end to end: the real `gyrus` binary as launcher, real shell scripts trying
//! to escape. Each escape test also shows the same operation working inside the granted
//! root, so it cannot pass because nothing works at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gyrus_tools::ToolError;
use gyrus_tools::sandbox::{self, Layer, SandboxOutcome, SandboxSpec, policy};

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gyrus"))
}

/// A temp tree: `home/.ssh/id_rsa` (a fake key), `secret` (outside every root), `work/`
/// (the write root, with `notes.txt`), `tmp/` (the call's scratch directory).
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    secret: PathBuf,
    key: PathBuf,
    tmp: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let work = root.join("work");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(root.join("home/.ssh")).unwrap();
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let key = root.join("home/.ssh/id_rsa");
        std::fs::write(&key, "-----BEGIN FAKE KEY-----\n").unwrap();
        let secret = root.join("secret");
        std::fs::write(&secret, "top secret\n").unwrap();
        std::fs::write(work.join("notes.txt"), "inside\n").unwrap();
        Tree {
            _dir: dir,
            root,
            work,
            secret,
            key,
            tmp,
        }
    }

    fn spec(&self) -> SandboxSpec {
        let mut spec = SandboxSpec::new(self.tmp.clone());
        spec.write_paths = vec![self.work.clone()];
        spec.cwd = self.work.clone();
        spec.timeout_ms = 20_000;
        spec
    }
}

fn run(spec: &SandboxSpec, program: &str, args: &[&str]) -> SandboxOutcome {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = sandbox::run(&launcher(), spec, Path::new(program), &args, None).unwrap();
    assert!(out.sandboxed, "not sandboxed: {out:?}");
    out
}

fn sh(spec: &SandboxSpec, script: &str) -> SandboxOutcome {
    run(spec, "/bin/sh", &["-c", script])
}

fn py(spec: &SandboxSpec, code: &str) -> SandboxOutcome {
    run(spec, "/usr/bin/python3", &["-c", code])
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_file_outside_the_roots_cannot_be_read() {
    let t = Tree::new();
    let out = sh(
        &t.spec(),
        &format!(
            "cat {} && echo KEY-READ; cat {}/notes.txt && echo NOTES-READ",
            p(&t.key),
            p(&t.work)
        ),
    );
    assert!(out.stdout.contains("inside\nNOTES-READ"), "{out:?}");
    assert!(!out.stdout.contains("KEY-READ"), "{out:?}");
    assert!(!out.stdout.contains("FAKE KEY"), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    // Nor listed, nor written.
    let out = sh(
        &t.spec(),
        &format!(
            "ls {0}/home/.ssh && echo LISTED; echo x > {0}/home/planted && echo PLANTED; ls {1} && echo WORK-LISTED",
            p(&t.root),
            p(&t.work)
        ),
    );
    assert!(out.stdout.contains("WORK-LISTED"), "{out:?}");
    assert!(!out.stdout.contains("LISTED\n") || out.stdout.matches("LISTED").count() == 1);
    assert!(!out.stdout.contains("PLANTED"), "{out:?}");
    assert!(!t.root.join("home/planted").exists());
}

#[test]
fn dot_dot_does_not_climb_out_of_the_root() {
    let t = Tree::new();
    let out = sh(
        &t.spec(),
        "cat ../secret && echo ESCAPED; cat sub/../notes.txt && echo INSIDE; cd .. && cat secret && echo ESCAPED2",
    );
    assert!(out.stdout.contains("inside\nINSIDE"), "{out:?}");
    assert!(!out.stdout.contains("ESCAPED"), "{out:?}");
    assert!(!out.stdout.contains("top secret"), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
}

#[test]
fn a_symlink_in_the_root_does_not_reach_outside() {
    let t = Tree::new();
    std::os::unix::fs::symlink(&t.secret, t.work.join("link")).unwrap();
    std::os::unix::fs::symlink(t.work.join("notes.txt"), t.work.join("inlink")).unwrap();
    let out = sh(
        &t.spec(),
        &format!(
            "cat link && echo VIA-LINK; cat inlink && echo VIA-INLINK; ln -s {} made && echo MADE; cat made && echo VIA-MADE",
            p(&t.secret)
        ),
    );
    assert!(out.stdout.contains("inside\nVIA-INLINK"), "{out:?}");
    // Making a symlink is allowed; following it out is not.
    assert!(out.stdout.contains("MADE"), "{out:?}");
    assert!(!out.stdout.contains("VIA-LINK"), "{out:?}");
    assert!(!out.stdout.contains("VIA-MADE"), "{out:?}");
    assert!(!out.stdout.contains("top secret"), "{out:?}");
}

#[test]
fn a_hardlink_to_an_outside_file_cannot_be_made() {
    let t = Tree::new();
    let out = sh(
        &t.spec(),
        &format!(
            "ln {} hard && echo LINKED-OUT; ln notes.txt hard2 && echo LINKED-IN",
            p(&t.secret)
        ),
    );
    assert!(out.stdout.contains("LINKED-IN"), "{out:?}");
    assert!(!out.stdout.contains("LINKED-OUT"), "{out:?}");
    // Landlock refuses to give a file more rights through a new link (EXDEV).
    assert!(
        out.stderr.contains("Invalid cross-device link")
            || out.stderr.contains("Permission denied"),
        "{out:?}"
    );
    assert!(!t.work.join("hard").exists());
    assert!(t.work.join("hard2").exists());
}

#[test]
fn git_hooks_stay_read_only_in_a_granted_work_tree() {
    let t = Tree::new();
    let ok = Command::new("git")
        .args(["init", "-q"])
        .arg(&t.work)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = sh(
        &t.spec(),
        "echo 'echo pwned' > .git/hooks/pre-commit && echo HOOKED; echo x >> .git/config && echo CONFIGURED; echo hello > README && echo WROTE",
    );
    assert!(out.stdout.contains("WROTE"), "{out:?}");
    assert!(!out.stdout.contains("HOOKED"), "{out:?}");
    assert!(!out.stdout.contains("CONFIGURED"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!t.work.join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read_to_string(t.work.join("README")).unwrap(),
        "hello\n"
    );
}

/// Without a network grant no socket can be made at all (IPv4, IPv6, Unix); with one,
/// IPv4 reaches the host's loopback, Unix sockets stay denied.
#[test]
fn sockets_need_the_network_grant() {
    let t = Tree::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let unix_path = t.root.join("owner.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
    let code = format!(
        r#"
import socket
def tcp():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=5); s.sendall(b"hi"); s.close(); return "ok"
def unix():
    s = socket.socket(socket.AF_UNIX); s.connect("{unix}"); return "ok"
for name, f in (("tcp", tcp), ("unix", unix)):
    try:
        print(name, f())
    except OSError as e:
        print(name, "errno", e.errno)
"#,
        unix = p(&unix_path)
    );
    let mut spec = t.spec();
    spec.read_paths.push(t.root.clone());
    let out = py(&spec, &code);
    assert!(out.stdout.contains("tcp errno 1\n"), "{out:?}");
    assert!(out.stdout.contains("unix errno 1\n"), "{out:?}");
    assert!(out.sandbox.net_ns);

    // "Network grant" means the host's network: no namespace, IPv4/IPv6 sockets allowed.
    spec.network = true;
    listener.set_nonblocking(true).unwrap();
    let out = py(&spec, &code);
    assert!(out.stdout.contains("tcp ok\n"), "{out:?}");
    assert!(out.stdout.contains("unix errno 1\n"), "{out:?}");
    assert!(!out.sandbox.net_ns);
    assert!(
        listener.accept().is_ok(),
        "the loopback listener saw no connection"
    );
}

/// Processes whose real uid is the sandbox's, still alive on the host.
fn sandbox_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn forks_stop_at_max_processes() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.limits.max_processes = 16;
    let out = py(
        &spec,
        r#"
import os, time
n = 0
for i in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        print("fork failed errno", e.errno)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
print("forked", n)
"#,
    );
    let forked: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    // The command itself is one of the 16: it may start 15 more, and did.
    assert_eq!(forked, 15, "{out:?}");
    assert!(out.stdout.contains("fork failed errno 11"), "{out:?}");
}

#[test]
fn a_fork_bomb_is_contained_and_cleaned_up() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.limits.max_processes = 32;
    spec.timeout_ms = 3_000;
    let started = Instant::now();
    let out = sh(&spec, "b() { sleep 61.4242 | b & b; }; b");
    assert!(started.elapsed() < Duration::from_secs(15), "{out:?}");
    assert!(out.timed_out || out.exit_code.is_some(), "{out:?}");
    // Nothing of it is left, and the host can still start processes.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sandbox_processes("sleep 61.4242"), Vec::<String>::new());
    assert!(Command::new("/bin/true").status().unwrap().success());
}

#[test]
fn descendants_die_with_the_command() {
    let t = Tree::new();
    let out = sh(
        &t.spec(),
        "setsid sleep 62.4242 & (sleep 62.4243 &) ; nohup sleep 62.4244 >/dev/null 2>&1 & echo started",
    );
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sandbox_processes("sleep 62.424"), Vec::<String>::new());
}

#[test]
fn the_timeout_kills_the_command() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.timeout_ms = 500;
    let out = sh(&spec, "echo before; sleep 63.4242; echo after");
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.signal, Some(9), "{out:?}");
    assert_eq!(out.stdout, "before\n");
    assert!(out.duration_ms < 5_000, "{out:?}");
    assert_eq!(sandbox_processes("sleep 63.4242"), Vec::<String>::new());
}

#[test]
fn a_memory_hog_fails_under_its_limit() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.limits.memory_bytes = 256 << 20;
    let out = py(
        &spec,
        "small = bytearray(16 << 20); print('small ok', flush=True); big = bytearray(2 << 30); print('big ok')",
    );
    assert!(out.stdout.contains("small ok"), "{out:?}");
    assert!(!out.stdout.contains("big ok"), "{out:?}");
    assert!(out.stderr.contains("MemoryError"), "{out:?}");
    assert_eq!(out.exit_code, Some(1), "{out:?}");
}

#[test]
fn a_grandchild_inherits_the_sandbox() {
    let t = Tree::new();
    let out = sh(
        &t.spec(),
        &format!(
            "sh -c 'sh -c \"cat {} && echo GRANDCHILD-READ-SECRET; cat notes.txt && echo GRANDCHILD-READ-NOTES\"'",
            p(&t.secret)
        ),
    );
    assert!(out.stdout.contains("GRANDCHILD-READ-NOTES"), "{out:?}");
    assert!(!out.stdout.contains("GRANDCHILD-READ-SECRET"), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
}

#[test]
fn processes_outside_cannot_be_signalled_or_traced() {
    let t = Tree::new();
    let me = std::process::id();
    let out = sh(
        &t.spec(),
        &format!(
            "kill -0 {me} && echo SIGNALLED-OUTSIDE; cat /proc/{me}/environ >/dev/null && echo READ-ENVIRON; kill -0 $$ && echo SIGNALLED-SELF; cat /proc/self/environ >/dev/null && echo READ-OWN-ENVIRON"
        ),
    );
    assert!(out.stdout.contains("SIGNALLED-SELF"), "{out:?}");
    assert!(out.stdout.contains("READ-OWN-ENVIRON"), "{out:?}");
    assert!(!out.stdout.contains("SIGNALLED-OUTSIDE"), "{out:?}");
    assert!(!out.stdout.contains("READ-ENVIRON\n"), "{out:?}");
    // ptrace is denied outright by seccomp (EPERM), even on itself.
    let out = py(
        &t.spec(),
        &format!(
            r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("attach", libc.ptrace(16, {me}, None, None), ctypes.get_errno())
print("traceme", libc.ptrace(0, 0, None, None), ctypes.get_errno())
print("getpid", os.getpid())
"#
        ),
    );
    assert!(out.stdout.contains("attach -1 1\n"), "{out:?}");
    assert!(out.stdout.contains("traceme -1 1\n"), "{out:?}");
    assert!(
        out.stdout.contains("getpid 1\n"),
        "PID 1 of its own namespace: {out:?}"
    );
}

#[test]
fn the_environment_is_clean_and_home_is_private() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.env.insert("EXTRA".into(), "yes".into());
    let out = sh(
        &spec,
        "env | sort; echo x > $HOME/in-home && echo HOME-WRITABLE",
    );
    let mut names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.retain(|n| *n != "PWD" && *n != "OLDPWD");
    // A root daemon's sandbox runs with real uid != effective uid (see
    // `policy::SANDBOX_REAL_UID`), so glibc's secure-execution mode drops TMPDIR (and LD_*).
    let mut expected = vec!["EXTRA", "HOME", "LANG", "PATH", "TMPDIR"];
    if rustix::process::geteuid().is_root() {
        expected.retain(|n| *n != "TMPDIR");
    }
    assert_eq!(names, expected, "{out:?}");
    assert!(
        out.stdout.contains(&format!("HOME={}", p(&t.tmp))),
        "{out:?}"
    );
    assert!(out.stdout.contains("HOME-WRITABLE"), "{out:?}");
}

#[test]
fn output_is_bounded_and_stdin_is_fed() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.max_output_bytes = 1000;
    let out = sh(&spec, "head -c 100000 /dev/zero | tr '\\0' a; echo err >&2");
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr, "err\n");
    assert!(!out.stderr_truncated);
    let out = sandbox::run(
        &launcher(),
        &t.spec(),
        Path::new("/bin/cat"),
        &[],
        Some(b"fed through stdin"),
    )
    .unwrap();
    assert_eq!(out.stdout, "fed through stdin");
    assert_eq!(out.exit_code, Some(0));
}

#[test]
fn a_missing_layer_is_refused_unless_the_owner_allows_running_without_it() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.pretend_missing = vec![Layer::Landlock];
    let script = format!("cat {}", p(&t.secret));
    let args = vec!["-c".to_string(), script];
    let err = sandbox::run(&launcher(), &spec, Path::new("/bin/sh"), &args, None).unwrap_err();
    let ToolError::Unavailable(message) = err else {
        panic!("expected unavailable, got {err:?}");
    };
    assert!(message.contains("Landlock"), "{message}");
    assert!(message.contains("tools.allow_unsandboxed"), "{message}");

    spec.allow_unsandboxed = true;
    let out = sandbox::run(&launcher(), &spec, Path::new("/bin/sh"), &args, None).unwrap();
    assert!(!out.sandboxed, "{out:?}");
    assert!(
        out.unsandboxed_reason
            .as_deref()
            .unwrap_or("")
            .contains("Landlock")
    );
    assert_eq!(out.sandbox.landlock_abi, None);
    assert!(out.sandbox.seccomp && out.sandbox.user_ns, "{out:?}");
    // Really without Landlock: the same read now works.
    assert_eq!(out.stdout, "top secret\n", "{out:?}");
}

#[test]
fn the_sandbox_reports_its_layers() {
    let t = Tree::new();
    let out = sh(&t.spec(), "true");
    let abi = out.sandbox.landlock_abi.unwrap_or(0);
    assert!(abi >= 3, "{out:?}");
    assert!(
        out.sandbox.seccomp && out.sandbox.user_ns && out.sandbox.net_ns,
        "{out:?}"
    );
    eprintln!(
        "landlock ABI in force: {abi}; seccomp denies {} syscalls",
        policy::denied_syscalls().len()
    );
}

#[test]
fn a_bad_working_directory_fails_clearly() {
    let t = Tree::new();
    let mut spec = t.spec();
    spec.cwd = t.root.join("does-not-exist");
    let err = sandbox::run(&launcher(), &spec, Path::new("/bin/true"), &[], None).unwrap_err();
    assert!(
        matches!(err, ToolError::Failed(ref m) if m.contains("does-not-exist")),
        "{err:?}"
    );
}
