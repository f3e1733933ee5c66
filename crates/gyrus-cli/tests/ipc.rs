//! Semantic IPC end to end: durable agent mailboxes and the kernel event stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use rustix::process::Signal;
use support::{Daemon, ok};

fn spawn_passive(daemon: &Daemon, name: &str) {
    let file = daemon.home.join(format!("{name}.toml"));
    std::fs::write(&file, format!("name = \"{name}\"\n")).unwrap();
    ok(daemon.cli(&["agent", "spawn", "--manifest", file.to_str().unwrap()]));
}

fn recv_json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["recv"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&ok(daemon.cli(&all))).unwrap()
}

#[test]
fn a_message_to_a_stopped_agent_arrives_after_it_starts_and_acked_ones_never_return() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    spawn_passive(&daemon, "courier");
    ok(daemon.cli(&["agent", "stop", "courier"]));
    ok(daemon.cli(&[
        "send",
        "ops.disk.cleanup",
        "--payload",
        "{\"path\":\"/var/tmp\"}",
        "--to",
        "courier",
    ]));
    ok(daemon.cli(&[
        "send",
        "ops.cpu.report",
        "--payload",
        "1",
        "--to",
        "courier",
    ]));
    ok(daemon.cli(&["agent", "start", "courier"]));

    // A pattern selects: only the disk message.
    let got = recv_json(&daemon, &["ops.disk.*", "--as", "courier"]);
    let messages = got["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{got}");
    assert_eq!(messages[0]["envelope"]["intent"], "ops.disk.cleanup");
    assert_eq!(messages[0]["envelope"]["payload"]["path"], "/var/tmp");
    assert_eq!(messages[0]["envelope"]["from"], "owner");

    // Acknowledged by the CLI after printing: never delivered again.
    let again = recv_json(&daemon, &["ops.disk.*", "--as", "courier"]);
    assert!(again["messages"].as_array().unwrap().is_empty(), "{again}");
    // The other message is still there.
    let rest = recv_json(&daemon, &[">", "--as", "courier"]);
    assert_eq!(rest["messages"][0]["envelope"]["intent"], "ops.cpu.report");
}

#[test]
fn an_unacknowledged_message_is_delivered_again_after_its_lease() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    spawn_passive(&daemon, "flaky");
    ok(daemon.cli(&["send", "jobs.run", "--payload", "7", "--to", "flaky"]));
    let lease = |ms: u64| {
        daemon
            .unix(
                &format!("GET /api/v1/messages?as=flaky&lease_ms={ms} HTTP/1.1"),
                b"",
            )
            .json()
    };
    let first = lease(200);
    assert_eq!(first["messages"][0]["attempts"], 1, "{first}");
    // Leased: not handed out again meanwhile.
    assert!(lease(200)["messages"].as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let second = lease(60_000);
    assert_eq!(second["messages"][0]["attempts"], 2, "{second}");
    assert_eq!(
        second["messages"][0]["envelope"]["id"],
        first["messages"][0]["envelope"]["id"]
    );
}

#[test]
fn an_acknowledged_send_survives_kill_9_of_the_daemon() {
    let home = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(home.path(), None, &[]);
    spawn_passive(&first, "vault");
    for i in 0..20 {
        ok(first.cli(&[
            "send",
            "records.keep",
            "--payload",
            &i.to_string(),
            "--to",
            "vault",
        ]));
    }
    first.signal(Signal::KILL);
    first.wait();

    let second = Daemon::start(home.path(), None, &[]);
    let got = recv_json(&second, &["records.>", "--as", "vault", "--max", "100"]);
    let payloads: Vec<i64> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["envelope"]["payload"].as_i64().unwrap())
        .collect();
    assert_eq!(payloads, (0..20).collect::<Vec<_>>(), "in order, none lost");
}

#[test]
fn a_receiver_waiting_on_a_mailbox_wakes_on_send() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    spawn_passive(&daemon, "sleeper");
    let waiter = {
        let home = daemon.home.clone();
        std::thread::spawn(move || {
            support::gyrus(&home)
                .args(["recv", ">", "--as", "sleeper", "--wait", "30s", "--json"])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    ok(daemon.cli(&["send", "wake.up", "--to", "sleeper"]));
    let out = waiter.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(v["messages"][0]["envelope"]["intent"], "wake.up");
}

#[test]
fn the_event_stream_carries_kernel_events_filtered_by_pattern() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let mut stream =
        std::os::unix::net::UnixStream::connect(home.path().join("runtime/gyrus.sock")).unwrap();
    stream
        .write_all(b"GET /api/v1/events?pattern=ipc.%3E HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Read the response head before sending, so the subscription exists.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    spawn_passive(&daemon, "noisy"); // a kernel.* event: filtered out
    ok(daemon.cli(&["send", "hello.world", "--payload", "42"]));
    while !seen.contains("hello.world") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("event: ipc.message"), "{seen}");
    assert!(!seen.contains("kernel.agent"), "pattern filters: {seen}");
}

#[test]
fn agents_may_read_only_their_own_mailbox() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let file = home.path().join("a.toml");
    std::fs::write(&file, "name = \"alice\"\n").unwrap();
    let spawned: serde_json::Value = serde_json::from_str(&ok(daemon.cli(&[
        "agent",
        "spawn",
        "--manifest",
        file.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    let token = spawned["token"].as_str().unwrap();
    spawn_passive(&daemon, "bob");
    ok(daemon.cli(&["send", "secret.note", "--to", "bob"]));
    let r = daemon.get("/api/v1/messages?as=bob", Some(token));
    assert_eq!((r.status, r.code()), (403, "forbidden".into()));
    let own = daemon.get("/api/v1/messages", Some(token));
    assert_eq!(own.status, 200);
    // A device token (not an agent, not the owner) has no mailbox.
    let device = daemon.create_token("laptop");
    assert_eq!(
        daemon.get("/api/v1/messages?as=bob", Some(&device)).status,
        403
    );
    // Agents may not read the audit trail.
    assert_eq!(
        daemon.get("/api/v1/audit", Some(token)).code(),
        "devices_only"
    );
}

#[test]
fn request_reply_through_an_agents_mailbox() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let file = home.path().join("r.toml");
    std::fs::write(&file, "name = \"responder\"\n").unwrap();
    let spawned: serde_json::Value = serde_json::from_str(&ok(daemon.cli(&[
        "agent",
        "spawn",
        "--manifest",
        file.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    let token = spawned["token"].as_str().unwrap().to_string();

    // The owner asks and waits; the agent answers from its mailbox.
    let requester = {
        let home = daemon.home.clone();
        std::thread::spawn(move || {
            support::gyrus(&home)
                .args([
                    "send",
                    "math.double",
                    "--payload",
                    "21",
                    "--to",
                    "responder",
                    "--reply-within",
                    "20s",
                    "--json",
                ])
                .output()
                .unwrap()
        })
    };
    let got = daemon
        .get("/api/v1/messages?wait_ms=20000", Some(&token))
        .json();
    let request = &got["messages"][0]["envelope"];
    assert_eq!(request["intent"], "math.double", "{got}");
    let answer = request["payload"].as_i64().unwrap() * 2;
    let body = serde_json::json!({"intent": "math.double", "payload": answer, "correlation": request["id"]}).to_string();
    let sent = daemon.tcp(
        &format!(
            "POST /api/v1/messages HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    assert_eq!(sent.status, 202, "{}", String::from_utf8_lossy(&sent.body));
    let out = requester.join().unwrap();
    let reply: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(reply["reply"]["payload"], 42);
    assert_eq!(reply["reply"]["correlation"], request["id"]);
    assert_eq!(
        reply["reply"]["from"],
        format!("agent:{}", spawned["agent"]["id"].as_str().unwrap())
    );

    // Nobody answers: a clear timeout, exit 1.
    let out = daemon.cli(&[
        "send",
        "math.double",
        "--to",
        "responder",
        "--reply-within",
        "300ms",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("math.double"));
}

#[test]
fn one_member_of_a_handler_group_gets_each_message() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let member = |group: &'static str| {
        let home = daemon.home.clone();
        std::thread::spawn(move || {
            support::gyrus(&home)
                .args(["recv", "jobs.>", "--group", group, "--wait", "3s", "--json"])
                .output()
                .unwrap()
        })
    };
    let members = [member("workers"), member("workers")];
    // A plain watcher sees every message.
    let watcher = {
        let home = daemon.home.clone();
        std::thread::spawn(move || {
            support::gyrus(&home)
                .args(["recv", "jobs.>", "--wait", "3s", "--json"])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let sent: serde_json::Value = serde_json::from_str(&ok(daemon.cli(&[
        "send",
        "jobs.build",
        "--payload",
        "1",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        sent["subscribers"], 2,
        "one group member and the watcher: {sent}"
    );
    let got: usize = members
        .into_iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(&ok(m.join().unwrap())).unwrap();
            v["messages"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(got, 1, "exactly one member of the group");
    let v: serde_json::Value = serde_json::from_str(&ok(watcher.join().unwrap())).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
}
