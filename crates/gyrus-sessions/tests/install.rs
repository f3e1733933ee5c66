//! `install` into a temporary home and project for each client: the files it writes have the
//! shape each client documents, the user's own settings survive, a second run changes nothing,
//! and a broken file stops it with nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gyrus_sessions::Client;
use gyrus_sessions::install::{Change, InstallError, install};
use pretty_assertions::assert_eq;
use serde::Deserialize;
use serde_json::{Value, json};

const GYRUS: &str = "/opt/gyrus/bin/gyrus";

// ---- Documented shapes, written from each client's docs ----------------------------------

/// Claude Code `settings.json` hooks: `hooks: {Event: [{matcher?, hooks: [{type: "command",
/// command, timeout?}]}]}` (code.claude.com/docs/en/hooks).
#[derive(Debug, Deserialize)]
struct ClaudeSettings {
    hooks: BTreeMap<String, Vec<ClaudeGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaudeGroup {
    matcher: Option<String>,
    hooks: Vec<ClaudeHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaudeHook {
    #[serde(rename = "type")]
    kind: String,
    command: String,
    timeout: Option<u64>,
}

/// `.mcp.json`, `~/.claude.json` and Gemini's `settings.json`: `mcpServers: {name: {command,
/// args, env?}}`.
#[derive(Debug, Deserialize)]
struct McpFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, McpServer>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct McpServer {
    command: String,
    #[serde(default)]
    args: Vec<String>,
}

/// Codex `hooks.json` (codex-rs/config/src/hook_config.rs): only `hooks`, events from a fixed
/// list, handlers `{type: "command", command, timeout? (seconds), async?, statusMessage?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodexHooksFile {
    hooks: BTreeMap<String, Vec<CodexGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodexGroup {
    matcher: Option<String>,
    hooks: Vec<CodexHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodexHook {
    #[serde(rename = "type")]
    kind: String,
    command: String,
    timeout: Option<u64>,
    #[serde(rename = "async", default)]
    _async: bool,
    #[serde(rename = "statusMessage")]
    _status_message: Option<String>,
}

const CODEX_EVENTS: &[&str] = &[
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PreCompact",
    "PostCompact",
    "SessionStart",
    "SessionEnd",
    "UserPromptSubmit",
    "SubagentStart",
    "SubagentStop",
    "Stop",
];

/// Codex `config.toml`: `[mcp_servers.NAME] command = "…", args = […]`.
#[derive(Debug, Deserialize)]
struct CodexConfig {
    mcp_servers: BTreeMap<String, McpServer>,
}

/// Gemini CLI `settings.json` (geminicli.com/docs/hooks/reference): `hooks: {Event: [{matcher?,
/// sequential?, hooks: [{type: "command", command, name?, timeout? (ms), description?}]}]}`.
#[derive(Debug, Deserialize)]
struct GeminiSettings {
    hooks: BTreeMap<String, Vec<GeminiGroup>>,
    #[serde(rename = "hooksConfig")]
    hooks_config: GeminiHooksConfig,
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, McpServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeminiGroup {
    matcher: Option<String>,
    #[serde(default)]
    _sequential: Option<bool>,
    hooks: Vec<GeminiHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeminiHook {
    #[serde(rename = "type")]
    kind: String,
    command: String,
    name: Option<String>,
    timeout: Option<u64>,
    #[serde(rename = "description")]
    _description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GeminiHooksConfig {
    enabled: bool,
}

// ---- Helpers ---------------------------------------------------------------------------------

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".gyrus-backup-"))
        .collect();
    found.sort();
    found
}

fn by_path(changes: &[Change], path: &Path) -> Change {
    changes
        .iter()
        .find(|c| c.path == path)
        .cloned()
        .unwrap_or_else(|| panic!("no change for {}: {changes:?}", path.display()))
}

/// Runs the install again and checks that it changes nothing and backs nothing up.
fn assert_second_run_is_a_no_op(client: Client, project: Option<&Path>, home: &Path) {
    let before: Vec<(PathBuf, String)> = install(client, project, home, GYRUS)
        .unwrap()
        .into_iter()
        .map(|c| {
            let text = fs::read_to_string(&c.path).unwrap();
            (c.path, text)
        })
        .collect();
    let dirs: Vec<PathBuf> = before
        .iter()
        .map(|(p, _)| p.parent().unwrap().to_path_buf())
        .collect();
    let backups_before: Vec<Vec<PathBuf>> = dirs.iter().map(|d| backups(d)).collect();
    let again = install(client, project, home, GYRUS).unwrap();
    for change in &again {
        assert!(!change.changed, "{client:?}: {change:?}");
        assert_eq!(change.backup, None, "{client:?}: {change:?}");
    }
    for (path, text) in &before {
        assert_eq!(
            &fs::read_to_string(path).unwrap(),
            text,
            "{}",
            path.display()
        );
    }
    let backups_after: Vec<Vec<PathBuf>> = dirs.iter().map(|d| backups(d)).collect();
    assert_eq!(backups_before, backups_after);
}

// ---- Claude Code -------------------------------------------------------------------------

const CLAUDE_EVENTS: &[&str] = &[
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "Stop",
    "SessionEnd",
];

fn check_claude_hooks(path: &Path) -> ClaudeSettings {
    let settings: ClaudeSettings = serde_json::from_value(read_json(path)).unwrap();
    for event in CLAUDE_EVENTS {
        let groups = &settings.hooks[*event];
        let ours: Vec<&ClaudeGroup> = groups
            .iter()
            .filter(|g| g.hooks.iter().any(|h| h.command.contains("gyrus")))
            .collect();
        assert_eq!(ours.len(), 1, "{event}: {groups:?}");
        let hook = &ours[0].hooks[0];
        assert_eq!(hook.kind, "command");
        assert_eq!(hook.command, format!("{GYRUS} hook claude"));
        assert_eq!(hook.timeout, Some(5));
        let tool_event = event.contains("ToolUse");
        assert_eq!(ours[0].matcher.is_some(), tool_event, "{event}");
        if tool_event {
            let matcher = ours[0].matcher.as_deref().unwrap();
            for tool in ["Edit", "Write", "MultiEdit", "NotebookEdit"] {
                assert!(matcher.split('|').any(|t| t == tool), "{matcher}");
            }
        }
    }
    settings
}

#[test]
fn claude_user_scope() {
    let home = tempfile::tempdir().unwrap();
    let settings_path = home.path().join(".claude/settings.json");
    let mcp_path = home.path().join(".claude.json");
    let user_settings = json!({
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "~/bin/check-bash.sh", "timeout": 30}]}]}
    });
    let user_claude = json!({
        "numStartups": 12,
        "mcpServers": {"other": {"command": "npx", "args": ["-y", "other-server"]}},
        "projects": {"/work/repo": {"allowedTools": []}}
    });
    let settings_text = serde_json::to_string_pretty(&user_settings).unwrap();
    write(&settings_path, &settings_text);
    write(&mcp_path, &serde_json::to_string(&user_claude).unwrap());

    let changes = install(Client::ClaudeCode, None, home.path(), GYRUS).unwrap();
    assert_eq!(changes.len(), 2);
    for path in [&settings_path, &mcp_path] {
        let change = by_path(&changes, path);
        assert!(change.changed);
        let backup = change.backup.expect("existing file backed up");
        assert!(backup.to_string_lossy().contains(".gyrus-backup-"));
    }
    assert_eq!(
        fs::read_to_string(by_path(&changes, &settings_path).backup.unwrap()).unwrap(),
        settings_text
    );

    let settings = check_claude_hooks(&settings_path);
    let pre = &settings.hooks["PreToolUse"];
    assert_eq!(
        pre[0].hooks[0].command, "~/bin/check-bash.sh",
        "user hook first, kept"
    );
    let raw = read_json(&settings_path);
    assert_eq!(raw["model"], "opus");
    assert_eq!(raw["permissions"], user_settings["permissions"]);

    let mcp: McpFile = serde_json::from_value(read_json(&mcp_path)).unwrap();
    assert_eq!(
        mcp.mcp_servers["gyrus"],
        McpServer {
            command: GYRUS.into(),
            args: vec!["mcp".into()]
        }
    );
    assert_eq!(mcp.mcp_servers["other"].command, "npx");
    let raw = read_json(&mcp_path);
    assert_eq!(raw["numStartups"], 12);
    assert_eq!(raw["projects"], user_claude["projects"]);

    assert_second_run_is_a_no_op(Client::ClaudeCode, None, home.path());
}

#[test]
fn claude_project_scope() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let changes = install(Client::ClaudeCode, Some(project.path()), home.path(), GYRUS).unwrap();
    let settings_path = project.path().join(".claude/settings.json");
    let mcp_path = project.path().join(".mcp.json");
    for path in [&settings_path, &mcp_path] {
        let change = by_path(&changes, path);
        assert!(change.changed);
        assert_eq!(change.backup, None, "a new file has nothing to back up");
    }
    check_claude_hooks(&settings_path);
    let mcp: McpFile = serde_json::from_value(read_json(&mcp_path)).unwrap();
    assert_eq!(mcp.mcp_servers["gyrus"].args, vec!["mcp".to_string()]);
    assert!(
        !home.path().join(".claude").exists(),
        "the user's files are untouched"
    );
    assert_second_run_is_a_no_op(Client::ClaudeCode, Some(project.path()), home.path());
}

#[test]
fn a_moved_binary_replaces_its_old_hooks() {
    let project = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    install(
        Client::ClaudeCode,
        Some(project.path()),
        home.path(),
        "/old/place/gyrus",
    )
    .unwrap();
    install(Client::ClaudeCode, Some(project.path()), home.path(), GYRUS).unwrap();
    let settings = check_claude_hooks(&project.path().join(".claude/settings.json"));
    for groups in settings.hooks.values() {
        let n = groups
            .iter()
            .flat_map(|g| &g.hooks)
            .filter(|h| h.command.contains("gyrus"))
            .count();
        assert_eq!(n, 1);
    }
    let text = fs::read_to_string(project.path().join(".claude/settings.json")).unwrap();
    assert!(!text.contains("/old/place"), "{text}");
}

// ---- Codex -----------------------------------------------------------------------------------

fn check_codex_hooks(path: &Path) {
    let file: CodexHooksFile = serde_json::from_value(read_json(path)).unwrap();
    for event in file.hooks.keys() {
        assert!(CODEX_EVENTS.contains(&event.as_str()), "{event}");
    }
    for event in CLAUDE_EVENTS {
        let groups = &file.hooks[*event];
        let ours: Vec<&CodexGroup> = groups
            .iter()
            .filter(|g| g.hooks.iter().any(|h| h.command.contains("gyrus")))
            .collect();
        assert_eq!(ours.len(), 1, "{event}");
        let hook = &ours[0].hooks[0];
        assert_eq!(hook.kind, "command");
        assert_eq!(hook.command, format!("{GYRUS} hook codex"));
        let timeout = hook.timeout.unwrap();
        assert!(
            timeout <= if *event == "SessionEnd" { 3 } else { 10 },
            "{event}"
        );
        if event.contains("ToolUse") {
            let matcher = ours[0].matcher.as_deref().unwrap();
            assert!(
                matcher.contains("apply_patch") && matcher.contains("Bash"),
                "{matcher}"
            );
        } else {
            assert_eq!(ours[0].matcher, None, "{event}");
        }
    }
}

#[test]
fn codex_user_scope() {
    let home = tempfile::tempdir().unwrap();
    let hooks_path = home.path().join(".codex/hooks.json");
    let config_path = home.path().join(".codex/config.toml");
    let config_text = "# my Codex settings\nmodel = \"gpt-5.5-codex\" # the default\n\n\
                       [mcp_servers.other]\ncommand = \"npx\"\nargs = [\"-y\", \"other\"]\n\n\
                       [features]\nweb_search = true\n";
    write(&config_path, config_text);
    write(
        &hooks_path,
        r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}"#,
    );

    let changes = install(Client::Codex, None, home.path(), GYRUS).unwrap();
    assert_eq!(changes.len(), 2);
    for path in [&hooks_path, &config_path] {
        let change = by_path(&changes, path);
        assert!(change.changed && change.backup.is_some(), "{change:?}");
    }
    check_codex_hooks(&hooks_path);
    let hooks: CodexHooksFile = serde_json::from_value(read_json(&hooks_path)).unwrap();
    assert_eq!(hooks.hooks["Stop"][0].hooks[0].command, "notify-send done");

    let text = fs::read_to_string(&config_path).unwrap();
    assert!(text.starts_with("# my Codex settings\nmodel = \"gpt-5.5-codex\" # the default\n"));
    let config: CodexConfig = toml::from_str(&text).unwrap();
    assert_eq!(
        config.mcp_servers["gyrus"],
        McpServer {
            command: GYRUS.into(),
            args: vec!["mcp".into()]
        }
    );
    assert_eq!(config.mcp_servers["other"].args, vec!["-y", "other"]);
    let raw: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(raw["features"]["web_search"].as_bool(), Some(true));
    assert_eq!(raw["model"].as_str(), Some("gpt-5.5-codex"));

    assert_second_run_is_a_no_op(Client::Codex, None, home.path());
}

#[test]
fn codex_project_scope() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let changes = install(Client::Codex, Some(project.path()), home.path(), GYRUS).unwrap();
    let hooks_path = project.path().join(".codex/hooks.json");
    let config_path = home.path().join(".codex/config.toml");
    assert!(by_path(&changes, &hooks_path).changed);
    assert!(by_path(&changes, &config_path).changed);
    check_codex_hooks(&hooks_path);
    let config: CodexConfig = toml::from_str(&fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(config.mcp_servers["gyrus"].command, GYRUS);
    assert!(!home.path().join(".codex/hooks.json").exists());
    assert_second_run_is_a_no_op(Client::Codex, Some(project.path()), home.path());
}

// ---- Gemini CLI ------------------------------------------------------------------------------

const GEMINI_EVENTS: &[&str] = &[
    "SessionStart",
    "BeforeAgent",
    "BeforeTool",
    "AfterTool",
    "AfterAgent",
    "SessionEnd",
];

fn check_gemini(path: &Path) -> GeminiSettings {
    let settings: GeminiSettings = serde_json::from_value(read_json(path)).unwrap();
    for event in GEMINI_EVENTS {
        let groups = &settings.hooks[*event];
        let ours: Vec<&GeminiGroup> = groups
            .iter()
            .filter(|g| g.hooks.iter().any(|h| h.command.contains("gyrus")))
            .collect();
        assert_eq!(ours.len(), 1, "{event}");
        let hook = &ours[0].hooks[0];
        assert_eq!(hook.kind, "command");
        assert_eq!(hook.command, format!("{GYRUS} hook gemini"));
        assert_eq!(hook.name.as_deref(), Some("gyrus"));
        assert_eq!(hook.timeout, Some(5000), "milliseconds");
        if event.ends_with("Tool") {
            let matcher = ours[0].matcher.as_deref().unwrap();
            assert!(matcher.contains("write_file") && matcher.contains("replace"));
        }
    }
    assert!(settings.hooks_config.enabled);
    assert_eq!(
        settings.mcp_servers["gyrus"],
        McpServer {
            command: GYRUS.into(),
            args: vec!["mcp".into()]
        }
    );
    settings
}

#[test]
fn gemini_user_scope() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(".gemini/settings.json");
    write(
        &path,
        r#"{
  // my settings
  "theme": "GitHub",
  "mcpServers": {"github": {"command": "docker", "args": ["run", "ghcr.io/github/github-mcp-server"]}},
  "hooks": {"BeforeTool": [{"matcher": "run_shell_command", "hooks": [
    {"name": "guard", "type": "command", "command": "~/.gemini/guard.sh", "timeout": 2000}]}]}
}
"#,
    );
    let changes = install(Client::Gemini, None, home.path(), GYRUS).unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].changed && changes[0].backup.is_some());
    let settings = check_gemini(&path);
    assert_eq!(settings.mcp_servers["github"].command, "docker");
    assert_eq!(
        settings.hooks["BeforeTool"][0].hooks[0].command,
        "~/.gemini/guard.sh"
    );
    assert_eq!(read_json(&path)["theme"], "GitHub");
    assert_second_run_is_a_no_op(Client::Gemini, None, home.path());
}

#[test]
fn gemini_project_scope_keeps_an_explicit_disable() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let changes = install(Client::Gemini, Some(project.path()), home.path(), GYRUS).unwrap();
    let path = project.path().join(".gemini/settings.json");
    assert_eq!(by_path(&changes, &path).backup, None);
    check_gemini(&path);
    assert_second_run_is_a_no_op(Client::Gemini, Some(project.path()), home.path());

    // The user's own `hooksConfig.enabled: false` is theirs to keep.
    let other = tempfile::tempdir().unwrap();
    write(
        &other.path().join(".gemini/settings.json"),
        r#"{"hooksConfig": {"enabled": false}}"#,
    );
    install(Client::Gemini, Some(other.path()), home.path(), GYRUS).unwrap();
    let raw = read_json(&other.path().join(".gemini/settings.json"));
    assert_eq!(raw["hooksConfig"]["enabled"], false);
}

// ---- Broken files ----------------------------------------------------------------------------

#[test]
fn a_broken_file_is_an_error_and_nothing_is_written() {
    let cases: Vec<(Client, &str, &str, Vec<&str>)> = vec![
        (
            Client::ClaudeCode,
            ".claude/settings.json",
            "{\"hooks\": {",
            vec![".claude.json"],
        ),
        (
            Client::ClaudeCode,
            ".claude.json",
            "{\"mcpServers\": []}",
            vec![".claude/settings.json"],
        ),
        (
            Client::Codex,
            ".codex/config.toml",
            "[mcp_servers\ncommand = ",
            vec![".codex/hooks.json"],
        ),
        (
            Client::Codex,
            ".codex/hooks.json",
            "{\"hooks\": {\"PreToolUse\": {}}}",
            vec![".codex/config.toml"],
        ),
        (
            Client::Gemini,
            ".gemini/settings.json",
            "{ theme: GitHub",
            vec![],
        ),
    ];
    for (client, broken, text, untouched) in cases {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(broken);
        write(&path, text);
        let error = install(client, None, home.path(), GYRUS).unwrap_err();
        assert!(matches!(error, InstallError::Invalid { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("move it away"), "{message}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "{broken} untouched"
        );
        assert!(
            backups(path.parent().unwrap()).is_empty(),
            "{broken}: no backup"
        );
        for other in untouched {
            assert!(
                !home.path().join(other).exists(),
                "{other} must not be written"
            );
        }
    }
}

#[test]
fn aider_has_no_hooks() {
    let home = tempfile::tempdir().unwrap();
    assert!(matches!(
        install(Client::Aider, None, home.path(), GYRUS),
        Err(InstallError::NoHooks(Client::Aider))
    ));
}

#[cfg(unix)]
#[test]
fn the_file_mode_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(".claude.json");
    write(&path, "{}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    install(Client::ClaudeCode, None, home.path(), GYRUS).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[cfg(unix)]
#[test]
fn a_symlinked_file_is_written_through() {
    let home = tempfile::tempdir().unwrap();
    let dotfiles = tempfile::tempdir().unwrap();
    let real = dotfiles.path().join("gemini-settings.json");
    write(&real, "{\"theme\": \"GitHub\"}");
    fs::create_dir_all(home.path().join(".gemini")).unwrap();
    let link = home.path().join(".gemini/settings.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    install(Client::Gemini, None, home.path(), GYRUS).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&real).unwrap().contains("hook gemini"));
}
