//! The consent broker and the audit trail end to end: decisions, grants, bundled approvals,
//! `audit why`, and `audit verify` against a tampered database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use rustix::process::Signal;
use serde_json::{Value, json};
use support::{Daemon, gyrus, ok};

/// Spawns an agent without a command and returns its token.
fn agent(daemon: &Daemon, manifest: &str) -> String {
    let file = daemon.home.join(format!("m{}.toml", manifest.len()));
    std::fs::write(&file, manifest).unwrap();
    let v: Value = serde_json::from_str(&ok(daemon.cli(&[
        "agent",
        "spawn",
        "--manifest",
        file.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn decide(daemon: &Daemon, token: &str, body: Value) -> Value {
    let body = body.to_string();
    let r = daemon.tcp(
        &format!(
            "POST /api/v1/decisions HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn audit_len(daemon: &Daemon) -> u64 {
    let v: Value =
        serde_json::from_str(&ok(daemon.cli(&["audit", "tail", "--limit", "1", "--json"])))
            .unwrap();
    v["entries"][0]["seq"].as_u64().unwrap_or(0)
}

fn read(resource: &str) -> Value {
    json!({"action": "fs.read", "resource": resource, "intent": "summarise the notes", "plan_id": "plan-1"})
}

#[test]
fn every_decision_allowed_or_denied_leaves_exactly_one_entry() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = agent(&daemon, "name = \"reader\"\n");

    let before = audit_len(&daemon);
    let denied = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_eq!(denied["decision"]["outcome"], "deny", "no grant: {denied}");
    assert_eq!(audit_len(&daemon), before + 1);
    assert_eq!(denied["seq"].as_u64(), Some(before + 1));

    ok(daemon.cli(&[
        "grant",
        "add",
        "--agent",
        "reader",
        "--action",
        "fs.read",
        "--resource",
        "path:/srv/notes/**",
        "--uses",
        "2",
    ]));
    let after_grant = audit_len(&daemon);
    assert_eq!(
        after_grant,
        before + 3,
        "the grant itself: one decision and one outcome"
    );

    let allowed = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_eq!(allowed["decision"]["outcome"], "allow", "{allowed}");
    assert!(
        allowed["decision"]["grant_id"]
            .as_str()
            .unwrap()
            .starts_with("gr_")
    );
    assert_eq!(audit_len(&daemon), after_grant + 1);

    // Outside the granted resources: denied, also exactly one entry.
    let outside = decide(&daemon, &token, read("path:/etc/shadow"));
    assert_eq!(outside["decision"]["outcome"], "deny");
    // Untrusted intent (no plan) cannot use a grant... this one has no intent, so it can:
    // grants without an intent serve any caller intent.
    let second = decide(&daemon, &token, read("path:/srv/notes/b.md"));
    assert_eq!(second["decision"]["outcome"], "allow");
    let exhausted = decide(&daemon, &token, read("path:/srv/notes/c.md"));
    assert_eq!(
        exhausted["decision"]["outcome"], "deny",
        "two uses only: {exhausted}"
    );
    assert_eq!(audit_len(&daemon), after_grant + 4);

    // The owner revokes; the next call is denied.
    let grants: Value =
        serde_json::from_str(&ok(daemon.cli(&["grant", "list", "--json"]))).unwrap();
    let id = grants["grants"][0]["id"].as_str().unwrap();
    ok(daemon.cli(&["grant", "revoke", id]));
    ok(daemon.cli(&[
        "grant",
        "add",
        "--agent",
        "reader",
        "--action",
        "fs.read",
        "--resource",
        "path:/srv/other/**",
    ]));
    let revoked = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_eq!(revoked["decision"]["outcome"], "deny");

    // An agent cannot grant itself anything.
    let r = daemon.tcp(
        &format!("GET /api/v1/grants HTTP/1.1\r\nAuthorization: Bearer {token}"),
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_plan_asks_the_owner_once_and_approval_allows_exactly_its_calls() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = agent(
        &daemon,
        "name = \"planner\"\ncapabilities = [\"fs.read\"]\n",
    );

    let mut consent_ids = Vec::new();
    for file in ["a", "b", "c"] {
        let d = decide(&daemon, &token, read(&format!("path:/srv/notes/{file}.md")));
        assert_eq!(d["decision"]["outcome"], "ask", "{d}");
        consent_ids.push(d["consent"]["id"].as_str().unwrap().to_string());
    }
    consent_ids.dedup();
    assert_eq!(consent_ids.len(), 1, "one prompt per plan");
    // An action the manifest did not request is denied, not asked.
    let write = decide(
        &daemon,
        &token,
        json!({"action": "fs.write", "resource": "path:/srv/notes/a.md", "intent": "summarise the notes", "plan_id": "plan-1"}),
    );
    assert_eq!(write["decision"]["outcome"], "deny");
    // Without a plan the intent is the agent's own claim: untrusted, so the owner is not asked.
    let unplanned = decide(
        &daemon,
        &token,
        json!({"action": "fs.read", "resource": "path:/x/y", "intent": "trust me"}),
    );
    assert_eq!(unplanned["decision"]["outcome"], "deny", "{unplanned}");

    let pending: Value = serde_json::from_str(&ok(daemon.cli(&["approvals", "--json"]))).unwrap();
    let requests = pending["approvals"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{pending}");
    assert_eq!(requests[0]["calls"].as_array().unwrap().len(), 3);
    let text = ok(daemon.cli(&["approvals"]));
    assert!(text.contains("/srv/notes/b.md"), "{text}");

    let approved: Value = serde_json::from_str(&ok(daemon.cli(&[
        "approve",
        &consent_ids[0],
        "--uses",
        "1",
        "--json",
    ])))
    .unwrap();
    assert_eq!(approved["grants"].as_array().unwrap().len(), 3);
    for file in ["a", "b", "c"] {
        let d = decide(&daemon, &token, read(&format!("path:/srv/notes/{file}.md")));
        assert_eq!(d["decision"]["outcome"], "allow", "{d}");
    }
    // Exactly those calls: another file asks again (a new request), a used one is spent.
    let other = decide(&daemon, &token, read("path:/srv/notes/d.md"));
    assert_eq!(other["decision"]["outcome"], "ask");
    let again = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_ne!(again["decision"]["outcome"], "allow", "one use each");

    // Denying the new request; answering it twice is a conflict.
    let new_id = other["consent"]["id"].as_str().unwrap();
    ok(daemon.cli(&["deny", new_id]));
    let twice = daemon.cli(&["deny", new_id]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("not pending"));
}

#[test]
fn audit_why_tells_the_chain_of_a_request() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    agent(&daemon, "name = \"explained\"\n");
    let tail: Value = serde_json::from_str(&ok(daemon.cli(&["audit", "tail", "--json"]))).unwrap();
    let decision = tail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.spawn" && e["kind"] == "decision")
        .expect("spawning is audited")
        .clone();
    let seq = decision["seq"].to_string();
    let why = ok(daemon.cli(&["audit", "why", &seq]));
    assert!(why.contains("agent.spawn on agent:explained"), "{why}");
    assert!(
        why.contains("intent    \"spawn agent explained\" (from owner)"),
        "{why}"
    );
    assert!(why.contains("policies core.owner"), "{why}");
    assert!(why.contains("decision  allow"), "{why}");
    assert!(why.contains("outcome   ok"), "{why}");
    let show: Value =
        serde_json::from_str(&ok(daemon.cli(&["audit", "show", &seq, "--json"]))).unwrap();
    assert_eq!(show["entry"]["principal"], "owner");
    assert!(ok(daemon.cli(&["audit", "verify"])).contains("intact"));

    // Inclusion proof of that entry in the current tree verifies against the signed head.
    let token = daemon.create_token("auditor");
    let proof = daemon
        .get(
            &format!("/api/v1/audit/proof/inclusion?seq={seq}"),
            Some(&token),
        )
        .json();
    assert!(proof.is_object(), "{proof}");
    let head = daemon.get("/api/v1/audit/tree-head", Some(&token)).json();
    assert!(head["signature"].as_str().unwrap().len() == 128, "{head}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Opens a copy's audit database as an attacker would: with the append-only triggers dropped.
fn tamper(home: &Path, sql: &str) {
    let db = rusqlite::Connection::open(home.join("memory/audit.db")).unwrap();
    let triggers: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in triggers {
        db.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
    }
    db.execute_batch(sql).unwrap();
}

fn verify(home: &Path) -> (Option<i32>, String) {
    let out = gyrus(home).args(["audit", "verify"]).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn tampering_with_the_audit_database_is_caught_and_located() {
    let home = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(home.path(), None, &[]);
    for i in 0..4 {
        agent(&daemon, &format!("name = \"a{i}\"\n"));
    }
    daemon.signal(Signal::TERM);
    daemon.wait();
    let (code, text) = verify(home.path());
    assert_eq!(code, Some(0), "{text}");
    let entries: u64 = {
        let db = rusqlite::Connection::open(home.path().join("memory/audit.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(entries, 8, "four spawns: a decision and an outcome each");

    let cases = [
        (
            "edit",
            "UPDATE entries SET reason = 'nothing to see' WHERE seq = 3",
            "entry 3",
        ),
        ("delete", "DELETE FROM entries WHERE seq = 3", "entry 3"),
        (
            "reorder",
            "UPDATE entries SET seq = -1 WHERE seq = 3; UPDATE entries SET seq = 3 WHERE seq = 4; UPDATE entries SET seq = 4 WHERE seq = -1",
            "entry 3",
        ),
        ("truncate", "DELETE FROM entries WHERE seq > 6", "truncated"),
    ];
    for (name, sql, place) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(home.path(), copy.path());
        tamper(copy.path(), sql);
        let (code, text) = verify(copy.path());
        assert_eq!(code, Some(1), "{name}: {text}");
        assert!(text.contains("NOT intact"), "{name}: {text}");
        assert!(text.contains(place), "{name} should name {place:?}: {text}");
    }
}

#[test]
fn an_agent_over_its_tool_call_quota_is_denied_and_it_is_recorded() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = agent(
        &daemon,
        "name = \"busy\"\n[quotas]\ntool_calls_per_minute = 3\n",
    );
    ok(daemon.cli(&[
        "grant",
        "add",
        "--agent",
        "busy",
        "--action",
        "fs.read",
        "--resource",
        "path:/srv/**",
    ]));
    let outcomes: Vec<String> = (0..5)
        .map(|i| {
            decide(&daemon, &token, read(&format!("path:/srv/{i}")))["decision"]["outcome"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(outcomes, ["allow", "allow", "allow", "deny", "deny"]);
    let last = decide(&daemon, &token, read("path:/srv/x"));
    assert!(
        last["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("quota of 3 tool calls per minute"),
        "{last}"
    );
    let why = ok(daemon.cli(&["audit", "why", &last["seq"].to_string()]));
    assert!(why.contains("quota.tool_calls_per_minute"), "{why}");
}

#[test]
fn an_agent_told_ask_waits_for_the_owners_answer_then_asks_again() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = agent(
        &daemon,
        "name = \"patient\"\ncapabilities = [\"fs.read\"]\n",
    );
    let other = agent(&daemon, "name = \"nosy\"\n");
    let asked = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_eq!(asked["decision"]["outcome"], "ask");
    let id = asked["consent"]["id"].as_str().unwrap().to_string();

    // Another agent cannot see it.
    assert_eq!(
        daemon
            .get(&format!("/api/v1/approvals/{id}"), Some(&other))
            .status,
        404
    );

    let waiter = {
        let (addr, token, id) = (daemon.addr, token.clone(), id.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET /api/v1/approvals/{id}?wait_ms=20000 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            raw
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !waiter.is_finished(),
        "it waits while the request is pending"
    );
    ok(daemon.cli(&["approve", &id]));
    let raw = waiter.join().unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"status\":\"approved\""), "{raw}");
    let again = decide(&daemon, &token, read("path:/srv/notes/a.md"));
    assert_eq!(again["decision"]["outcome"], "allow", "{again}");
}
