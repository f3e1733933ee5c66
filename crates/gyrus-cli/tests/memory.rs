//! The memory fabric end to end: the real daemon with its SQLite store and the bundled
//! encoder, `gyrus memory …` as the owner, device tokens as other principals over TCP, the
//! episodic feed from the audit trail, ingest of real files, the sketch through $EDITOR.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, ok};

fn json_of(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A tool call over TCP with a device token.
fn call(daemon: &Daemon, token: &str, tool: &str, args: Value) -> Value {
    let body = json!({"args": args, "intent": "remember"}).to_string();
    let r = daemon.tcp(
        &format!(
            "POST /api/v1/tools/{tool}/call HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.code());
    r.json()
}

fn ids(hits: &Value) -> Vec<String> {
    hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["item"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_owner_remembers_corrects_searches_and_forgets() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let v1 = json_of(daemon.cli(&[
        "memory",
        "store",
        "The staging database listens on port 5433",
        "--tag",
        "db",
        "--json",
    ]));
    let v1 = v1["id"].as_str().unwrap().to_string();
    // Found by meaning, not only by its words.
    let hits = json_of(daemon.cli(&[
        "memory",
        "query",
        "which port does the staging db use",
        "--json",
    ]));
    assert_eq!(ids(&hits)[0], v1);
    let v2 = json_of(daemon.cli(&[
        "memory",
        "update",
        &v1,
        "The staging database listens on port 6543",
        "--json",
    ]));
    let v2 = v2["id"].as_str().unwrap().to_string();
    let history = json_of(daemon.cli(&["memory", "history", &v2, "--json"]));
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["id"], v1.as_str());
    assert!(versions[0]["valid_to"].is_i64());
    let hits = json_of(daemon.cli(&["memory", "query", "staging database port", "--json"]));
    assert_eq!(ids(&hits), std::slice::from_ref(&v2));
    // Human output names the item.
    let text = ok(daemon.cli(&["memory", "get", &v2]));
    assert!(text.contains("6543") && text.contains(&v2), "{text}");

    // Bad input: one line, non-zero exit.
    for args in [
        &["memory", "query", "x", "--since", "last tuesday"][..],
        &["memory", "query", "x", "--mode", "psychic"],
        &["memory", "store", "x", "--ttl", "soon"],
        &["memory", "get", "mem_0000000000000000"],
        &["memory", "query", "x", "--namespace", "agent:*"],
    ] {
        let out = daemon.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }

    let forgot = json_of(daemon.cli(&["memory", "forget", &v2, "--json"]));
    assert_eq!(forgot["versions"].as_array().unwrap().len(), 2);
    let hits = json_of(daemon.cli(&["memory", "query", "staging database port", "--json"]));
    assert!(ids(&hits).is_empty(), "{hits}");
}

#[test]
fn principals_see_only_their_own_namespace_unless_granted() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let alice = daemon.create_token("alice");
    let bob = daemon.create_token("bob");
    let stored = call(
        &daemon,
        &alice,
        "memory.store",
        json!({"content": "alice's recovery phrase is orchid lantern", "tags": ["secret"]}),
    );
    assert_eq!(stored["decision"]["outcome"], "allow", "{stored}");
    let ns = stored["output"]["namespace"].as_str().unwrap().to_string();
    assert!(ns.starts_with("token:"), "{ns}");
    let id = stored["output"]["id"].as_str().unwrap().to_string();

    // Bob, with every trick: her namespace (denied by the broker), his own with her words,
    // tags and as-of (empty), her id by get and history (not found in his namespace).
    let denied = call(
        &daemon,
        &bob,
        "memory.query",
        json!({"text": "recovery phrase", "namespaces": [ns]}),
    );
    assert_eq!(denied["decision"]["outcome"], "deny", "{denied}");
    assert!(denied.get("output").is_none());
    for args in [
        json!({"text": "recovery phrase orchid lantern"}),
        json!({"text": "", "tags": ["secret"]}),
        json!({"text": "orchid", "as_of": 4_000_000_000_000i64, "mode": "text"}),
        json!({"text": "alice", "mode": "vector", "limit": 1000}),
    ] {
        let r = call(&daemon, &bob, "memory.query", args.clone());
        assert_eq!(r["decision"]["outcome"], "allow", "{r}");
        assert!(ids(&r["output"]).is_empty(), "{args}: {r}");
    }
    for tool in ["memory.get", "memory.history", "memory.forget"] {
        let r = call(&daemon, &bob, tool, json!({"id": id}));
        assert!(r.get("output").is_none(), "{tool}: {r}");
        assert!(!r.to_string().contains("orchid"), "{tool}: {r}");
    }
    let r = call(
        &daemon,
        &bob,
        "memory.query",
        json!({"namespaces": ["owner"], "text": "x"}),
    );
    assert_eq!(r["decision"]["outcome"], "deny", "{r}");

    // Alice finds it; so does the owner, naming her namespace.
    let r = call(
        &daemon,
        &alice,
        "memory.query",
        json!({"text": "recovery phrase"}),
    );
    assert_eq!(ids(&r["output"]), std::slice::from_ref(&id));
    let owner = json_of(daemon.cli(&[
        "memory",
        "query",
        "recovery phrase",
        "--namespace",
        &ns,
        "--json",
    ]));
    assert_eq!(ids(&owner), std::slice::from_ref(&id));

    // A grant lets Bob read her namespace.
    let bob_id = {
        let list = json_of(daemon.cli(&["token", "list", "--json"]));
        let tokens = list["tokens"].as_array().cloned().unwrap();
        tokens.iter().find(|t| t["name"] == "bob").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    ok(daemon.cli(&[
        "grant",
        "add",
        "--principal",
        &format!("token:{bob_id}"),
        "--action",
        "memory.query",
        "--resource",
        &format!("memory:{ns}"),
    ]));
    let r = call(
        &daemon,
        &bob,
        "memory.query",
        json!({"text": "recovery phrase", "namespaces": [ns]}),
    );
    assert_eq!(r["decision"]["outcome"], "allow", "{r}");
    assert_eq!(ids(&r["output"]), [id]);
}

#[test]
fn the_audit_trail_feeds_the_episodic_log() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let file = home.path().join("note.txt");
    std::fs::write(&file, "hello\n").unwrap();
    let out = ok(daemon.cli(&[
        "tool",
        "call",
        "fs.read",
        "--args",
        &json!({"path": file}).to_string(),
        "--intent",
        "look at the note",
        "--json",
    ]));
    let action: Value = serde_json::from_str(&out).unwrap();
    let seq = action["decision"]["seq"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let episode = loop {
        let hits = json_of(daemon.cli(&[
            "memory",
            "query",
            "fs.read note",
            "--kind",
            "episodic",
            "--since",
            "1h",
            "--json",
        ]));
        let found = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| {
                h["item"]["metadata"]["tool"] == "fs.read"
                    && h["item"]["metadata"]["event"] == "tool.call"
            })
            .cloned();
        if let Some(h) = found {
            break h["item"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no episode for the fs.read call: {hits}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Linked to its audit entries: the outcome follows the decision.
    let source = episode["source"].as_str().unwrap();
    let audit_seq: u64 = source.strip_prefix("audit:").unwrap().parse().unwrap();
    assert!(audit_seq > seq, "{episode}");
    assert_eq!(episode["metadata"]["request_id"], action["action_id"]);
    assert!(
        episode["content"]
            .as_str()
            .unwrap()
            .contains("look at the note"),
        "{episode}"
    );
}

#[test]
fn ingest_and_the_sketch() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let docs = home.path().join("docs");
    std::fs::create_dir_all(docs.join("ops")).unwrap();
    std::fs::write(
        docs.join("ops/restore.md"),
        "# Restores\n\n## From the NAS\n\nMount the share, then run restic restore latest.\n\n## From the cloud\n\nDownload the snapshot with rclone first.\n",
    )
    .unwrap();
    std::fs::write(docs.join("ops/binary.bin"), [0u8, 159, 146, 150]).unwrap();
    let out = json_of(daemon.cli(&["memory", "ingest", docs.to_str().unwrap(), "--json"]));
    assert_eq!(out["files"], 1, "{out}");
    assert!(out["stored"].as_u64().unwrap() >= 1);
    let hits = json_of(daemon.cli(&[
        "memory",
        "query",
        "how do I get my files back from the NAS",
        "--kind",
        "knowledge",
        "--json",
    ]));
    let top = &hits["hits"][0]["item"];
    assert!(
        top["content"].as_str().unwrap().contains("restic"),
        "{hits}"
    );
    assert!(
        top["metadata"]["path"]
            .as_str()
            .unwrap()
            .ends_with("ops/restore.md")
    );
    assert!(top["source"].as_str().unwrap().starts_with("file:"));
    // Ingesting again stores nothing new.
    let again = json_of(daemon.cli(&["memory", "ingest", docs.to_str().unwrap(), "--json"]));
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(again["unchanged"], out["stored"]);
    // A file that shrank: its chunks past the new end are no longer current.
    std::fs::write(
        docs.join("ops/restore.md"),
        "# Restores\n\n## From the NAS\n\nMount the share, then run restic restore latest.\n",
    )
    .unwrap();
    let shrunk = json_of(daemon.cli(&["memory", "ingest", docs.to_str().unwrap(), "--json"]));
    assert!(shrunk["retired"].as_u64().unwrap() >= 1, "{shrunk}");
    assert_eq!(shrunk["stored"], 0, "{shrunk}");
    let gone = json_of(daemon.cli(&[
        "memory",
        "query",
        "rclone snapshot download",
        "--kind",
        "knowledge",
        "--json",
    ]));
    for hit in gone["hits"].as_array().unwrap() {
        assert!(
            !hit["item"]["content"].as_str().unwrap().contains("rclone"),
            "a retired chunk is still current: {gone}"
        );
    }

    // The sketch, edited through $EDITOR (a script that writes a new one).
    let editor = home.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '## Preferences\\n- Prefers Rust\\n## Current focus\\n- the memory fabric\\n' > \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = daemon.cli_env(
        &["memory", "sketch", "--edit"],
        &[("EDITOR", editor.to_str().unwrap()), ("VISUAL", "")],
    );
    let text = ok(out);
    assert!(
        text.contains("- Prefers Rust") && text.contains("## Current focus"),
        "{text}"
    );
    let shown = json_of(daemon.cli(&["memory", "sketch", "--json"]));
    assert_eq!(shown["sketch"]["focus"], json!(["the memory fabric"]));
    assert!(shown["text"].as_str().unwrap().len() <= shown["budget"].as_u64().unwrap() as usize);
}
