//! Tools end to end through the real daemon and CLI: list, describe, call, a bad argument
//! (one line, exit 1, nothing decided), a denial over TCP, and undo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Daemon, ok};

fn audit_len(daemon: &Daemon) -> u64 {
    let v: Value =
        serde_json::from_str(&ok(daemon.cli(&["audit", "tail", "--limit", "1", "--json"])))
            .unwrap();
    v["entries"][0]["seq"].as_u64().unwrap_or(0)
}

#[test]
fn call_describe_undo_and_refuse_through_the_daemon() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);

    let list: Value = serde_json::from_str(&ok(daemon.cli(&["tool", "list", "--json"]))).unwrap();
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "fs.read",
        "fs.write",
        "fs.list",
        "fs.delete",
        "fs.move",
        "sec.grant",
        "sec.revoke",
        "sec.grants",
        "sec.audit",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let table = ok(daemon.cli(&["tool", "list"]));
    assert!(
        table.contains("fs.write") && table.contains("write"),
        "{table}"
    );
    let described = ok(daemon.cli(&["tool", "describe", "fs.read"]));
    assert!(described.contains("path: string (required)"), "{described}");

    let file = work.path().join("note.txt");
    std::fs::write(&file, "before\n").unwrap();
    let path = file.display().to_string();
    let args = json!({"path": path, "content": "after\n"}).to_string();
    let out = ok(daemon.cli(&[
        "tool",
        "call",
        "fs.write",
        "--args",
        &args,
        "--intent",
        "edit the note",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["outcome"], "allow", "{v}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "after\n");
    let action = v["action_id"].as_str().unwrap().to_string();

    let read = ok(daemon.cli(&[
        "tool",
        "call",
        "fs.read",
        "--args",
        &json!({"path": path}).to_string(),
        "--intent",
        "look",
    ]));
    assert_eq!(read, "after\n");

    // A bad argument: one line naming the field, exit 1, nothing decided.
    let before = audit_len(&daemon);
    let bad = daemon.cli(&[
        "tool",
        "call",
        "fs.read",
        "--args",
        r#"{"path": 3}"#,
        "--intent",
        "x",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("error: ")
            && err.contains("field `path`")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(audit_len(&daemon), before);
    let unknown = daemon.cli(&["tool", "call", "fs.nope", "--intent", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("gyrus tool list"));

    // A device token without a grant is denied, with an audit entry.
    let token = daemon.create_token("laptop");
    let body = json!({"args": {"path": path}, "intent": "peek"}).to_string();
    let r = daemon.tcp(
        &format!(
            "POST /api/v1/tools/fs.read/call HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let denied = r.json();
    assert_eq!(denied["decision"]["outcome"], "deny", "{denied}");
    assert_eq!(denied["error"]["code"], "denied");
    assert!(denied.get("output").is_none());
    let seq = denied["decision"]["seq"].as_u64().unwrap();
    let entry: Value = serde_json::from_str(&ok(daemon.cli(&[
        "audit",
        "show",
        &seq.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(entry["entry"]["action"], "fs.read", "{entry}");
    assert_eq!(entry["entry"]["decision"], "deny");

    // Undo restores the old bytes; a second undo is refused.
    ok(daemon.cli(&["undo", &action]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "before\n");
    let again = daemon.cli(&["undo", &action]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already undone"));
}

#[test]
fn process_spawn_runs_sandboxed_through_the_broker() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let root = std::fs::canonicalize(work.path()).unwrap();
    std::fs::create_dir(root.join("granted")).unwrap();
    std::fs::write(root.join("granted/notes.txt"), "notes\n").unwrap();
    std::fs::create_dir(root.join(".ssh")).unwrap();
    std::fs::write(root.join(".ssh/id_rsa"), "PRIVATE\n").unwrap();

    let call = |file: &str| -> Value {
        let args = json!({
            "program": "/bin/cat",
            "args": [root.join(file).display().to_string()],
            "read_paths": [root.join("granted").display().to_string()],
        })
        .to_string();
        let out = daemon.cli(&[
            "tool",
            "call",
            "process.spawn",
            "--args",
            &args,
            "--intent",
            "read notes",
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let inside = call("granted/notes.txt");
    assert_eq!(inside["decision"]["outcome"], "allow", "{inside}");
    assert_eq!(inside["output"]["stdout"], "notes\n", "{inside}");
    assert_eq!(inside["output"]["sandboxed"], true);
    let outside = call(".ssh/id_rsa");
    assert_ne!(outside["output"]["exit_code"], 0, "{outside}");
    assert!(!outside.to_string().contains("PRIVATE"), "{outside}");
}
