//! The session manager end to end: the real daemon, real `gyrus hook …` processes fed each
//! client's documented hook JSON (the fixtures in gyrus-sessions/tests/fixtures), real git
//! repositories and worktrees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, GYRUS, gyrus, ok};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../gyrus-sessions/tests/fixtures"
);

/// A fixture with its placeholders filled in.
fn fixture(name: &str, cwd: &Path, session: &str) -> String {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("__CWD__", cwd.to_str().unwrap())
        .replace("__SESSION__", session)
}

/// Starts `gyrus hook CLIENT` with `input` on stdin.
fn spawn_hook(home: &Path, client: &str, input: &str) -> std::process::Child {
    let mut child = gyrus(home)
        .args(["hook", client])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child
}

/// Runs `gyrus hook CLIENT` with `input` on stdin.
fn hook(home: &Path, client: &str, input: &str) -> Output {
    spawn_hook(home, client, input).wait_with_output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

/// Claude Code's PreToolUse verdict from a hook's stdout: `allow` when it printed nothing.
fn claude_decision(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(out);
    let specific = &v["hookSpecificOutput"];
    (
        specific["permissionDecision"]
            .as_str()
            .unwrap_or("allow")
            .to_string(),
        specific["permissionDecisionReason"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

fn claude_context(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0));
    stdout_json(out)["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with one commit holding src/lib.rs and README.md.
fn repo(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("src/lib.rs"), "pub fn one() -> u32 {\n    1\n}\n").unwrap();
    std::fs::write(root.join("README.md"), "# demo\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["commit", "-q", "-m", "start"]);
    root.canonicalize().unwrap()
}

fn sessions(daemon: &Daemon) -> Value {
    serde_json::from_str(&ok(daemon.cli(&["session", "list", "--json"]))).unwrap()
}

fn session_id(daemon: &Daemon, client_session_id: &str) -> String {
    sessions(daemon)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"]["client_session_id"] == json!(client_session_id))
        .map(|s| s["session"]["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no session {client_session_id}"))
}

#[test]
fn claude_sessions_see_each_other_and_an_exclusive_edit_is_refused_until_the_holder_ends() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);

    // Session A starts alone, takes a prompt, edits src/lib.rs.
    let start = hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &root, "claude-a"),
    );
    let digest = claude_context(&start);
    assert!(digest.contains("No other session"), "{digest}");
    let prompt = fixture("claude/UserPromptSubmit.json", &root, "claude-a");
    let mut p: Value = serde_json::from_str(&prompt).unwrap();
    p["prompt"] = json!("refactor the parser in src/lib.rs");
    ok(hook(&daemon.home, "claude", &p.to_string()));
    let edit_a = hook(
        &daemon.home,
        "claude",
        &fixture("claude/PreToolUse-Edit.json", &root, "claude-a"),
    );
    assert_eq!(claude_decision(&edit_a).0, "allow");
    let a = session_id(&daemon, "claude-a");

    // Session B starts: its digest names A, A's task and the path A holds.
    let start_b = hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &root, "claude-b"),
    );
    let digest_b = claude_context(&start_b);
    assert!(digest_b.contains(&a), "{digest_b}");
    assert!(digest_b.contains("refactor the parser"), "{digest_b}");
    assert!(digest_b.contains("src/lib.rs"), "{digest_b}");

    // B's edit of the same file is refused, naming A and its task.
    let edit_b = hook(
        &daemon.home,
        "claude",
        &fixture("claude/PreToolUse-Edit.json", &root, "claude-b"),
    );
    let (decision, reason) = claude_decision(&edit_b);
    assert_eq!(decision, "deny", "{reason}");
    assert!(
        reason.contains(&a) && reason.contains("refactor the parser"),
        "{reason}"
    );
    // A Write of another file is fine.
    let write_b = hook(
        &daemon.home,
        "claude",
        &fixture("claude/PreToolUse-Write.json", &root, "claude-b"),
    );
    assert_eq!(claude_decision(&write_b).0, "allow");

    // The refusal is in the audit trail, by session B, on the path.
    let audit: Value = serde_json::from_str(&ok(
        daemon.cli(&["audit", "tail", "--limit", "10", "--json"])
    ))
    .unwrap();
    let refused = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == json!("session.edit"))
        .expect("a session.edit decision");
    assert_eq!(refused["decision"], json!("deny"));
    assert!(
        refused["resource"]
            .as_str()
            .unwrap()
            .ends_with("/src/lib.rs")
    );

    // A ends: B may edit.
    ok(hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionEnd.json", &root, "claude-a"),
    ));
    let edit_b = hook(
        &daemon.home,
        "claude",
        &fixture("claude/PreToolUse-Edit.json", &root, "claude-b"),
    );
    assert_eq!(claude_decision(&edit_b).0, "allow");
    let listed = sessions(&daemon);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
}

/// A PreToolUse/BeforeTool verdict in any client's format: (decision, reason).
fn verdict(client: &str, out: &Output) -> (String, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if client != "gemini" {
        return claude_decision(out);
    }
    // Gemini: exit 0 with `{}` or `{"decision": "deny", "reason": …}`.
    assert_eq!(out.status.code(), Some(0), "{text}");
    let v = stdout_json(out);
    (
        v["decision"].as_str().unwrap_or("allow").to_string(),
        v["reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn every_client_is_refused_a_file_another_session_holds_until_it_ends() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);
    // (client, start, edit, end) fixtures, each client's documented events.
    let cases = [
        (
            "claude",
            "claude/SessionStart.json",
            "claude/PreToolUse-MultiEdit.json",
            "claude/SessionEnd.json",
        ),
        (
            "codex",
            "codex/SessionStart.json",
            "codex/PreToolUse-apply_patch.json",
            "codex/SessionEnd.json",
        ),
        (
            "gemini",
            "gemini/SessionStart.json",
            "gemini/BeforeTool-replace.json",
            "gemini/SessionEnd.json",
        ),
    ];
    for (client, start, edit, end) in cases {
        let (a, b) = (format!("{client}-first"), format!("{client}-second"));
        for s in [&a, &b] {
            let out = hook(&daemon.home, client, &fixture(start, &root, s));
            assert_eq!(out.status.code(), Some(0), "{client} start");
        }
        let first = verdict(
            client,
            &hook(&daemon.home, client, &fixture(edit, &root, &a)),
        );
        assert_eq!(first.0, "allow", "{client}: {first:?}");
        let holder = session_id(&daemon, &a);
        let second = verdict(
            client,
            &hook(&daemon.home, client, &fixture(edit, &root, &b)),
        );
        assert_eq!(second.0, "deny", "{client}: {second:?}");
        assert!(
            second.1.contains(&holder),
            "{client}: the reason names the holder: {}",
            second.1
        );
        let out = hook(&daemon.home, client, &fixture(end, &root, &a));
        assert_eq!(out.status.code(), Some(0), "{client} end");
        let after = verdict(
            client,
            &hook(&daemon.home, client, &fixture(edit, &root, &b)),
        );
        assert_eq!(
            after.0, "allow",
            "{client} after the holder ended: {after:?}"
        );
        let out = hook(&daemon.home, client, &fixture(end, &root, &b));
        assert_eq!(out.status.code(), Some(0));
    }
    assert!(sessions(&daemon)["sessions"].as_array().unwrap().is_empty());
}

#[test]
fn a_codex_patch_takes_both_files_and_gemini_is_refused_in_its_own_format() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);

    let patch = fixture("codex/PreToolUse-apply_patch.json", &root, "codex-1");
    let out = hook(&daemon.home, "codex", &patch);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = session_id(&daemon, "codex-1");
    let shown: Value =
        serde_json::from_str(&ok(daemon.cli(&["session", "show", &c, "--json"]))).unwrap();
    let mut globs: Vec<&str> = shown["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["glob"].as_str().unwrap())
        .collect();
    globs.sort_unstable();
    // The envelope's two files (an Update and an Add), relative to the worktree.
    assert_eq!(globs, ["src/lib.rs", "src/tools.rs"], "{shown}");

    // Gemini writing one of them is refused in Gemini's format, naming the Codex session.
    let mut w: Value = serde_json::from_str(&fixture(
        "gemini/BeforeTool-write_file.json",
        &root,
        "gemini-1",
    ))
    .unwrap();
    w["tool_input"]["file_path"] = json!(root.join(globs[0]).to_str().unwrap());
    let out = hook(&daemon.home, "gemini", &w.to_string());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let denied = v["decision"] == json!("deny")
        || v["decision"] == json!("block")
        || out.status.code() == Some(2);
    assert!(denied, "not refused: {text}");
    assert!(text.contains(&c), "{text}");
}

#[test]
fn messages_reach_a_session_at_its_next_prompt_and_tools_work_over_the_registry() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);
    claude_context(&hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &root, "m-1"),
    ));
    let id = session_id(&daemon, "m-1");

    ok(daemon.cli(&["session", "send", &id, "please leave README.md to me"]));
    let prompt = hook(
        &daemon.home,
        "claude",
        &fixture("claude/UserPromptSubmit.json", &root, "m-1"),
    );
    let context = claude_context(&prompt);
    assert!(
        context.contains("please leave README.md to me"),
        "{context}"
    );
    // Delivered once.
    let again = hook(
        &daemon.home,
        "claude",
        &fixture("claude/UserPromptSubmit.json", &root, "m-1"),
    );
    assert!(!claude_context(&again).contains("README.md to me"));

    // The session tools (also what MCP clients see): register another, claim, send, inbox.
    let call = |tool: &str, args: Value| -> Value {
        let out = ok(daemon.cli(&[
            "tool",
            "call",
            tool,
            "--args",
            &args.to_string(),
            "--intent",
            "test",
            "--json",
        ]));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["decision"]["outcome"], json!("allow"), "{v}");
        v["output"].clone()
    };
    let other = call(
        "session.register",
        json!({"client": "other", "client_session_id": "tool-1", "cwd": root.to_str().unwrap(), "task": "docs"}),
    );
    let other_id = other["session"]["id"].as_str().unwrap().to_string();
    assert!(other["digest"].as_str().unwrap().contains(&id));
    let claimed = call(
        "session.claim",
        json!({"session": other_id, "glob": "docs/**", "mode": "exclusive"}),
    );
    assert_eq!(claimed["granted"], json!(true), "{claimed}");
    let mut edit: Value =
        serde_json::from_str(&fixture("claude/PreToolUse-Write.json", &root, "m-1")).unwrap();
    edit["tool_input"]["file_path"] = json!(root.join("docs/guide.md").to_str().unwrap());
    let (decision, reason) = claude_decision(&hook(&daemon.home, "claude", &edit.to_string()));
    assert_eq!(decision, "deny");
    assert!(reason.contains(&other_id), "{reason}");
    call(
        "session.send",
        json!({"from": other_id, "to": id, "text": "docs are mine"}),
    );
    let inbox = call("session.inbox", json!({"session": id, "all": true}));
    assert!(
        inbox["messages"].to_string().contains("docs are mine"),
        "{inbox}"
    );
    let released = call(
        "session.release",
        json!({"session": other_id, "which": "*"}),
    );
    assert_eq!(released["released"], json!(1));
    let (decision, _) = claude_decision(&hook(&daemon.home, "claude", &edit.to_string()));
    assert_eq!(decision, "allow");
}

#[test]
fn racing_hook_processes_get_exactly_one_lease() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);
    const N: usize = 8;
    let children: Vec<_> = (0..N)
        .map(|i| {
            let input = fixture("claude/PreToolUse-Edit.json", &root, &format!("race-{i}"));
            spawn_hook(&daemon.home, "claude", &input)
        })
        .collect();
    let decisions: Vec<String> = children
        .into_iter()
        .map(|c| claude_decision(&c.wait_with_output().unwrap()).0)
        .collect();
    assert_eq!(
        decisions.iter().filter(|d| *d == "allow").count(),
        1,
        "{decisions:?}"
    );
    assert_eq!(decisions.iter().filter(|d| *d == "deny").count(), N - 1);
}

#[test]
fn a_killed_client_holds_nothing_once_its_lease_runs_out() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let daemon = Daemon::start(home.path(), None, &[]);
    // A wrapped client (as Aider runs) claims src/lib.rs for 3 s through the tools, then
    // hangs; it and its wrapper are killed with SIGKILL, so nothing ever ends the session.
    let script = format!(
        "'{GYRUS}' --home '{}' tool call session.claim --intent claim --args \"{{\\\"session\\\":\\\"$GYRUS_SESSION\\\",\\\"glob\\\":\\\"src/lib.rs\\\",\\\"ttl_secs\\\":3}}\" >/dev/null && touch '{}/claimed' && exec sleep 600",
        daemon.home.display(),
        work.path().display()
    );
    let mut wrapper = gyrus(&daemon.home)
        .current_dir(&root)
        .args(["session", "wrap", "sh", "--", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !work.path().join("claimed").exists() {
        assert!(
            Instant::now() < deadline,
            "the wrapped client never claimed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let edit = fixture("claude/PreToolUse-Edit.json", &root, "after-kill");
    assert_eq!(
        claude_decision(&hook(&daemon.home, "claude", &edit)).0,
        "deny"
    );
    // SIGKILL the wrapper and its child (the sleep).
    let pid = wrapper.id();
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string()])
        .status();
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    // The lease lapses by its TTL; no end event was ever sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (decision, _) = claude_decision(&hook(&daemon.home, "claude", &edit));
        if decision == "allow" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed client's lease never lapsed"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn without_the_daemon_hooks_warn_and_let_the_client_go_on_unless_strict() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let edit = fixture("claude/PreToolUse-Edit.json", &root, "offline");
    let out = hook(home.path(), "claude", &edit);
    assert_eq!(out.status.code(), Some(0));
    let (decision, _) = claude_decision(&out);
    assert_eq!(decision, "allow");
    let warning = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(warning.contains("unavailable"), "{warning}");

    std::fs::create_dir_all(home.path().join("user")).unwrap();
    std::fs::write(
        home.path().join("user/gyrus.toml"),
        "[sessions]\nstrict = true\n",
    )
    .unwrap();
    let out = hook(home.path(), "claude", &edit);
    let blocked = out.status.code() == Some(2)
        || stdout_json(&out)["hookSpecificOutput"]["permissionDecision"] == json!("deny");
    assert!(blocked, "strict mode must block: {:?}", out);

    // Garbage on stdin: one line, exit 1 (a non-blocking error for the client).
    let out = hook(home.path(), "claude", "{not json");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn conflicts_between_worktrees_are_predicted_and_the_guard_refuses_held_paths() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = repo(work.path());
    let feature = work.path().join("feature");
    git(
        &root,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            feature.to_str().unwrap(),
        ],
    );
    let feature = feature.canonicalize().unwrap();
    std::fs::write(
        feature.join("src/lib.rs"),
        "pub fn one() -> u32 {\n    2\n}\n",
    )
    .unwrap();
    git(&feature, &["commit", "-q", "-am", "two"]);
    std::fs::write(root.join("src/lib.rs"), "pub fn one() -> u32 {\n    3\n}\n").unwrap();
    git(&root, &["commit", "-q", "-am", "three"]);

    let daemon = Daemon::start(home.path(), None, &[]);
    claude_context(&hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &root, "wt-main"),
    ));
    claude_context(&hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &feature, "wt-feature"),
    ));
    let v: Value =
        serde_json::from_str(&ok(daemon.cli(&["session", "conflicts", "--json"]))).unwrap();
    let pairs = v["repositories"][0]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{v}");
    assert_eq!(pairs[0]["clean"], json!(false));
    assert_eq!(pairs[0]["files"], json!(["src/lib.rs"]));
    // A session starting now hears of it in its digest.
    let digest = claude_context(&hook(
        &daemon.home,
        "claude",
        &fixture("claude/SessionStart.json", &feature, "wt-feature-2"),
    ));
    assert!(digest.contains("Predicted merge conflict"), "{digest}");

    // The pre-commit guard: the main worktree's session holds README.md; a commit of it
    // from that worktree by someone else is refused, naming the holder; the holder may.
    let mut edit: Value =
        serde_json::from_str(&fixture("claude/PreToolUse-Write.json", &root, "wt-main")).unwrap();
    edit["tool_input"]["file_path"] = json!(root.join("README.md").to_str().unwrap());
    assert_eq!(
        claude_decision(&hook(&daemon.home, "claude", &edit.to_string())).0,
        "allow"
    );
    let holder = session_id(&daemon, "wt-main");
    let install = gyrus(&daemon.home)
        .current_dir(&root)
        .args(["session", "guard", "--install"])
        .output()
        .unwrap();
    ok(install);
    // The hook runs `gyrus session guard` without --home: point it at this home.
    std::fs::write(root.join("README.md"), "# demo, edited\n").unwrap();
    git(&root, &["add", "README.md"]);
    let commit = |session: Option<&str>| {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&root)
            .args(["commit", "-q", "-m", "readme"])
            .env("GYRUS_HOME", &daemon.home)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env_remove("GYRUS_SESSION");
        if let Some(s) = session {
            cmd.env("GYRUS_SESSION", s);
        }
        cmd.output().unwrap()
    };
    let refused = commit(None);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&holder) && err.contains("README.md"), "{err}");
    let allowed = commit(Some(&holder));
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}

#[test]
fn install_into_a_project_is_idempotent() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let run = || -> Value {
        let out = gyrus(home.path())
            .env("HOME", home.path())
            .args(["session", "install", "claude", "--project"])
            .arg(project.path())
            .arg("--json")
            .output()
            .unwrap();
        serde_json::from_str(&ok(out)).unwrap()
    };
    let first = run();
    assert!(
        first["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["changed"] == json!(true)),
        "{first}"
    );
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".claude/settings.json")).unwrap(),
    )
    .unwrap();
    assert!(
        settings["hooks"]["PreToolUse"]
            .to_string()
            .contains("hook claude"),
        "{settings}"
    );
    let second = run();
    assert!(
        second["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["changed"] == json!(false)),
        "{second}"
    );
}
