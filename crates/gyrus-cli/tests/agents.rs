//! Agents end to end: spawned from manifests through the CLI, supervised by the real daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::Daemon;

fn spawn(daemon: &Daemon, manifest: &str) -> serde_json::Value {
    let file = daemon.home.join(format!("manifest-{}.toml", rand_suffix()));
    std::fs::write(&file, manifest).unwrap();
    let out = daemon.cli(&[
        "agent",
        "spawn",
        "--manifest",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn show(daemon: &Daemon, name: &str) -> serde_json::Value {
    let out = daemon.cli(&["agent", "show", name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["agent"].clone()
}

/// Polls until the agent reaches `state` (hang guard 30 s, not a timing assertion).
fn wait_state(daemon: &Daemon, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agent = show(daemon, name);
        if agent["state"] == state {
            return agent;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {agent}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_log(daemon: &Daemon, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = daemon.cli(&["agent", "logs", name]);
        let log = String::from_utf8_lossy(&out.stdout).to_string();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s log never showed {needle:?}: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const WORKER: &str = r#"
name = "worker"
role = "test"
capabilities = ["sys.health"]
[command]
program = "python3"
args = ["-c", """
import os, time, urllib.request, urllib.error
print('agent=' + os.environ['GYRUS_AGENT'], flush=True)
request = urllib.request.Request(os.environ['GYRUS_URL'] + '/api/v1/status',
    headers={'Authorization': 'Bearer ' + os.environ['GYRUS_TOKEN']})
try:
    status = urllib.request.urlopen(request).status
except urllib.error.HTTPError as e:
    status = e.code
print('status=%d' % status, flush=True)
time.sleep(600)
"""]
"#;

#[test]
fn a_supervised_agent_runs_with_its_own_token_and_stops() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let spawned = spawn(&daemon, WORKER);
    assert!(
        spawned["token"].is_null(),
        "a supervised agent's token is never shown"
    );
    let running = wait_state(&daemon, "worker", "running");
    let log = wait_log(&daemon, "worker", "status=");
    assert!(log.contains("agent=worker"), "{log}");
    assert!(
        log.contains("status=200"),
        "the agent's token authenticates: {log}"
    );

    let out = daemon.cli(&["agent", "stop", "worker", "--json"]);
    assert!(out.status.success());
    let stopped = show(&daemon, "worker");
    assert_eq!(stopped["state"], "stopped");
    let pid = rustix::process::Pid::from_raw(running["pid"].as_i64().unwrap() as i32).unwrap();
    assert!(
        rustix::process::test_kill_process(pid).is_err(),
        "its process is gone"
    );
}

#[test]
fn a_removed_name_can_be_reused_and_inherits_nothing() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let first = spawn(&daemon, "name = \"scout\"\n");
    let token = first["token"].as_str().unwrap().to_string();
    assert_eq!(daemon.get("/api/v1/agents", Some(&token)).status, 200);

    let again = daemon.cli(&["agent", "spawn", "--manifest", "/dev/null"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an empty manifest has no name"
    );

    let dup = home.path().join("dup.toml");
    std::fs::write(&dup, "name = \"scout\"\n").unwrap();
    let out = daemon.cli(&["agent", "spawn", "--manifest", dup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    assert!(daemon.cli(&["agent", "remove", "scout"]).status.success());
    assert_eq!(
        daemon.get("/api/v1/agents", Some(&token)).status,
        401,
        "a removed agent's token is dead"
    );
    let second = spawn(&daemon, "name = \"scout\"\n");
    assert_ne!(
        first["agent"]["id"], second["agent"]["id"],
        "ids are never reused"
    );
    assert_eq!(
        daemon.get("/api/v1/agents", Some(&token)).status,
        401,
        "the old token stays dead"
    );
}

#[test]
fn a_crashing_agent_hits_its_start_limit() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    spawn(
        &daemon,
        r#"name = "crashy"
[command]
program = "sh"
args = ["-c", "echo boom; exit 7"]
[restart]
initial_backoff_ms = 10
max_backoff_ms = 20
start_limit_burst = 3
start_limit_interval_secs = 60
"#,
    );
    let failed = wait_state(&daemon, "crashy", "failed");
    assert_eq!(failed["starts"], 3);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("start limit hit"),
        "{failed}"
    );
    let out = daemon.cli(&["agent", "list"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("crashy") && table.contains("failed"),
        "{table}"
    );
}

#[test]
fn agents_come_back_after_the_daemon_is_killed() {
    let home = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(home.path(), None, &[]);
    spawn(&first, WORKER);
    let before = wait_state(&first, "worker", "running");
    let old_pid = rustix::process::Pid::from_raw(before["pid"].as_i64().unwrap() as i32).unwrap();
    first.signal(Signal::KILL);
    first.wait();

    let second = Daemon::start(home.path(), None, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let agent = show(&second, "worker");
        if agent["state"] == "running" && agent["pid"] != before["pid"] {
            break agent;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not come back: {agent}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after["id"], before["id"]);
    // The orphan of the killed daemon was reaped (a zombie counts as gone).
    let gone = || {
        rustix::process::test_kill_process(old_pid).is_err()
            || std::fs::read_to_string(format!("/proc/{}/stat", old_pid.as_raw_nonzero()))
                .map_or(true, |s| {
                    s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
                })
    };
    assert!(gone(), "the orphaned agent process still runs");
    second.signal(Signal::TERM);
}
