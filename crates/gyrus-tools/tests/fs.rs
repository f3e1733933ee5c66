//! The file tools through the one call path, on a real kernel (SQLite audit trail, grants,
//! Cedar broker) in a temporary home: undo byte for byte, refusals after later changes,
//! schema errors before any decision, and paths that try to leave a grant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gyrus_home::Home;
use gyrus_kernel::Kernel;
use gyrus_policy::{IntentSource, NewGrant, Outcome, Principal};
use gyrus_tools::{CallResult, ToolCall, ToolEnv, ToolError, Tools};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    /// Where the files the tests touch live (outside the home).
    root: PathBuf,
    kernel: Kernel,
    tools: Tools,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("work");
    std::fs::create_dir(&root).unwrap();
    let kernel = Kernel::open(&home, "http://127.0.0.1:1".into()).unwrap();
    let tools = gyrus_tools::builtin(ToolEnv::new(home)).unwrap();
    World {
        _dir: dir,
        root,
        kernel,
        tools,
    }
}

const OWNER: Principal = Principal::Owner { uid: 1000 };

fn device() -> Principal {
    Principal::Token {
        id: "tok_test".into(),
        name: "laptop".into(),
    }
}

impl World {
    fn call_as(
        &self,
        principal: Principal,
        tool: &str,
        args: Value,
    ) -> Result<CallResult, ToolError> {
        let intent_source = if principal.is_owner() {
            IntentSource::Owner
        } else {
            IntentSource::Untrusted(principal.id())
        };
        self.tools.call(
            &self.kernel,
            &ToolCall {
                principal,
                tool: tool.into(),
                args,
                intent: "test".into(),
                intent_source,
                plan_id: None,
            },
        )
    }

    fn call(&self, tool: &str, args: Value) -> CallResult {
        let r = self.call_as(OWNER, tool, args).unwrap();
        assert!(r.is_ok(), "{tool} failed: {r:?}");
        r
    }

    fn undo(&self, action_id: &str) -> CallResult {
        self.tools
            .undo(&self.kernel, &OWNER, action_id, "undo", IntentSource::Owner)
            .unwrap()
    }

    fn grant(&self, principal: &Principal, actions: &[&str], resources: &[String]) {
        self.kernel
            .broker()
            .grants()
            .add(
                NewGrant {
                    principal: principal.id(),
                    actions: actions.iter().map(|s| s.to_string()).collect(),
                    resources: resources.to_vec(),
                    granted_by: "owner".into(),
                    ..NewGrant::default()
                },
                SystemTime::now(),
            )
            .unwrap();
    }

    fn p(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every entry under `dir` with its kind, mode and contents (or link target).
fn tree(dir: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let (kind, content) = if meta.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            out.push((rel, kind.to_string(), mode(&p), content));
        }
    }
    out.sort();
    out
}

#[test]
fn write_then_undo_restores_the_old_bytes_and_mode() {
    let w = world();
    let file = w.root.join("notes.txt");
    let old: Vec<u8> = (0u8..=255).collect();
    std::fs::write(&file, &old).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let r = w.call(
        "fs.write",
        json!({"path": w.p("notes.txt"), "content": "new text", "mode": "0644"}),
    );
    assert!(r.undoable);
    assert_eq!(std::fs::read(&file).unwrap(), b"new text");
    assert_eq!(mode(&file), 0o644);

    let u = w.undo(&r.action_id);
    assert!(u.is_ok(), "{u:?}");
    assert_eq!(std::fs::read(&file).unwrap(), old);
    assert_eq!(mode(&file), 0o600);

    // A second undo of the same call is refused.
    let again = w
        .tools
        .undo(&w.kernel, &OWNER, &r.action_id, "undo", IntentSource::Owner);
    assert!(matches!(again, Err(ToolError::Conflict(_))), "{again:?}");
}

#[test]
fn undo_of_a_created_file_removes_it_and_its_new_parents() {
    let w = world();
    let r = w.call(
        "fs.write",
        json!({"path": w.p("a/b/new.txt"), "content": "x", "create_parents": true}),
    );
    assert!(w.root.join("a/b/new.txt").exists());
    assert!(w.undo(&r.action_id).is_ok());
    assert!(!w.root.join("a").exists());
}

#[test]
fn delete_then_undo_restores_a_tree_byte_for_byte() {
    let w = world();
    let d = w.root.join("proj");
    std::fs::create_dir_all(d.join("src/deep")).unwrap();
    std::fs::write(d.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(d.join("src/deep/blob.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    std::fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.join("src/deep"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("src/main.rs", d.join("link")).unwrap();
    let before = tree(&d);
    let dir_mode = mode(&d);

    let refused = w
        .call_as(OWNER, "fs.delete", json!({"path": w.p("proj")}))
        .unwrap();
    assert_eq!(
        refused.error.as_ref().unwrap().code,
        "failed",
        "{refused:?}"
    );
    assert!(d.exists());

    let r = w.call("fs.delete", json!({"path": w.p("proj"), "recursive": true}));
    assert!(!d.exists());
    assert!(w.undo(&r.action_id).is_ok());
    assert_eq!(tree(&d), before);
    assert_eq!(mode(&d), dir_mode);
}

#[test]
fn deleting_a_symlink_deletes_the_link_not_its_target() {
    let w = world();
    std::fs::write(w.root.join("target"), "keep").unwrap();
    std::os::unix::fs::symlink(w.root.join("target"), w.root.join("link")).unwrap();
    let r = w.call("fs.delete", json!({"path": w.p("link")}));
    assert!(std::fs::symlink_metadata(w.root.join("link")).is_err());
    assert_eq!(
        std::fs::read_to_string(w.root.join("target")).unwrap(),
        "keep"
    );
    assert!(w.undo(&r.action_id).is_ok());
    assert_eq!(
        std::fs::read_link(w.root.join("link")).unwrap(),
        w.root.join("target")
    );
}

#[test]
fn move_with_overwrite_then_undo_restores_both_sides() {
    let w = world();
    std::fs::write(w.root.join("a"), "A").unwrap();
    std::fs::set_permissions(w.root.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(w.root.join("b"), "B").unwrap();
    std::fs::set_permissions(w.root.join("b"), std::fs::Permissions::from_mode(0o604)).unwrap();

    let refused = w
        .call_as(OWNER, "fs.move", json!({"from": w.p("a"), "to": w.p("b")}))
        .unwrap();
    assert!(refused.error.unwrap().message.contains("overwrite"));

    let r = w.call(
        "fs.move",
        json!({"from": w.p("a"), "to": w.p("b"), "overwrite": true}),
    );
    assert!(!w.root.join("a").exists());
    assert_eq!(std::fs::read(w.root.join("b")).unwrap(), b"A");
    assert!(w.undo(&r.action_id).is_ok());
    assert_eq!(std::fs::read(w.root.join("a")).unwrap(), b"A");
    assert_eq!(mode(&w.root.join("a")), 0o640);
    assert_eq!(std::fs::read(w.root.join("b")).unwrap(), b"B");
    assert_eq!(mode(&w.root.join("b")), 0o604);
}

#[test]
fn undo_after_a_later_change_refuses_and_touches_nothing() {
    let w = world();
    // write, then someone edits the file
    std::fs::write(w.root.join("f"), "v1").unwrap();
    let r = w.call("fs.write", json!({"path": w.p("f"), "content": "v2"}));
    std::fs::write(w.root.join("f"), "v3 by someone else").unwrap();
    let u = w.undo(&r.action_id);
    let err = u.error.expect("undo must refuse");
    assert_eq!(err.code, "conflict");
    assert!(err.message.contains("changed since"), "{}", err.message);
    assert_eq!(
        std::fs::read_to_string(w.root.join("f")).unwrap(),
        "v3 by someone else"
    );

    // a mode-only change counts too
    let r = w.call("fs.write", json!({"path": w.p("f"), "content": "v4"}));
    std::fs::set_permissions(w.root.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(w.undo(&r.action_id).error.unwrap().code, "conflict");

    // delete, then something new appears at the path
    let r = w.call("fs.delete", json!({"path": w.p("f")}));
    std::fs::write(w.root.join("f"), "newer").unwrap();
    assert_eq!(w.undo(&r.action_id).error.unwrap().code, "conflict");
    assert_eq!(std::fs::read_to_string(w.root.join("f")).unwrap(), "newer");

    // move, then the moved file is edited
    let r = w.call("fs.move", json!({"from": w.p("f"), "to": w.p("g")}));
    std::fs::write(w.root.join("g"), "edited").unwrap();
    assert_eq!(w.undo(&r.action_id).error.unwrap().code, "conflict");
    assert!(!w.root.join("f").exists());

    // ...and once the conflict is gone (the edit reverted), the undo works after all
    std::fs::write(w.root.join("g"), "newer").unwrap();
    assert!(w.undo(&r.action_id).is_ok());
    assert_eq!(std::fs::read_to_string(w.root.join("f")).unwrap(), "newer");
}

#[test]
fn bad_arguments_fail_before_any_decision_naming_the_field() {
    let w = world();
    let before = w.kernel.audit().len();
    let cases = [
        (json!({}), "path"),
        (json!({"path": 7}), "path"),
        (json!({"path": "/x", "max_bytes": "lots"}), "max_bytes"),
        (json!({"path": "/x", "colour": "red"}), "colour"),
        (json!({"path": "relative/x"}), "absolute"),
    ];
    for (args, needle) in cases {
        match w.call_as(OWNER, "fs.read", args.clone()) {
            Err(ToolError::InvalidArgs(m)) => assert!(m.contains(needle), "{args}: {m}"),
            other => panic!("{args}: expected invalid args, got {other:?}"),
        }
    }
    match w.call_as(
        OWNER,
        "fs.write",
        json!({"path": "/x", "content": "", "mode": "rw-r--r--"}),
    ) {
        Err(ToolError::InvalidArgs(m)) => assert!(m.contains("mode"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w.call_as(OWNER, "fs.nope", json!({})),
        Err(ToolError::UnknownTool(_))
    ));
    assert_eq!(
        w.kernel.audit().len(),
        before,
        "nothing may be decided for bad input"
    );
}

#[test]
fn a_device_needs_a_grant_and_cannot_leave_it() {
    let w = world();
    let granted = w.root.join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("ok.txt"), "inside").unwrap();
    std::fs::create_dir(w.root.join(".ssh")).unwrap();
    std::fs::write(w.root.join(".ssh/id_rsa"), "PRIVATE KEY").unwrap();
    std::os::unix::fs::symlink(w.root.join(".ssh/id_rsa"), granted.join("sneaky")).unwrap();
    std::fs::hard_link(w.root.join(".ssh/id_rsa"), granted.join("hard")).unwrap();

    let before = w.kernel.audit().len();
    let r = w
        .call_as(device(), "fs.read", json!({"path": w.p("granted/ok.txt")}))
        .unwrap();
    assert_eq!(r.decision.outcome, Outcome::Deny);
    assert_eq!(r.error.as_ref().unwrap().code, "denied");
    assert!(r.output.is_none());
    assert_eq!(
        w.kernel.audit().len(),
        before + 1,
        "one decision entry for the denial"
    );

    w.grant(
        &device(),
        &["fs.read"],
        &[format!("path:{}/**", granted.display())],
    );
    let r = w
        .call_as(device(), "fs.read", json!({"path": w.p("granted/ok.txt")}))
        .unwrap();
    assert_eq!(r.output.unwrap()["content"], "inside");

    let escapes = [
        w.p("granted/../.ssh/id_rsa"),
        w.p("granted/sneaky"),
        w.p(".ssh/id_rsa"),
    ];
    for path in escapes {
        let r = w
            .call_as(device(), "fs.read", json!({"path": path}))
            .unwrap();
        assert_eq!(r.decision.outcome, Outcome::Deny, "{path}: {r:?}");
        assert!(r.output.is_none());
    }
    let r = w
        .call_as(device(), "fs.read", json!({"path": w.p("granted/hard")}))
        .unwrap();
    let err = r.error.unwrap();
    assert!(err.message.contains("hard links"), "{}", err.message);

    // The grant reads; it does not write.
    let r = w
        .call_as(
            device(),
            "fs.write",
            json!({"path": w.p("granted/ok.txt"), "content": "x"}),
        )
        .unwrap();
    assert_eq!(r.decision.outcome, Outcome::Deny);
    assert_eq!(
        std::fs::read_to_string(granted.join("ok.txt")).unwrap(),
        "inside"
    );
}

#[test]
fn only_the_caller_or_the_owner_may_undo() {
    let w = world();
    let dir = w.root.join("d");
    std::fs::create_dir(&dir).unwrap();
    w.grant(
        &device(),
        &["fs.write"],
        &[format!("path:{}/**", dir.display())],
    );
    let r = w
        .call_as(
            device(),
            "fs.write",
            json!({"path": w.p("d/x"), "content": "1"}),
        )
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    let other = Principal::Token {
        id: "tok_other".into(),
        name: "other".into(),
    };
    let e = w.tools.undo(
        &w.kernel,
        &other,
        &r.action_id,
        "undo",
        IntentSource::Untrusted("t".into()),
    );
    assert!(matches!(e, Err(ToolError::Failed(m)) if m.contains("only")));
    // The caller itself still needs the broker's allow for tool.undo.
    let u = w
        .tools
        .undo(
            &w.kernel,
            &device(),
            &r.action_id,
            "undo",
            IntentSource::Untrusted("t".into()),
        )
        .unwrap();
    assert_eq!(u.decision.outcome, Outcome::Deny);
    assert!(w.undo(&r.action_id).is_ok());
    assert!(!dir.join("x").exists());
}

#[test]
fn list_shows_kinds_and_truncates() {
    let w = world();
    std::fs::create_dir(w.root.join("sub")).unwrap();
    std::fs::write(w.root.join("sub/a"), "aa").unwrap();
    std::fs::write(w.root.join("b"), "b").unwrap();
    let r = w.call("fs.list", json!({"path": w.p(""), "recursive": true}));
    let out = r.output.unwrap();
    let names: Vec<&str> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "sub", "sub/a"]);
    let r = w.call(
        "fs.list",
        json!({"path": w.p(""), "recursive": true, "max_entries": 1}),
    );
    assert_eq!(r.output.unwrap()["truncated"], true);
}

#[test]
fn grants_through_tools_are_undoable_and_owner_only() {
    let w = world();
    let r = w.call(
        "sec.grant",
        json!({"principal": device().id(), "actions": ["fs.read"], "resources": [format!("path:{}/**", w.root.display())]}),
    );
    let id = r.output.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(w.root.join("f"), "x").unwrap();
    assert!(
        w.call_as(device(), "fs.read", json!({"path": w.p("f")}))
            .unwrap()
            .is_ok()
    );
    assert!(w.undo(&r.action_id).is_ok());
    assert_eq!(
        w.call_as(device(), "fs.read", json!({"path": w.p("f")}))
            .unwrap()
            .decision
            .outcome,
        Outcome::Deny
    );

    // Revoke, undo: the same grant is live again.
    let u = w.call(
        "sec.grant",
        json!({"principal": device().id(), "actions": ["fs.read"], "resources": ["**"]}),
    );
    let id2 = u.output.unwrap()["id"].as_str().unwrap().to_string();
    let rv = w.call("sec.revoke", json!({"id": id2}));
    assert!(w.undo(&rv.action_id).is_ok());
    assert!(
        w.kernel
            .broker()
            .grants()
            .get(&id2)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        w.kernel
            .broker()
            .grants()
            .get(&id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // A device holding a grant for everything still cannot grant (consent is the owner's).
    w.grant(&device(), &[">"], &["**".to_string()]);
    let r = w
        .call_as(
            device(),
            "sec.grant",
            json!({"principal": device().id(), "actions": ["**"], "resources": ["**"]}),
        )
        .unwrap();
    assert_eq!(r.decision.outcome, Outcome::Deny, "{r:?}");

    let audit = w.call("sec.audit", json!({"request_id": rv.action_id}));
    let entries = audit.output.unwrap()["entries"].as_array().unwrap().len();
    assert_eq!(entries, 2, "the revoke's decision and outcome");
}
