//! Each client's hook JSON in, canonical [`HookEvent`]s out, and [`HookReply`] rendered back
//! in the client's format and exit-code convention (pure: no I/O).
//!
//! The `gyrus hook <client>` process reads the client's JSON from stdin, [`parse`]s it, asks
//! the daemon for a [`HookReply`] and prints [`render`]'s [`Rendered`]. When the daemon can't
//! be reached it prints [`render_unavailable`] instead.
//!
//! What each client documents (the fixtures' READMEs under `tests/fixtures/` cite the pages):
//!
//! | | Claude Code | Codex CLI | Gemini CLI |
//! |---|---|---|---|
//! | events used | `SessionStart`, `UserPromptSubmit`, `PreToolUse`, `PostToolUse`, `Stop`, `SessionEnd` | the same six | `SessionStart`, `BeforeAgent`, `BeforeTool`, `AfterTool`, `AfterAgent`, `SessionEnd` |
//! | deny a tool | `hookSpecificOutput.permissionDecision: "deny"` + `permissionDecisionReason` | the same (`"ask"` is rejected, so ask is sent as deny) | `decision: "deny"` + `reason` (ask is sent as deny) |
//! | model context | `hookSpecificOutput.additionalContext` on `SessionStart`, `UserPromptSubmit`, `PreToolUse`, `PostToolUse` | the same four | on `SessionStart`, `BeforeAgent`, `AfterTool` |
//! | user warning | `systemMessage` | `systemMessage` | `systemMessage` |
//! | nothing to say | empty stdout | empty stdout | `{}` |
//!
//! Every reply exits 0 with JSON on stdout; exit code 2 with the reason on stderr (the one
//! blocking convention all three share) is used only by [`render_unavailable`] in strict
//! mode when the event is not known.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::Client;
use crate::patch;

/// One hook call, whatever client made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookInput {
    /// The client that called.
    pub client: Client,
    /// The client's own session id (`session_id` in all three clients' JSON).
    pub client_session_id: String,
    /// The session's working directory, as the client gave it.
    pub cwd: String,
    /// The client's own name for the event, e.g. `PreToolUse` or `BeforeTool`; [`render`]
    /// answers in that event's format.
    pub event_name: String,
    /// What happened.
    pub event: HookEvent,
}

/// What happened, in gyrus's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HookEvent {
    /// A session started, resumed, was cleared or compacted.
    Start {
        /// `startup`, `resume`, `clear`, `compact`, as the client says.
        source: Option<String>,
    },
    /// The user submitted a prompt.
    Prompt {
        /// Its text.
        prompt: String,
    },
    /// A tool is about to run.
    PreTool {
        /// The client's tool name (`Edit`, `apply_patch`, `Bash`, `write_file`, …).
        tool: String,
        /// The files it names, as the client gave them (absolute, or relative to `cwd`).
        paths: Vec<String>,
        /// True when the tool writes those files.
        edits: bool,
    },
    /// A tool has run.
    PostTool {
        /// The client's tool name.
        tool: String,
        /// The files it named.
        paths: Vec<String>,
        /// True when the tool wrote those files.
        edits: bool,
    },
    /// The model finished its turn.
    Stop,
    /// The session ended.
    End {
        /// Why, as the client says (`exit`, `clear`, `logout`, `prompt_input_exit`, `other`).
        reason: Option<String>,
    },
    /// An event gyrus has nothing to do for; answered with an empty success.
    Other,
}

/// gyrus's answer on a tool call (and, where a client supports it, on a prompt or a stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing against it: the client's own permission flow goes on as usual.
    #[default]
    Allow,
    /// Refuse, with a reason the model reads.
    Deny,
    /// Ask the user to confirm. Clients without an ask form get a deny whose reason says so.
    Ask,
}

impl Verdict {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Ask => "ask",
        }
    }
}

/// What the daemon answers to one [`HookInput`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HookReply {
    /// Allow, deny or ask.
    pub verdict: Verdict,
    /// Why (read by the model on a deny, by the user on an ask).
    pub reason: Option<String>,
    /// Text to inject into the model's context, where the event supports it.
    pub context: Option<String>,
    /// One line for the user.
    pub warning: Option<String>,
}

impl HookReply {
    /// Allow with nothing to say.
    pub fn allow() -> HookReply {
        HookReply::default()
    }

    /// Deny with a reason.
    pub fn deny(reason: impl Into<String>) -> HookReply {
        HookReply {
            verdict: Verdict::Deny,
            reason: Some(reason.into()),
            ..HookReply::default()
        }
    }

    /// Ask the user, with a reason.
    pub fn ask(reason: impl Into<String>) -> HookReply {
        HookReply {
            verdict: Verdict::Ask,
            reason: Some(reason.into()),
            ..HookReply::default()
        }
    }
}

/// What the hook process prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rendered {
    /// Standard output (JSON, or empty).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The exit code.
    pub exit_code: i32,
}

/// Why a client's hook JSON could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The client has no hooks (Aider, other): it registers through `gyrus session wrap` or MCP.
    #[error("{} has no hooks; run it through `gyrus session wrap` or register it over MCP", .0.as_str())]
    NoHooks(Client),
    /// Not JSON, or not a JSON object.
    #[error("the {client} hook input is not a JSON object: {detail}", client = .client.as_str())]
    Json {
        /// The client.
        client: Client,
        /// What the parser said.
        detail: String,
    },
    /// A field every hook call carries is missing or empty.
    #[error("the {client} hook input has no `{field}`", client = .client.as_str())]
    Missing {
        /// The client.
        client: Client,
        /// The field, e.g. `session_id`.
        field: &'static str,
    },
    /// An event name this client does not send.
    #[error("{client} has no hook event {event:?}", client = .client.as_str())]
    UnknownEvent {
        /// The client.
        client: Client,
        /// The name it gave.
        event: String,
    },
}

/// The canonical shape of a client event name, shared by [`parse`] and [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Prompt,
    PreTool,
    PostTool,
    Stop,
    End,
    Other,
}

/// Maps a client's event name to its kind; `None` for names the client does not send.
fn kind(client: Client, event: &str) -> Option<Kind> {
    use Kind::*;
    Some(match (client, event) {
        (Client::ClaudeCode | Client::Codex, "SessionStart") => Start,
        (Client::ClaudeCode | Client::Codex, "UserPromptSubmit") => Prompt,
        (Client::ClaudeCode | Client::Codex, "PreToolUse") => PreTool,
        (Client::ClaudeCode | Client::Codex, "PostToolUse") => PostTool,
        (Client::ClaudeCode, "PostToolUseFailure") => PostTool,
        (Client::ClaudeCode | Client::Codex, "Stop") => Stop,
        (Client::ClaudeCode | Client::Codex, "SessionEnd") => End,
        (
            Client::ClaudeCode,
            "Notification" | "PermissionRequest" | "PermissionDenied" | "SubagentStart"
            | "SubagentStop" | "PreCompact" | "PostCompact" | "Setup" | "ConfigChange"
            | "StopFailure" | "PostToolBatch",
        ) => Other,
        (
            Client::Codex,
            "PermissionRequest" | "PreCompact" | "PostCompact" | "SubagentStart" | "SubagentStop"
            | "StopFailure",
        ) => Other,
        (Client::Gemini, "SessionStart") => Start,
        (Client::Gemini, "BeforeAgent") => Prompt,
        (Client::Gemini, "BeforeTool") => PreTool,
        (Client::Gemini, "AfterTool") => PostTool,
        (Client::Gemini, "AfterAgent") => Stop,
        (Client::Gemini, "SessionEnd") => End,
        (
            Client::Gemini,
            "BeforeModel" | "AfterModel" | "BeforeToolSelection" | "PreCompress" | "Notification",
        ) => Other,
        _ => return None,
    })
}

/// Reads one hook call of `client` (its stdin JSON) into a [`HookInput`].
pub fn parse(client: Client, json: &str) -> Result<HookInput, HookError> {
    if matches!(client, Client::Aider | Client::Other) {
        return Err(HookError::NoHooks(client));
    }
    let value: Value = serde_json::from_str(json).map_err(|e| HookError::Json {
        client,
        detail: e.to_string(),
    })?;
    let Value::Object(object) = value else {
        return Err(HookError::Json {
            client,
            detail: "expected an object".to_string(),
        });
    };
    let required = |field: &'static str| {
        text(&object, field)
            .filter(|s| !s.is_empty())
            .ok_or(HookError::Missing { client, field })
    };
    let client_session_id = required("session_id")?;
    let event_name = required("hook_event_name")?;
    let cwd = required("cwd")?;
    let Some(kind) = kind(client, &event_name) else {
        return Err(HookError::UnknownEvent {
            client,
            event: event_name,
        });
    };
    let event = match kind {
        Kind::Start => HookEvent::Start {
            // Gemini's schema page once called it `trigger`; its types say `source`.
            source: text(&object, "source").or_else(|| text(&object, "trigger")),
        },
        Kind::Prompt => HookEvent::Prompt {
            prompt: text(&object, "prompt").unwrap_or_default(),
        },
        Kind::PreTool | Kind::PostTool => {
            let tool = text(&object, "tool_name").unwrap_or_default();
            let empty = Value::Null;
            let tool_input = object.get("tool_input").unwrap_or(&empty);
            let (paths, edits) = tool_paths(client, &tool, tool_input);
            if kind == Kind::PreTool {
                HookEvent::PreTool { tool, paths, edits }
            } else {
                HookEvent::PostTool { tool, paths, edits }
            }
        }
        Kind::Stop => HookEvent::Stop,
        Kind::End => HookEvent::End {
            reason: text(&object, "reason"),
        },
        Kind::Other => HookEvent::Other,
    };
    Ok(HookInput {
        client,
        client_session_id,
        cwd,
        event_name,
        event,
    })
}

fn text(object: &Map<String, Value>, field: &str) -> Option<String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Claude Code's file-writing tools.
const CLAUDE_EDIT_TOOLS: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];
/// Gemini CLI's file-writing tools (`replace` is its edit tool; `edit` is accepted for forks
/// and renames).
const GEMINI_EDIT_TOOLS: &[&str] = &["write_file", "replace", "edit"];
/// Codex's shell tools, as hooks name them (`Bash`) and as older releases did.
const CODEX_SHELL_TOOLS: &[&str] = &[
    "Bash",
    "shell",
    "local_shell",
    "shell_command",
    "exec_command",
    "container.exec",
];

/// The files a tool call names and whether it writes them.
fn tool_paths(client: Client, tool: &str, input: &Value) -> (Vec<String>, bool) {
    let mut paths = Vec::new();
    let mut edits = false;
    match client {
        Client::Codex => {
            if tool == "apply_patch" {
                edits = true;
                if let Some(body) = ["command", "patch", "input"]
                    .iter()
                    .find_map(|key| input.get(key).and_then(Value::as_str))
                {
                    paths = patch_paths(patch::paths(body).ok(), body);
                }
            } else if CODEX_SHELL_TOOLS.contains(&tool) {
                let found = match input.get("command") {
                    Some(Value::String(command)) => {
                        patch::paths_in_command(command).map(|r| (r, command.clone()))
                    }
                    Some(Value::Array(argv)) => {
                        let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                        patch::paths_in_argv(&argv).map(|r| (r, argv.join("\n")))
                    }
                    _ => None,
                };
                if let Some((result, text)) = found {
                    edits = true;
                    paths = patch_paths(result.ok(), &text);
                }
            }
        }
        Client::ClaudeCode => edits = CLAUDE_EDIT_TOOLS.contains(&tool),
        Client::Gemini => edits = GEMINI_EDIT_TOOLS.contains(&tool),
        Client::Aider | Client::Other => {}
    }
    if paths.is_empty() {
        for key in ["file_path", "notebook_path", "absolute_path"] {
            if let Some(path) = input.get(key).and_then(Value::as_str) {
                push_unique(&mut paths, path);
            }
        }
        // Gemini's older `write_file` / `replace` called it `path`; only trust it on edits.
        if paths.is_empty()
            && edits
            && let Some(path) = input.get("path").and_then(Value::as_str)
        {
            push_unique(&mut paths, path);
        }
    }
    (paths, edits)
}

/// The unique paths of a parsed patch; when the patch would not parse, the file headers it
/// still names (Codex will refuse the patch itself, but the intent is worth reporting).
fn patch_paths(parsed: Option<Vec<patch::PatchPath>>, text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    match parsed {
        Some(list) => {
            for entry in list {
                push_unique(&mut paths, &entry.path);
            }
        }
        None => {
            for line in text.lines() {
                let line = line.trim();
                for header in [
                    "*** Add File:",
                    "*** Update File:",
                    "*** Delete File:",
                    "*** Move to:",
                ] {
                    if let Some(path) = line.strip_prefix(header) {
                        let path = path.trim();
                        if !path.is_empty() {
                            push_unique(&mut paths, path);
                        }
                    }
                }
            }
        }
    }
    paths
}

fn push_unique(paths: &mut Vec<String>, path: &str) {
    if !paths.iter().any(|p| p == path) {
        paths.push(path.to_string());
    }
}

const DEFAULT_DENY: &str = "gyrus refused this tool call";
const DEFAULT_ASK: &str = "gyrus asks the user to confirm this tool call";

/// Renders `reply` for `input` in the client's format and exit-code convention.
///
/// Context is emitted only on events where the client injects it into the model's context;
/// elsewhere it is folded into a deny's reason or dropped. An allow never says `"allow"`: that
/// would skip the client's own permission prompt.
pub fn render(input: &HookInput, reply: &HookReply) -> Rendered {
    let kind = kind(input.client, &input.event_name).unwrap_or(Kind::Other);
    render_kind(input.client, &input.event_name, kind, reply)
}

/// What the hook answers when the daemon can't be reached: non-strict → allow/continue with
/// `message` as a one-line warning (`systemMessage` and stderr, exit 0); strict → block in the
/// client's convention: a deny on tool and prompt events, exit code 2 with `message` on stderr
/// when the event is unknown. Session start, stop and end events are never blocked, strict or
/// not: blocking a stop would keep the model working without end.
pub fn render_unavailable(
    client: Client,
    event_name: Option<&str>,
    strict: bool,
    message: &str,
) -> Rendered {
    let message = one_line(message);
    let known = event_name.and_then(|name| kind(client, name).map(|k| (name, k)));
    match known {
        Some((name, kind @ (Kind::PreTool | Kind::Prompt))) if strict => {
            let mut out = render_kind(client, name, kind, &HookReply::deny(message.clone()));
            out.stderr = format!("{message}\n");
            out
        }
        None if strict => Rendered {
            stdout: String::new(),
            stderr: format!("{message}\n"),
            exit_code: 2,
        },
        Some((name, kind)) => {
            let reply = HookReply {
                warning: Some(message.clone()),
                ..HookReply::default()
            };
            let mut out = render_kind(client, name, kind, &reply);
            out.stderr = format!("{message}\n");
            out
        }
        None => {
            let stdout = if matches!(client, Client::ClaudeCode | Client::Codex | Client::Gemini) {
                to_json(&json!({ "systemMessage": message }))
            } else {
                String::new()
            };
            Rendered {
                stdout,
                stderr: format!("{message}\n"),
                exit_code: 0,
            }
        }
    }
}

fn render_kind(client: Client, event_name: &str, kind: Kind, reply: &HookReply) -> Rendered {
    let mut out = Map::new();
    match client {
        Client::ClaudeCode => claude(&mut out, event_name, kind, reply),
        Client::Codex => codex(&mut out, event_name, kind, reply),
        Client::Gemini => gemini(&mut out, event_name, kind, reply),
        Client::Aider | Client::Other => {}
    }
    if let Some(warning) = reply.warning.as_deref() {
        // Codex's SessionEnd is the one event whose output is not documented to be read.
        if !(client == Client::Codex && kind == Kind::End) {
            out.insert("systemMessage".into(), one_line(warning).into());
        }
    }
    let stdout = if out.is_empty() {
        // Gemini's docs want JSON (at least `{}`) on stdout of every successful hook.
        if client == Client::Gemini {
            "{}\n".to_string()
        } else {
            String::new()
        }
    } else {
        to_json(&Value::Object(out))
    };
    let stderr = match (client, kind, reply.warning.as_deref()) {
        (Client::Codex, Kind::End, Some(warning)) => format!("{}\n", one_line(warning)),
        _ => String::new(),
    };
    Rendered {
        stdout,
        stderr,
        exit_code: 0,
    }
}

/// Claude Code: `hookSpecificOutput` with `permissionDecision` on `PreToolUse` (allow is never
/// written), `decision: "block"` on `UserPromptSubmit`, `PostToolUse` and `Stop`,
/// `additionalContext` on `SessionStart`, `UserPromptSubmit`, `PreToolUse` and `PostToolUse`.
fn claude(out: &mut Map<String, Value>, event_name: &str, kind: Kind, reply: &HookReply) {
    let context = nonempty(&reply.context);
    match kind {
        Kind::PreTool => {
            let mut specific = Map::new();
            specific.insert("hookEventName".into(), event_name.into());
            match reply.verdict {
                Verdict::Allow => {}
                Verdict::Deny | Verdict::Ask => {
                    let (decision, default) = if reply.verdict == Verdict::Deny {
                        ("deny", DEFAULT_DENY)
                    } else {
                        ("ask", DEFAULT_ASK)
                    };
                    specific.insert("permissionDecision".into(), decision.into());
                    specific.insert(
                        "permissionDecisionReason".into(),
                        nonempty(&reply.reason).unwrap_or(default).into(),
                    );
                }
            }
            if let Some(context) = context {
                specific.insert("additionalContext".into(), context.into());
            }
            if specific.len() > 1 {
                out.insert("hookSpecificOutput".into(), specific.into());
            }
        }
        Kind::Prompt | Kind::PostTool | Kind::Stop => {
            block_or_context(out, event_name, kind != Kind::Stop, reply, "block");
        }
        Kind::Start => {
            if let Some(context) = context {
                out.insert("hookSpecificOutput".into(), specific(event_name, context));
            }
        }
        Kind::End | Kind::Other => {}
    }
}

/// Codex: Claude's shape, but `PreToolUse` rejects `permissionDecision: "ask"` (and `"allow"`
/// without `updatedInput`), so ask becomes a deny whose reason asks the model to get the user's
/// confirmation; a deny carries the context in its reason, since `additionalContext` next to
/// a deny is rejected by releases before 0.129 and a rejected output fails open.
fn codex(out: &mut Map<String, Value>, event_name: &str, kind: Kind, reply: &HookReply) {
    let context = nonempty(&reply.context);
    match kind {
        Kind::PreTool => {
            let mut specific = Map::new();
            specific.insert("hookEventName".into(), event_name.into());
            match reply.verdict {
                Verdict::Allow => {
                    if let Some(context) = context {
                        specific.insert("additionalContext".into(), context.into());
                    }
                }
                Verdict::Deny | Verdict::Ask => {
                    let mut reason = match reply.verdict {
                        Verdict::Ask => format!(
                            "{} Codex cannot ask from a hook, so the call was refused: ask the \
                             user whether to go ahead, and if they agree, tell gyrus before \
                             retrying (session.claim).",
                            nonempty(&reply.reason).unwrap_or(DEFAULT_ASK)
                        ),
                        _ => nonempty(&reply.reason).unwrap_or(DEFAULT_DENY).to_string(),
                    };
                    if let Some(context) = context {
                        reason.push_str("\n\n");
                        reason.push_str(context);
                    }
                    specific.insert("permissionDecision".into(), "deny".into());
                    specific.insert("permissionDecisionReason".into(), reason.into());
                }
            }
            if specific.len() > 1 {
                out.insert("hookSpecificOutput".into(), specific.into());
            }
        }
        Kind::Prompt | Kind::PostTool | Kind::Stop => {
            block_or_context(out, event_name, kind != Kind::Stop, reply, "block");
        }
        Kind::Start => {
            if let Some(context) = context {
                out.insert("hookSpecificOutput".into(), specific(event_name, context));
            }
        }
        Kind::End | Kind::Other => {}
    }
}

/// Gemini CLI: `decision: "deny"` + `reason` (there is no documented ask, so ask is a deny);
/// `additionalContext` on `SessionStart`, `BeforeAgent` and `AfterTool` only. On `BeforeTool`
/// context has nowhere to go but a deny's reason.
fn gemini(out: &mut Map<String, Value>, event_name: &str, kind: Kind, reply: &HookReply) {
    let context = nonempty(&reply.context);
    match kind {
        Kind::PreTool => match reply.verdict {
            Verdict::Allow => {}
            Verdict::Deny | Verdict::Ask => {
                let mut reason = match reply.verdict {
                    Verdict::Ask => format!(
                        "{} (Gemini CLI cannot ask from a hook, so the call was refused: ask the \
                         user whether to go ahead.)",
                        nonempty(&reply.reason).unwrap_or(DEFAULT_ASK)
                    ),
                    _ => nonempty(&reply.reason).unwrap_or(DEFAULT_DENY).to_string(),
                };
                if let Some(context) = context {
                    reason.push_str("\n\n");
                    reason.push_str(context);
                }
                out.insert("decision".into(), "deny".into());
                out.insert("reason".into(), reason.into());
            }
        },
        Kind::Prompt | Kind::PostTool | Kind::Stop => {
            block_or_context(out, event_name, kind != Kind::Stop, reply, "deny");
        }
        Kind::Start => {
            if let Some(context) = context {
                out.insert("hookSpecificOutput".into(), specific(event_name, context));
            }
        }
        Kind::End | Kind::Other => {}
    }
}

/// The events whose decision field blocks (`decision: block|deny` + `reason`) and which may
/// carry `hookSpecificOutput.additionalContext` (`with_context`). An ask has no form here: its
/// reason reaches the model as context (or the user as a warning where there is no context).
fn block_or_context(
    out: &mut Map<String, Value>,
    event_name: &str,
    with_context: bool,
    reply: &HookReply,
    block: &str,
) {
    let mut context = nonempty(&reply.context).map(str::to_string);
    match reply.verdict {
        Verdict::Deny => {
            out.insert("decision".into(), block.into());
            out.insert(
                "reason".into(),
                nonempty(&reply.reason).unwrap_or(DEFAULT_DENY).into(),
            );
        }
        Verdict::Ask => {
            if let Some(reason) = nonempty(&reply.reason) {
                if with_context {
                    context = Some(match context {
                        Some(c) => format!("{reason}\n\n{c}"),
                        None => reason.to_string(),
                    });
                } else if reply.warning.is_none() {
                    out.insert("systemMessage".into(), one_line(reason).into());
                }
            }
        }
        Verdict::Allow => {}
    }
    if with_context && let Some(context) = context {
        out.insert("hookSpecificOutput".into(), specific(event_name, &context));
    }
}

fn specific(event_name: &str, context: &str) -> Value {
    json!({ "hookEventName": event_name, "additionalContext": context })
}

fn nonempty(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn to_json(value: &Value) -> String {
    // Serializing a `Value` cannot fail; fall back to an empty object all the same.
    let mut text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn input(client: Client, event_name: &str, event: HookEvent) -> HookInput {
        HookInput {
            client,
            client_session_id: "s".into(),
            cwd: "/repo".into(),
            event_name: event_name.into(),
            event,
        }
    }

    fn pre(client: Client) -> HookInput {
        let name = if client == Client::Gemini {
            "BeforeTool"
        } else {
            "PreToolUse"
        };
        input(
            client,
            name,
            HookEvent::PreTool {
                tool: "Edit".into(),
                paths: vec!["/repo/a.rs".into()],
                edits: true,
            },
        )
    }

    fn stdout(r: &Rendered) -> Value {
        serde_json::from_str(&r.stdout).unwrap()
    }

    #[test]
    fn claude_pre_tool_verdicts() {
        let i = pre(Client::ClaudeCode);
        let allow = render(&i, &HookReply::allow());
        assert_eq!(allow, Rendered::default());

        let deny = render(&i, &HookReply::deny("held by ses_1"));
        assert_eq!(deny.exit_code, 0);
        assert_eq!(
            stdout(&deny),
            json!({"hookSpecificOutput": {"hookEventName": "PreToolUse",
                "permissionDecision": "deny", "permissionDecisionReason": "held by ses_1"}})
        );

        let ask = render(&i, &HookReply::ask("overlaps ses_2"));
        assert_eq!(
            stdout(&ask)["hookSpecificOutput"]["permissionDecision"],
            json!("ask")
        );

        let ctx = HookReply {
            context: Some("ses_3 edits b.rs".into()),
            ..HookReply::default()
        };
        let out = stdout(&render(&i, &ctx));
        assert_eq!(
            out["hookSpecificOutput"]["additionalContext"],
            json!("ses_3 edits b.rs")
        );
        assert!(
            out["hookSpecificOutput"]
                .get("permissionDecision")
                .is_none()
        );
    }

    #[test]
    fn codex_pre_tool_verdicts() {
        let i = pre(Client::Codex);
        assert_eq!(render(&i, &HookReply::allow()), Rendered::default());
        let deny = render(
            &i,
            &HookReply {
                context: Some("extra".into()),
                ..HookReply::deny("held")
            },
        );
        let out = stdout(&deny);
        assert_eq!(
            out["hookSpecificOutput"]["permissionDecision"],
            json!("deny")
        );
        assert_eq!(
            out["hookSpecificOutput"]["permissionDecisionReason"],
            json!("held\n\nextra")
        );
        assert!(out["hookSpecificOutput"].get("additionalContext").is_none());
        let ask = stdout(&render(&i, &HookReply::ask("overlap")));
        assert_eq!(
            ask["hookSpecificOutput"]["permissionDecision"],
            json!("deny")
        );
        assert!(
            ask["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .starts_with("overlap")
        );
    }

    #[test]
    fn gemini_before_tool_verdicts() {
        let i = pre(Client::Gemini);
        let allow = render(
            &i,
            &HookReply {
                context: Some("not injectable here".into()),
                ..HookReply::default()
            },
        );
        assert_eq!(allow.stdout, "{}\n");
        let deny = stdout(&render(&i, &HookReply::deny("held")));
        assert_eq!(deny, json!({"decision": "deny", "reason": "held"}));
        let ask = stdout(&render(&i, &HookReply::ask("overlap")));
        assert_eq!(ask["decision"], json!("deny"));
    }

    #[test]
    fn context_only_where_injected() {
        let ctx = HookReply {
            context: Some("board".into()),
            ..HookReply::default()
        };
        for (client, name, event) in [
            (
                Client::ClaudeCode,
                "SessionStart",
                HookEvent::Start { source: None },
            ),
            (
                Client::Codex,
                "UserPromptSubmit",
                HookEvent::Prompt { prompt: "p".into() },
            ),
            (
                Client::Gemini,
                "BeforeAgent",
                HookEvent::Prompt { prompt: "p".into() },
            ),
            (
                Client::Gemini,
                "SessionStart",
                HookEvent::Start { source: None },
            ),
        ] {
            let out = stdout(&render(&input(client, name, event), &ctx));
            assert_eq!(
                out["hookSpecificOutput"]["additionalContext"],
                json!("board")
            );
            assert_eq!(out["hookSpecificOutput"]["hookEventName"], json!(name));
        }
        for (client, name, event) in [
            (Client::ClaudeCode, "Stop", HookEvent::Stop),
            (
                Client::ClaudeCode,
                "SessionEnd",
                HookEvent::End { reason: None },
            ),
            (Client::Codex, "Stop", HookEvent::Stop),
            (Client::Gemini, "AfterAgent", HookEvent::Stop),
        ] {
            let r = render(&input(client, name, event), &ctx);
            assert!(
                !r.stdout.contains("board"),
                "{client:?} {name}: {}",
                r.stdout
            );
        }
    }

    #[test]
    fn warnings_are_system_messages() {
        let reply = HookReply {
            warning: Some("gyrus:\n two sessions".into()),
            ..HookReply::default()
        };
        let r = render(&input(Client::ClaudeCode, "Stop", HookEvent::Stop), &reply);
        assert_eq!(stdout(&r), json!({"systemMessage": "gyrus: two sessions"}));
    }

    #[test]
    fn unavailable() {
        let lax = render_unavailable(Client::ClaudeCode, Some("PreToolUse"), false, "no daemon");
        assert_eq!(lax.exit_code, 0);
        assert_eq!(stdout(&lax), json!({"systemMessage": "no daemon"}));
        let strict = render_unavailable(Client::ClaudeCode, Some("PreToolUse"), true, "no daemon");
        assert_eq!(
            stdout(&strict)["hookSpecificOutput"]["permissionDecision"],
            json!("deny")
        );
        let stop = render_unavailable(Client::Codex, Some("Stop"), true, "no daemon");
        assert_eq!(stop.exit_code, 0);
        assert_eq!(stdout(&stop), json!({"systemMessage": "no daemon"}));
        let unknown = render_unavailable(Client::Gemini, None, true, "no daemon");
        assert_eq!(
            (unknown.exit_code, unknown.stderr.as_str()),
            (2, "no daemon\n")
        );
    }

    #[test]
    fn no_hooks_for_aider() {
        assert_eq!(
            parse(Client::Aider, "{}"),
            Err(HookError::NoHooks(Client::Aider))
        );
    }

    #[test]
    fn canonical_types_round_trip() {
        let i = pre(Client::Codex);
        let text = serde_json::to_string(&i).unwrap();
        assert!(text.contains("\"kind\":\"pre_tool\""), "{text}");
        assert_eq!(serde_json::from_str::<HookInput>(&text).unwrap(), i);
        let reply = HookReply::ask("x");
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains("\"verdict\":\"ask\""), "{text}");
    }
}
