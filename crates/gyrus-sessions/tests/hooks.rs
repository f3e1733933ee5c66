//! Every fixture under `tests/fixtures/{claude,codex,gemini}` parses into the expected
//! canonical event, and replies render in each client's documented output format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use gyrus_sessions::Client;
use gyrus_sessions::hooks::{
    HookEvent, HookInput, HookReply, Rendered, Verdict, parse, render, render_unavailable,
};
use pretty_assertions::assert_eq;
use serde::Deserialize;
use serde_json::Value;

const CWD: &str = "/work/repo";
const SESSION: &str = "5f1c9a2e-0b7d-4c1e-9f0a-3d2b1c4e5f60";

fn fixture(dir: &str, name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("__CWD__", CWD)
        .replace("__SESSION__", SESSION)
}

fn load(client: Client, dir: &str, name: &str) -> HookInput {
    let input = parse(client, &fixture(dir, name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
    assert_eq!(input.client, client);
    assert_eq!(input.client_session_id, SESSION, "{dir}/{name}");
    assert_eq!(input.cwd, CWD, "{dir}/{name}");
    input
}

fn at(path: &str) -> String {
    format!("{CWD}/{path}")
}

fn pre(tool: &str, paths: &[&str], edits: bool) -> HookEvent {
    HookEvent::PreTool {
        tool: tool.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        edits,
    }
}

fn post(tool: &str, paths: &[&str], edits: bool) -> HookEvent {
    HookEvent::PostTool {
        tool: tool.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        edits,
    }
}

#[test]
fn claude_fixtures() {
    let c = Client::ClaudeCode;
    let cases: Vec<(&str, &str, HookEvent)> = vec![
        (
            "SessionStart.json",
            "SessionStart",
            HookEvent::Start {
                source: Some("startup".into()),
            },
        ),
        (
            "UserPromptSubmit.json",
            "UserPromptSubmit",
            HookEvent::Prompt {
                prompt: "Refactor the session store to use one transaction per claim".into(),
            },
        ),
        (
            "PreToolUse-Edit.json",
            "PreToolUse",
            pre("Edit", &[&at("src/lib.rs")], true),
        ),
        (
            "PreToolUse-Write.json",
            "PreToolUse",
            pre("Write", &[&at("docs/sessions.md")], true),
        ),
        (
            "PreToolUse-MultiEdit.json",
            "PreToolUse",
            pre("MultiEdit", &[&at("src/store.rs")], true),
        ),
        (
            "PreToolUse-NotebookEdit.json",
            "PreToolUse",
            pre("NotebookEdit", &[&at("analysis.ipynb")], true),
        ),
        (
            "PreToolUse-Bash.json",
            "PreToolUse",
            pre("Bash", &[], false),
        ),
        (
            "PostToolUse.json",
            "PostToolUse",
            post("Write", &[&at("docs/sessions.md")], true),
        ),
        ("Stop.json", "Stop", HookEvent::Stop),
        (
            "SessionEnd.json",
            "SessionEnd",
            HookEvent::End {
                reason: Some("prompt_input_exit".into()),
            },
        ),
    ];
    for (file, event_name, event) in cases {
        let input = load(c, "claude", file);
        assert_eq!(input.event_name, event_name, "{file}");
        assert_eq!(input.event, event, "{file}");
    }
}

#[test]
fn codex_fixtures() {
    let c = Client::Codex;
    let two = ["src/lib.rs", "src/tools.rs"];
    let cases: Vec<(&str, &str, HookEvent)> = vec![
        (
            "SessionStart.json",
            "SessionStart",
            HookEvent::Start {
                source: Some("startup".into()),
            },
        ),
        (
            "UserPromptSubmit.json",
            "UserPromptSubmit",
            HookEvent::Prompt {
                prompt: "Add a tools module and export it from lib.rs".into(),
            },
        ),
        (
            "PreToolUse-apply_patch.json",
            "PreToolUse",
            pre("apply_patch", &two, true),
        ),
        (
            "PreToolUse-apply_patch-delete-move.json",
            "PreToolUse",
            pre(
                "apply_patch",
                &[
                    "docs/old-notes.md",
                    &at("src/manager.rs"),
                    &at("src/daemon.rs"),
                ],
                true,
            ),
        ),
        (
            "PreToolUse-Bash.json",
            "PreToolUse",
            pre("Bash", &[], false),
        ),
        (
            "PreToolUse-Bash-apply_patch.json",
            "PreToolUse",
            pre("Bash", &two, true),
        ),
        (
            "PostToolUse-apply_patch.json",
            "PostToolUse",
            post("apply_patch", &two, true),
        ),
        ("Stop.json", "Stop", HookEvent::Stop),
        (
            "SessionEnd.json",
            "SessionEnd",
            HookEvent::End {
                reason: Some("other".into()),
            },
        ),
    ];
    for (file, event_name, event) in cases {
        let input = load(c, "codex", file);
        assert_eq!(input.event_name, event_name, "{file}");
        assert_eq!(input.event, event, "{file}");
    }
}

#[test]
fn codex_apply_patch_gives_exactly_its_two_paths() {
    let input = load(Client::Codex, "codex", "PreToolUse-apply_patch.json");
    let HookEvent::PreTool { paths, .. } = input.event else {
        panic!("{:?}", input.event);
    };
    assert_eq!(
        paths,
        vec!["src/lib.rs".to_string(), "src/tools.rs".to_string()]
    );
}

#[test]
fn gemini_fixtures() {
    let c = Client::Gemini;
    let cases: Vec<(&str, &str, HookEvent)> = vec![
        (
            "SessionStart.json",
            "SessionStart",
            HookEvent::Start {
                source: Some("startup".into()),
            },
        ),
        (
            "BeforeAgent.json",
            "BeforeAgent",
            HookEvent::Prompt {
                prompt: "Fix the lease renewal bug".into(),
            },
        ),
        (
            "BeforeTool-write_file.json",
            "BeforeTool",
            pre("write_file", &[&at("src/lib.rs")], true),
        ),
        (
            "BeforeTool-replace.json",
            "BeforeTool",
            pre("replace", &[&at("src/store.rs")], true),
        ),
        (
            "BeforeTool-run_shell_command.json",
            "BeforeTool",
            pre("run_shell_command", &[], false),
        ),
        (
            "AfterTool.json",
            "AfterTool",
            post("replace", &[&at("src/store.rs")], true),
        ),
        ("AfterAgent.json", "AfterAgent", HookEvent::Stop),
        (
            "SessionEnd.json",
            "SessionEnd",
            HookEvent::End {
                reason: Some("exit".into()),
            },
        ),
    ];
    for (file, event_name, event) in cases {
        let input = load(c, "gemini", file);
        assert_eq!(input.event_name, event_name, "{file}");
        assert_eq!(input.event, event, "{file}");
    }
}

#[test]
fn parse_errors() {
    assert!(parse(Client::ClaudeCode, "not json").is_err());
    assert!(parse(Client::ClaudeCode, "[1]").is_err());
    let no_session = r#"{"cwd": "/r", "hook_event_name": "Stop"}"#;
    let e = parse(Client::ClaudeCode, no_session)
        .unwrap_err()
        .to_string();
    assert!(e.contains("session_id"), "{e}");
    // Gemini's name for a Claude event is not a Claude event.
    let wrong = r#"{"session_id": "s", "cwd": "/r", "hook_event_name": "BeforeTool"}"#;
    let e = parse(Client::ClaudeCode, wrong).unwrap_err().to_string();
    assert!(e.contains("BeforeTool"), "{e}");
    assert!(parse(Client::Aider, &fixture("claude", "Stop.json")).is_err());
    assert!(parse(Client::Other, &fixture("claude", "Stop.json")).is_err());
}

/// Claude Code's documented PreToolUse output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaudePreToolOutput {
    #[serde(rename = "hookSpecificOutput")]
    specific: ClaudePreToolSpecific,
    #[serde(rename = "systemMessage")]
    system_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaudePreToolSpecific {
    hook_event_name: String,
    permission_decision: Option<String>,
    permission_decision_reason: Option<String>,
    additional_context: Option<String>,
}

/// Gemini CLI's documented BeforeTool output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeminiBeforeToolOutput {
    decision: Option<String>,
    reason: Option<String>,
    #[serde(rename = "systemMessage")]
    system_message: Option<String>,
}

fn deny() -> HookReply {
    HookReply::deny("src/lib.rs is held by ses_2 (codex) until 10:42")
}

fn ask() -> HookReply {
    HookReply::ask("ses_2 (codex) is editing src/lib.rs")
}

fn allow_with_context() -> HookReply {
    HookReply {
        verdict: Verdict::Allow,
        context: Some("gyrus: ses_2 (codex) works on src/store.rs".into()),
        ..HookReply::default()
    }
}

fn json(r: &Rendered) -> Value {
    assert_eq!(r.exit_code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", r.stdout))
}

#[test]
fn claude_pre_tool_use_renders_documented_json() {
    let input = load(Client::ClaudeCode, "claude", "PreToolUse-Edit.json");

    let out: ClaudePreToolOutput = serde_json::from_value(json(&render(&input, &deny()))).unwrap();
    assert_eq!(out.specific.hook_event_name, "PreToolUse");
    assert_eq!(out.specific.permission_decision.as_deref(), Some("deny"));
    assert_eq!(
        out.specific.permission_decision_reason.as_deref(),
        Some("src/lib.rs is held by ses_2 (codex) until 10:42")
    );

    let out: ClaudePreToolOutput = serde_json::from_value(json(&render(&input, &ask()))).unwrap();
    assert_eq!(out.specific.permission_decision.as_deref(), Some("ask"));
    assert!(out.specific.permission_decision_reason.is_some());

    let rendered = render(&input, &allow_with_context());
    let out: ClaudePreToolOutput = serde_json::from_value(json(&rendered)).unwrap();
    assert_eq!(
        out.specific.permission_decision, None,
        "allow must not skip the prompt"
    );
    assert_eq!(
        out.specific.additional_context.as_deref(),
        Some("gyrus: ses_2 (codex) works on src/store.rs")
    );
    assert_eq!(out.system_message, None);

    // Allow with nothing to say: empty stdout, exit 0.
    assert_eq!(render(&input, &HookReply::allow()), Rendered::default());
}

#[test]
fn codex_pre_tool_use_renders_documented_json() {
    let input = load(Client::Codex, "codex", "PreToolUse-apply_patch.json");

    let out: ClaudePreToolOutput = serde_json::from_value(json(&render(&input, &deny()))).unwrap();
    assert_eq!(out.specific.hook_event_name, "PreToolUse");
    assert_eq!(out.specific.permission_decision.as_deref(), Some("deny"));
    assert!(
        !out.specific
            .permission_decision_reason
            .unwrap()
            .trim()
            .is_empty()
    );

    // Codex rejects "ask": it becomes a deny that tells the model to ask.
    let out: ClaudePreToolOutput = serde_json::from_value(json(&render(&input, &ask()))).unwrap();
    assert_eq!(out.specific.permission_decision.as_deref(), Some("deny"));
    let reason = out.specific.permission_decision_reason.unwrap();
    assert!(
        reason.contains("ses_2 (codex) is editing src/lib.rs"),
        "{reason}"
    );
    assert!(reason.contains("ask the user"), "{reason}");

    // Context with a deny travels in the reason, never beside it.
    let reply = HookReply {
        context: Some("board: ses_2 owns src/**".into()),
        ..deny()
    };
    let out: ClaudePreToolOutput = serde_json::from_value(json(&render(&input, &reply))).unwrap();
    assert_eq!(out.specific.additional_context, None);
    assert!(
        out.specific
            .permission_decision_reason
            .unwrap()
            .contains("board: ses_2 owns src/**")
    );

    let out: ClaudePreToolOutput =
        serde_json::from_value(json(&render(&input, &allow_with_context()))).unwrap();
    assert_eq!(out.specific.permission_decision, None);
    assert!(out.specific.additional_context.is_some());

    assert_eq!(render(&input, &HookReply::allow()), Rendered::default());
}

#[test]
fn gemini_before_tool_renders_documented_json() {
    for file in ["BeforeTool-write_file.json", "BeforeTool-replace.json"] {
        let input = load(Client::Gemini, "gemini", file);

        let out: GeminiBeforeToolOutput =
            serde_json::from_value(json(&render(&input, &deny()))).unwrap();
        assert_eq!(out.decision.as_deref(), Some("deny"));
        assert_eq!(
            out.reason.as_deref(),
            Some("src/lib.rs is held by ses_2 (codex) until 10:42")
        );

        let out: GeminiBeforeToolOutput =
            serde_json::from_value(json(&render(&input, &ask()))).unwrap();
        assert_eq!(out.decision.as_deref(), Some("deny"));
        assert!(out.reason.unwrap().contains("ses_2 (codex) is editing"));

        // BeforeTool has no context injection: the allow stays an empty JSON object.
        let rendered = render(&input, &allow_with_context());
        assert_eq!(json(&rendered), serde_json::json!({}));
        assert_eq!(rendered.stdout, "{}\n");
        let out: GeminiBeforeToolOutput = serde_json::from_value(json(&rendered)).unwrap();
        assert_eq!(
            (out.decision, out.reason, out.system_message),
            (None, None, None)
        );
    }
}

#[test]
fn context_on_the_events_that_inject_it() {
    let reply = allow_with_context();
    for (client, dir, file) in [
        (Client::ClaudeCode, "claude", "SessionStart.json"),
        (Client::ClaudeCode, "claude", "UserPromptSubmit.json"),
        (Client::ClaudeCode, "claude", "PostToolUse.json"),
        (Client::Codex, "codex", "SessionStart.json"),
        (Client::Codex, "codex", "UserPromptSubmit.json"),
        (Client::Codex, "codex", "PostToolUse-apply_patch.json"),
        (Client::Gemini, "gemini", "SessionStart.json"),
        (Client::Gemini, "gemini", "BeforeAgent.json"),
        (Client::Gemini, "gemini", "AfterTool.json"),
    ] {
        let input = load(client, dir, file);
        let out = json(&render(&input, &reply));
        assert_eq!(
            out["hookSpecificOutput"]["hookEventName"],
            Value::from(input.event_name.as_str()),
            "{dir}/{file}"
        );
        assert_eq!(
            out["hookSpecificOutput"]["additionalContext"],
            Value::from("gyrus: ses_2 (codex) works on src/store.rs"),
            "{dir}/{file}"
        );
    }
    for (client, dir, file) in [
        (Client::ClaudeCode, "claude", "Stop.json"),
        (Client::ClaudeCode, "claude", "SessionEnd.json"),
        (Client::Codex, "codex", "Stop.json"),
        (Client::Codex, "codex", "SessionEnd.json"),
        (Client::Gemini, "gemini", "AfterAgent.json"),
        (Client::Gemini, "gemini", "SessionEnd.json"),
    ] {
        let input = load(client, dir, file);
        let rendered = render(&input, &reply);
        assert_eq!(rendered.exit_code, 0);
        assert!(
            !rendered.stdout.contains("works on"),
            "{dir}/{file}: {rendered:?}"
        );
    }
}

#[test]
fn prompt_deny_uses_the_block_decision() {
    let claude = load(Client::ClaudeCode, "claude", "UserPromptSubmit.json");
    let out = json(&render(&claude, &HookReply::deny("no")));
    assert_eq!(
        (out["decision"].as_str(), out["reason"].as_str()),
        (Some("block"), Some("no"))
    );
    let gemini = load(Client::Gemini, "gemini", "BeforeAgent.json");
    let out = json(&render(&gemini, &HookReply::deny("no")));
    assert_eq!(
        (out["decision"].as_str(), out["reason"].as_str()),
        (Some("deny"), Some("no"))
    );
}

#[test]
fn unavailable_daemon() {
    let message = "gyrus: the daemon is not running; sessions are not coordinated";
    for (client, event) in [
        (Client::ClaudeCode, "PreToolUse"),
        (Client::Codex, "PreToolUse"),
        (Client::Gemini, "BeforeTool"),
    ] {
        let lax = render_unavailable(client, Some(event), false, message);
        assert_eq!(lax.exit_code, 0, "{client:?}");
        let out = json(&lax);
        assert_eq!(out["systemMessage"], Value::from(message), "{client:?}");
        assert!(out.get("decision").is_none() && out.get("hookSpecificOutput").is_none());
        assert!(lax.stderr.contains(message));

        let strict = render_unavailable(client, Some(event), true, message);
        let out = json(&strict);
        let decision = out["hookSpecificOutput"]["permissionDecision"]
            .as_str()
            .or(out["decision"].as_str());
        assert_eq!(decision, Some("deny"), "{client:?}: {out}");

        // Without a readable event, strict falls back to exit 2 and stderr.
        let blind = render_unavailable(client, None, true, message);
        assert_eq!(blind.exit_code, 2);
        assert!(blind.stderr.contains(message));
        let blind = render_unavailable(client, None, false, message);
        assert_eq!(blind.exit_code, 0);
    }
    // A stop is never blocked: that would keep the model going without end.
    let stop = render_unavailable(Client::ClaudeCode, Some("Stop"), true, message);
    assert_eq!(json(&stop), serde_json::json!({ "systemMessage": message }));
}
