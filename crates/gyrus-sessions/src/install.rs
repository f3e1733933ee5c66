//! Merging gyrus's hook and MCP settings into each client's configuration.
//!
//! `gyrus session install claude|codex|gemini [--project DIR]` calls [`install`]. The pure
//! part, [`merge`], turns one configuration file's text into the text with gyrus's entries in
//! it, or `None` when they are already there; [`install`] reads and writes the files, keeping
//! a backup of each file it changes.
//!
//! Which files (see the fixtures' READMEs under `tests/fixtures/` for the documentation):
//!
//! | client | hooks | MCP server |
//! |---|---|---|
//! | Claude Code, user | `~/.claude/settings.json` | `~/.claude.json` (`mcpServers`) |
//! | Claude Code, `--project DIR` | `DIR/.claude/settings.json` | `DIR/.mcp.json` |
//! | Codex, user | `~/.codex/hooks.json` | `~/.codex/config.toml` (`[mcp_servers.gyrus]`) |
//! | Codex, `--project DIR` | `DIR/.codex/hooks.json` | `~/.codex/config.toml` |
//! | Gemini CLI, user | `~/.gemini/settings.json` | the same file (`mcpServers`) |
//! | Gemini CLI, `--project DIR` | `DIR/.gemini/settings.json` | the same file |
//!
//! Codex reads `[mcp_servers]` from a project's `.codex/config.toml` only in trusted projects
//! and not reliably in every release, and `gyrus mcp` serves every repository alike, so the
//! MCP server always goes to the user's file. Codex hooks are on by default (`[features]
//! hooks`, formerly `codex_hooks`, gated them while experimental); gyrus writes no feature
//! flag and leaves a user's explicit `hooks = false` alone. Gemini CLI gets
//! `hooksConfig.enabled = true` unless the key is already set: releases where hooks were not
//! yet on by default need it, later ones default to it.
//!
//! Matchers: Claude Code's tool hooks match its edit tools only
//! (`Edit|Write|MultiEdit|NotebookEdit`); Codex's match `apply_patch` and `Bash` (older Codex
//! releases ran `apply_patch` through the shell, and `Edit|Write` are aliases of
//! `apply_patch`); Gemini's match `write_file`, `replace` and `edit`. Reads and searches
//! never need gyrus, and every matched call starts a process, so the matchers stay narrow;
//! session start, prompt, stop and end hooks match everything.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::model::Client;

/// One kind of configuration a client keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigFile {
    /// The hooks (Claude `settings.json`, Codex `hooks.json`, Gemini `settings.json`).
    Hooks,
    /// The MCP servers (Claude `.mcp.json` / `~/.claude.json`, Codex `config.toml`, Gemini
    /// `settings.json`).
    McpServers,
}

/// Why an install could not go on. Nothing is written when any file is in error.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The client has no hooks to install (Aider, other).
    #[error(
        "{} has no hooks to install; run it through `gyrus session wrap` instead",
        .0.as_str()
    )]
    NoHooks(Client),
    /// An existing file is not valid JSON or TOML, or not of the documented shape.
    #[error(
        "{}: {detail}; fix the file or move it away, then run `gyrus session install` again",
        name(.path)
    )]
    Invalid {
        /// The file ([`merge`] does not know it; [`install`] fills it in).
        path: Option<PathBuf>,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn name(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "the configuration file".to_string(),
    }
}

fn invalid(detail: impl Into<String>) -> InstallError {
    InstallError::Invalid {
        path: None,
        detail: detail.into(),
    }
}

/// What [`install`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The file.
    pub path: PathBuf,
    /// The copy of its previous content, when it existed and was changed.
    pub backup: Option<PathBuf>,
    /// False when it already held gyrus's entries.
    pub changed: bool,
}

/// Hook timeouts: the hook talks to a local daemon and answers in milliseconds, so a short
/// timeout keeps a stuck daemon from stalling the client.
const TIMEOUT_SECS: u64 = 5;
/// Codex clamps `SessionEnd` hook timeouts to 3 seconds and warns about anything longer.
const CODEX_SESSION_END_TIMEOUT_SECS: u64 = 3;
/// Gemini CLI counts hook timeouts in milliseconds.
const GEMINI_TIMEOUT_MS: u64 = 5_000;

const CLAUDE_EDIT_MATCHER: &str = "Edit|Write|MultiEdit|NotebookEdit";
const CODEX_EDIT_MATCHER: &str = "^(apply_patch|Bash)$";
const GEMINI_EDIT_MATCHER: &str = "^(write_file|replace|edit)$";

/// The events gyrus registers for `client`, each with its tool matcher, if any.
pub fn hook_events(client: Client) -> &'static [(&'static str, Option<&'static str>)] {
    match client {
        Client::ClaudeCode => &[
            ("SessionStart", None),
            ("UserPromptSubmit", None),
            ("PreToolUse", Some(CLAUDE_EDIT_MATCHER)),
            ("PostToolUse", Some(CLAUDE_EDIT_MATCHER)),
            ("Stop", None),
            ("SessionEnd", None),
        ],
        Client::Codex => &[
            ("SessionStart", None),
            ("UserPromptSubmit", None),
            ("PreToolUse", Some(CODEX_EDIT_MATCHER)),
            ("PostToolUse", Some(CODEX_EDIT_MATCHER)),
            ("Stop", None),
            ("SessionEnd", None),
        ],
        Client::Gemini => &[
            ("SessionStart", None),
            ("BeforeAgent", None),
            ("BeforeTool", Some(GEMINI_EDIT_MATCHER)),
            ("AfterTool", Some(GEMINI_EDIT_MATCHER)),
            ("AfterAgent", None),
            ("SessionEnd", None),
        ],
        Client::Aider | Client::Other => &[],
    }
}

/// The name of `client` in `gyrus hook <name>`.
fn hook_name(client: Client) -> &'static str {
    match client {
        Client::ClaudeCode => "claude",
        other => other.as_str(),
    }
}

/// The hook command for `client`: `<gyrus> hook claude` (the binary quoted for the shell the
/// client runs it with, when it needs quoting).
pub fn hook_command(client: Client, gyrus: &str) -> String {
    format!("{} hook {}", shell_quote(gyrus), hook_name(client))
}

/// Whether `command` is a gyrus hook for `client`: `<anything>/gyrus [flags] hook <client>`,
/// whatever the binary's path, so that a moved binary replaces its old entries.
fn is_gyrus_hook(command: &str, client: Client, gyrus: &str) -> bool {
    if command.trim() == hook_command(client, gyrus) {
        return true;
    }
    let words = shell_words(command);
    let [first, .., hook, name] = words.as_slice() else {
        return false;
    };
    let program = first.rsplit(['/', '\\']).next().unwrap_or(first);
    let names: &[&str] = match client {
        Client::ClaudeCode => &["claude", "claude-code"],
        _ => &[hook_name(client)],
    };
    matches!(program, "gyrus" | "gyrus.exe") && hook == "hook" && names.contains(&name.as_str())
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Splits a command line into words, honouring single and double quotes and backslashes.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Merges gyrus's entries of `kind` into `existing` (the file's text, `None` when there is no
/// file) and returns the new text, or `None` when the file already holds exactly them.
///
/// The user's own entries (other hooks, other MCP servers, unknown keys) stay as they were, in
/// their order; gyrus's own entries (hooks whose command is `…/gyrus … hook <client>`, the MCP
/// server named `gyrus`) are replaced, not duplicated, and gyrus hooks on events gyrus no
/// longer uses are removed. A file that is not valid JSON (TOML for Codex's `config.toml`)
/// is an error; Gemini's `settings.json` may hold comments, which a rewrite drops (the backup
/// keeps them).
pub fn merge(
    client: Client,
    kind: ConfigFile,
    existing: Option<&str>,
    gyrus: &str,
) -> Result<Option<String>, InstallError> {
    if matches!(client, Client::Aider | Client::Other) {
        return Err(InstallError::NoHooks(client));
    }
    if client == Client::Codex && kind == ConfigFile::McpServers {
        return merge_codex_config(existing, gyrus);
    }
    let mut root = match existing {
        Some(text) if !text.trim().is_empty() => {
            let text = if client == Client::Gemini {
                strip_json_comments(text)
            } else {
                text.to_string()
            };
            match serde_json::from_str::<Json>(&text) {
                Ok(Json::Object(object)) => object,
                Ok(_) => return Err(invalid("the top level is not a JSON object")),
                Err(e) => return Err(invalid(format!("not valid JSON ({e})"))),
            }
        }
        _ => Obj::default(),
    };
    let before = root.clone();
    match kind {
        ConfigFile::Hooks => {
            merge_hooks(&mut root, client, gyrus)?;
            if client == Client::Gemini {
                let config = object_entry(&mut root, "hooksConfig")?;
                if config.get("enabled").is_none() {
                    config.insert("enabled", Json::Bool(true));
                }
            }
        }
        ConfigFile::McpServers => {
            let servers = object_entry(&mut root, "mcpServers")?;
            let wanted = mcp_server(gyrus);
            if servers.get("gyrus") != Some(&wanted) {
                servers.insert("gyrus", wanted);
            }
        }
    }
    if existing.is_some() && root == before {
        return Ok(None);
    }
    let mut text = serde_json::to_string_pretty(&Json::Object(root))
        .map_err(|e| invalid(format!("could not write JSON ({e})")))?;
    text.push('\n');
    Ok(Some(text))
}

fn mcp_server(gyrus: &str) -> Json {
    Json::Object(Obj(vec![
        ("command".into(), Json::String(gyrus.into())),
        ("args".into(), Json::Array(vec![Json::String("mcp".into())])),
    ]))
}

/// The matcher group gyrus wants on one event.
fn hook_group(client: Client, event: &str, matcher: Option<&str>, gyrus: &str) -> Json {
    let command = Json::String(hook_command(client, gyrus));
    let handler = match client {
        Client::Gemini => Obj(vec![
            ("name".into(), Json::String("gyrus".into())),
            ("type".into(), Json::String("command".into())),
            ("command".into(), command),
            ("timeout".into(), Json::Number(GEMINI_TIMEOUT_MS.into())),
            (
                "description".into(),
                Json::String("gyrus session manager: sessions, leases, board".into()),
            ),
        ]),
        _ => {
            let timeout = if client == Client::Codex && event == "SessionEnd" {
                CODEX_SESSION_END_TIMEOUT_SECS
            } else {
                TIMEOUT_SECS
            };
            Obj(vec![
                ("type".into(), Json::String("command".into())),
                ("command".into(), command),
                ("timeout".into(), Json::Number(timeout.into())),
            ])
        }
    };
    let mut group = Obj::default();
    if let Some(matcher) = matcher {
        group.insert("matcher", Json::String(matcher.into()));
    }
    group.insert("hooks", Json::Array(vec![Json::Object(handler)]));
    Json::Object(group)
}

fn merge_hooks(root: &mut Obj, client: Client, gyrus: &str) -> Result<(), InstallError> {
    let plan = hook_events(client);
    let hooks = object_entry(root, "hooks")?;
    let is_ours = |hook: &Json| match hook {
        Json::Object(h) => match h.get("command") {
            Some(Json::String(command)) => is_gyrus_hook(command, client, gyrus),
            _ => false,
        },
        _ => false,
    };
    let mut emptied = Vec::new();
    for (event, groups) in hooks.0.iter_mut() {
        let wanted = plan
            .iter()
            .find(|(name, _)| name == event)
            .map(|(name, matcher)| hook_group(client, name, *matcher, gyrus));
        let Json::Array(groups) = groups else {
            if wanted.is_some() {
                return Err(invalid(format!("`hooks.{event}` is not a list")));
            }
            // Gemini keeps `enabled`/`disabled`/`notifications` here in some releases.
            continue;
        };
        // Where gyrus's hooks are: (group, hook) indices.
        let mut ours = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            if let Json::Object(group) = group
                && let Some(Json::Array(handlers)) = group.get("hooks")
            {
                for (h, hook) in handlers.iter().enumerate() {
                    if is_ours(hook) {
                        ours.push((g, h));
                    }
                }
            }
        }
        if let (Some(wanted), [(g, _)]) = (&wanted, ours.as_slice())
            && &groups[*g] == wanted
        {
            continue;
        }
        let mut at = ours.first().map(|(g, _)| *g);
        for (g, h) in ours.iter().rev() {
            if let Some(Json::Object(group)) = groups.get_mut(*g)
                && let Some(Json::Array(handlers)) = group.get_mut("hooks")
            {
                handlers.remove(*h);
            }
        }
        // Drop the groups that held only gyrus's hooks.
        let mut index = 0;
        groups.retain(|group| {
            let was_ours = ours.iter().any(|(g, _)| *g == index);
            index += 1;
            let empty = matches!(group, Json::Object(g)
                if matches!(g.get("hooks"), Some(Json::Array(h)) if h.is_empty()));
            !(was_ours && empty)
        });
        if let Some(wanted) = wanted {
            let position = at.take().unwrap_or(groups.len()).min(groups.len());
            groups.insert(position, wanted);
        } else if !ours.is_empty() && groups.is_empty() {
            emptied.push(event.clone());
        }
    }
    for event in emptied {
        hooks.remove(&event);
    }
    for (event, matcher) in plan {
        if hooks.get(event).is_none() {
            hooks.insert(
                event,
                Json::Array(vec![hook_group(client, event, *matcher, gyrus)]),
            );
        }
    }
    Ok(())
}

/// The object under `key`, created when missing; an error when it is something else.
fn object_entry<'a>(root: &'a mut Obj, key: &str) -> Result<&'a mut Obj, InstallError> {
    if root.get(key).is_none() {
        root.insert(key, Json::Object(Obj::default()));
    }
    match root.get_mut(key) {
        Some(Json::Object(object)) => Ok(object),
        _ => Err(invalid(format!("`{key}` is not a JSON object"))),
    }
}

/// Codex's `config.toml`: `[mcp_servers.gyrus]` with `command` and `args`, edited in place so
/// that the user's comments, order and formatting stay.
fn merge_codex_config(existing: Option<&str>, gyrus: &str) -> Result<Option<String>, InstallError> {
    use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

    let text = existing.unwrap_or("");
    let mut doc = text
        .parse::<DocumentMut>()
        .map_err(|e| invalid(format!("not valid TOML ({})", one_line(&e.to_string()))))?;
    let args = || {
        let mut array = Array::new();
        array.push("mcp");
        array
    };
    let is_current = |server: &dyn toml_edit::TableLike| {
        server.len() == 2
            && server.get("command").and_then(Item::as_str) == Some(gyrus)
            && server
                .get("args")
                .and_then(Item::as_array)
                .is_some_and(|a| a.len() == 1 && a.get(0).and_then(Value::as_str) == Some("mcp"))
    };
    if doc.get("mcp_servers").is_none() {
        let mut servers = Table::new();
        servers.set_implicit(true);
        doc.insert("mcp_servers", Item::Table(servers));
    }
    match doc.get_mut("mcp_servers") {
        Some(Item::Table(servers)) => {
            match servers.get_mut("gyrus") {
                Some(Item::Table(server)) if is_current(server) => return Ok(None),
                Some(Item::Table(server)) => {
                    // Rewrite in place, keeping the table where the user put it.
                    server.clear();
                    server.insert("command", toml_edit::value(gyrus));
                    server.insert("args", toml_edit::value(args()));
                }
                Some(Item::Value(Value::InlineTable(server))) if is_current(server) => {
                    return Ok(None);
                }
                _ => {
                    let mut server = Table::new();
                    server.insert("command", toml_edit::value(gyrus));
                    server.insert("args", toml_edit::value(args()));
                    servers.insert("gyrus", Item::Table(server));
                }
            }
        }
        Some(Item::Value(Value::InlineTable(servers))) => {
            if servers
                .get("gyrus")
                .and_then(Value::as_inline_table)
                .is_some_and(|s| is_current(s))
            {
                return Ok(None);
            }
            let mut server = InlineTable::new();
            server.insert("command", gyrus.into());
            server.insert("args", Value::Array(args()));
            servers.insert("gyrus", Value::InlineTable(server));
        }
        _ => return Err(invalid("`mcp_servers` is not a table")),
    }
    Ok(Some(doc.to_string()))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops `//` and `/* */` comments outside strings (Gemini CLI reads its settings as JSON
/// with comments).
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for next in chars.by_ref() {
                    if last == '*' && next == '/' {
                        break;
                    }
                    if next == '\n' {
                        out.push('\n');
                    }
                    last = next;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The files [`install`] touches for `client`, each with what goes into it.
pub fn targets(
    client: Client,
    project: Option<&Path>,
    user_home: &Path,
) -> Result<Vec<(PathBuf, Vec<ConfigFile>)>, InstallError> {
    use ConfigFile::{Hooks, McpServers};
    Ok(match (client, project) {
        (Client::ClaudeCode, Some(dir)) => vec![
            (dir.join(".claude").join("settings.json"), vec![Hooks]),
            (dir.join(".mcp.json"), vec![McpServers]),
        ],
        (Client::ClaudeCode, None) => vec![
            (user_home.join(".claude").join("settings.json"), vec![Hooks]),
            (user_home.join(".claude.json"), vec![McpServers]),
        ],
        (Client::Codex, project) => vec![
            (
                project
                    .unwrap_or(user_home)
                    .join(".codex")
                    .join("hooks.json"),
                vec![Hooks],
            ),
            (
                user_home.join(".codex").join("config.toml"),
                vec![McpServers],
            ),
        ],
        (Client::Gemini, project) => vec![(
            project
                .unwrap_or(user_home)
                .join(".gemini")
                .join("settings.json"),
            vec![Hooks, McpServers],
        )],
        (Client::Aider | Client::Other, _) => return Err(InstallError::NoHooks(client)),
    })
}

/// Merges gyrus's hooks and MCP server into `client`'s configuration: the project's files with
/// `project`, else the user's under `user_home`. `gyrus` is the command to run (the absolute
/// path of the gyrus binary).
///
/// Every file is read and merged before any is written, so a broken file stops the install
/// with nothing changed. A changed file that existed is first copied to
/// `<file>.gyrus-backup-<unix seconds>`, then replaced atomically (a temporary file renamed
/// over it, with the old file's permissions; through a symlink, the link's target is
/// replaced). Running it again changes nothing and makes no backup.
pub fn install(
    client: Client,
    project: Option<&Path>,
    user_home: &Path,
    gyrus: &str,
) -> Result<Vec<Change>, InstallError> {
    let mut plans = Vec::new();
    for (path, kinds) in targets(client, project, user_home)? {
        let target = resolve_link(&path);
        let existing = match fs::read_to_string(&target) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(InstallError::Io { path, source }),
        };
        let mut text = existing.clone();
        let mut changed = false;
        for kind in kinds {
            let merged = merge(client, kind, text.as_deref(), gyrus).map_err(|e| match e {
                InstallError::Invalid { detail, .. } => InstallError::Invalid {
                    path: Some(path.clone()),
                    detail,
                },
                other => other,
            })?;
            if let Some(merged) = merged {
                text = Some(merged);
                changed = true;
            }
        }
        plans.push((
            path,
            target,
            existing.is_some(),
            changed.then_some(text).flatten(),
        ));
    }
    let mut changes = Vec::new();
    for (path, target, existed, text) in plans {
        let Some(text) = text else {
            changes.push(Change {
                path,
                backup: None,
                changed: false,
            });
            continue;
        };
        let backup = if existed {
            Some(backup(&target).map_err(|source| InstallError::Io {
                path: target.clone(),
                source,
            })?)
        } else {
            None
        };
        write_atomically(&target, &text).map_err(|source| InstallError::Io {
            path: target.clone(),
            source,
        })?;
        changes.push(Change {
            path,
            backup,
            changed: true,
        });
    }
    Ok(changes)
}

/// What the user still has to do in the client after [`install`], one sentence each.
pub fn notes(client: Client, project: bool) -> Vec<&'static str> {
    let mut notes = Vec::new();
    match client {
        Client::ClaudeCode => {
            notes.push("Restart Claude Code (or open /hooks) so it loads the new hooks.");
            if project {
                notes.push(
                    "Claude Code asks once before it starts a project's MCP servers: approve \
                     `gyrus` from .mcp.json.",
                );
            }
        }
        Client::Codex => {
            notes.push(
                "Codex runs a new or changed hook only after you trust it: open /hooks in Codex \
                 and trust the gyrus hooks (again after any reinstall that changes the command).",
            );
            notes.push(
                "Hooks are on by default; if ~/.codex/config.toml sets `[features] hooks = false` \
                 (or `codex_hooks = false`), gyrus's hooks will not run.",
            );
            if project {
                notes.push("Codex reads a project's .codex/hooks.json only in a trusted project.");
            }
        }
        Client::Gemini => {
            notes.push("Restart Gemini CLI so it loads the new hooks and MCP server.");
            if project {
                notes.push(
                    "Gemini CLI asks you to trust a project's hooks the first time it sees them.",
                );
            }
        }
        Client::Aider | Client::Other => {}
    }
    notes
}

fn resolve_link(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

fn backup(path: &Path) -> io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = path.with_file_name(format!("{file}.gyrus-backup-{secs}"));
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = path.with_file_name(format!("{file}.gyrus-backup-{secs}-{n}"));
        n += 1;
    }
    fs::copy(path, &candidate)?;
    Ok(candidate)
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file}.gyrus-tmp-{}", std::process::id()));
    let result = (|| {
        let mut out = fs::File::create(&temp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        drop(out);
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&temp, meta.permissions())?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A JSON value that keeps its objects' key order (serde_json's own `Value` sorts them unless
/// the workspace-wide `preserve_order` feature is on), so that rewriting a user's file keeps
/// their layout.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Obj),
}

/// An object's members, in order.
#[derive(Debug, Clone, PartialEq, Default)]
struct Obj(Vec<(String, Json)>);

impl Obj {
    fn get(&self, key: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Replaces the value in place, or appends the member.
    fn insert(&mut self, key: &str, value: Json) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.0.len()))?;
                for (key, value) in &object.0 {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        Json::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Obj::default();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            object.insert(&key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    const GYRUS: &str = "/usr/local/bin/gyrus";

    #[test]
    fn key_order_survives() {
        let text = "{\n  \"zeta\": 1,\n  \"alpha\": {\"b\": 2, \"a\": [1.5, null, true]}\n}\n";
        let merged = merge(
            Client::ClaudeCode,
            ConfigFile::McpServers,
            Some(text),
            GYRUS,
        )
        .unwrap()
        .unwrap();
        let zeta = merged.find("zeta").unwrap();
        let alpha = merged.find("alpha").unwrap();
        let b = merged.find("\"b\"").unwrap();
        let a = merged.find("\"a\"").unwrap();
        assert!(zeta < alpha && b < a, "{merged}");
        assert!(merged.contains("1.5"), "{merged}");
    }

    #[test]
    fn recognises_moved_binaries() {
        assert!(is_gyrus_hook(
            "/old/bin/gyrus hook claude",
            Client::ClaudeCode,
            GYRUS
        ));
        assert!(is_gyrus_hook(
            "'/my apps/gyrus' hook codex",
            Client::Codex,
            GYRUS
        ));
        assert!(is_gyrus_hook(
            "gyrus --home /x hook gemini",
            Client::Gemini,
            GYRUS
        ));
        assert!(!is_gyrus_hook(
            "gyrus hook codex",
            Client::ClaudeCode,
            GYRUS
        ));
        assert!(!is_gyrus_hook(
            "not-gyrus hook claude",
            Client::ClaudeCode,
            GYRUS
        ));
        assert!(!is_gyrus_hook("python3 hook.py", Client::ClaudeCode, GYRUS));
    }

    #[test]
    fn quotes_odd_binary_paths() {
        assert_eq!(
            hook_command(Client::ClaudeCode, "/opt/my apps/gyrus"),
            "'/opt/my apps/gyrus' hook claude"
        );
        assert_eq!(
            hook_command(Client::Codex, GYRUS),
            "/usr/local/bin/gyrus hook codex"
        );
    }

    #[test]
    fn gemini_comments_are_tolerated() {
        let text = "// user settings\n{\n  /* theme */ \"theme\": \"Dracula\", \"url\": \"http://x//y\"\n}\n";
        let merged = merge(Client::Gemini, ConfigFile::McpServers, Some(text), GYRUS)
            .unwrap()
            .unwrap();
        assert!(merged.contains("\"http://x//y\""), "{merged}");
        assert!(merged.contains("Dracula"), "{merged}");
    }

    #[test]
    fn codex_toml_keeps_comments() {
        let text = "# my config\nmodel = \"o3\" # best\n\n[mcp_servers.other]\ncommand = \"x\"\n";
        let merged = merge(Client::Codex, ConfigFile::McpServers, Some(text), GYRUS)
            .unwrap()
            .unwrap();
        assert!(
            merged.starts_with("# my config\nmodel = \"o3\" # best\n"),
            "{merged}"
        );
        assert!(merged.contains("[mcp_servers.gyrus]"), "{merged}");
        assert_eq!(
            merge(Client::Codex, ConfigFile::McpServers, Some(&merged), GYRUS).unwrap(),
            None
        );
        let inline = "mcp_servers = { other = { command = \"x\" } }\n";
        let merged = merge(Client::Codex, ConfigFile::McpServers, Some(inline), GYRUS)
            .unwrap()
            .unwrap();
        assert_eq!(
            merge(Client::Codex, ConfigFile::McpServers, Some(&merged), GYRUS).unwrap(),
            None,
            "{merged}"
        );
    }

    #[test]
    fn stale_events_are_cleaned() {
        let text = r#"{"hooks": {"Notification": [{"hooks": [
            {"type": "command", "command": "/old/gyrus hook claude"}]}]}}"#;
        let merged = merge(Client::ClaudeCode, ConfigFile::Hooks, Some(text), GYRUS)
            .unwrap()
            .unwrap();
        assert!(!merged.contains("Notification"), "{merged}");
        assert!(!merged.contains("/old/gyrus"), "{merged}");
    }

    #[test]
    fn aider_has_nothing_to_install() {
        assert!(matches!(
            merge(Client::Aider, ConfigFile::Hooks, None, GYRUS),
            Err(InstallError::NoHooks(Client::Aider))
        ));
    }
}
