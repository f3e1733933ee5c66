//! `gyrus session …` and `gyrus hook CLIENT`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http::Method;
use serde_json::{Value, json};

use gyrus_sessions::hooks::{self, HookInput, HookReply};

use crate::cli::{HookClient, SessionArgs, SessionCommand};
use crate::client::Client;
use crate::commands::{ask, encode_segment, print_json, s};
use crate::render;

/// The most hook JSON read from stdin.
const HOOK_INPUT_MAX: u64 = 4 << 20;
/// How long a hook waits for the daemon before letting the client go on.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// `gyrus hook CLIENT`: the client's hook JSON on stdin, its answer on stdout, in its format
/// and exit-code convention. When the daemon cannot be reached, the client goes on with a
/// one-line warning, unless `sessions.strict` is set.
pub fn hook(home: Option<&Path>, which: HookClient) -> ExitCode {
    let client = which.client();
    let mut raw = String::new();
    if let Err(e) = std::io::stdin()
        .take(HOOK_INPUT_MAX)
        .read_to_string(&mut raw)
    {
        eprintln!("gyrus hook: cannot read the hook JSON on stdin: {e}");
        return ExitCode::from(1);
    }
    let input = match hooks::parse(client, &raw) {
        Ok(input) => input,
        Err(e) => {
            // Exit 1: a non-blocking error in every client's convention; the user sees it.
            eprintln!("gyrus hook: {e}");
            return ExitCode::from(1);
        }
    };
    let rendered = match ask_daemon(home, &input) {
        Ok(reply) => hooks::render(&input, &reply),
        Err(e) => {
            let strict = strict_mode(home);
            let message = format!("gyrus: session manager unavailable ({e:#})");
            hooks::render_unavailable(client, Some(&input.event_name), strict, &message)
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(rendered.stdout.as_bytes());
    let _ = out.flush();
    if !rendered.stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(rendered.stderr.as_bytes());
        if !rendered.stderr.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
    }
    ExitCode::from(u8::try_from(rendered.exit_code).unwrap_or(1))
}

fn ask_daemon(home: Option<&Path>, input: &HookInput) -> anyhow::Result<HookReply> {
    let client = Client::from_env(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let body = serde_json::to_value(input)?;
    let deadline = std::time::Instant::now() + HOOK_TIMEOUT;
    let (status, value) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (status, value) = runtime.block_on(client.request(
            Method::POST,
            "/api/v1/sessions/hook",
            Some(body.clone()),
            left,
        ))?;
        // Over the rate limit (a burst of tool calls across sessions): wait for the bucket
        // to refill rather than let an edit through unchecked, within the hook's time.
        if status == http::StatusCode::TOO_MANY_REQUESTS
            && deadline.saturating_duration_since(std::time::Instant::now())
                > Duration::from_millis(1100)
        {
            std::thread::sleep(Duration::from_millis(1000));
            continue;
        }
        break (status, value);
    };
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the daemon answered {status}"));
        bail!(message);
    }
    serde_json::from_value(value["reply"].clone())
        .map_err(|e| anyhow!("unreadable answer from the daemon: {e}"))
}

/// `sessions.strict` from the home's configuration; a missing or unreadable file means the
/// default (not strict).
fn strict_mode(home: Option<&Path>) -> bool {
    local_config(home).is_some_and(|c| c.sessions.strict)
}

/// The home's configuration, read directly (hooks and wrappers need it even when the daemon
/// is down); None when the home cannot be resolved or the file is missing or invalid.
fn local_config(home: Option<&Path>) -> Option<gyrus_home::Config> {
    let resolved = gyrus_home::resolve(home, |k| std::env::var_os(k)).ok()?;
    gyrus_home::Config::load(&gyrus_home::Home::new(resolved.path).config_path()).ok()
}

fn cwd() -> anyhow::Result<String> {
    let dir = std::env::current_dir().context("cannot read the current directory")?;
    Ok(dir.to_string_lossy().into_owned())
}

pub fn session(home: Option<&Path>, args: SessionArgs) -> anyhow::Result<()> {
    match args.command {
        SessionCommand::List { all, json } => {
            let path = if all {
                "/api/v1/sessions?all=true"
            } else {
                "/api/v1/sessions"
            };
            let (_, v) = ask(home, Method::GET, path, None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let list = v["sessions"].as_array().unwrap_or(&empty);
            if list.is_empty() {
                println!(
                    "no live sessions; run `gyrus session install claude|codex|gemini` so your clients register"
                );
                return Ok(());
            }
            let now = now_secs();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|e| {
                    let se = &e["session"];
                    let leases: Vec<String> = e["leases"]
                        .as_array()
                        .map(|a| a.iter().map(|l| s(&l["glob"])).collect())
                        .unwrap_or_default();
                    vec![
                        s(&se["id"]),
                        s(&se["client"]),
                        s(&se["state"]),
                        s(&se["branch"]),
                        format!(
                            "{} ago",
                            render::duration(
                                now.saturating_sub(se["last_seen_ms"].as_u64().unwrap_or(0) / 1000)
                            )
                        ),
                        short(&s(&se["task"]), 40),
                        short(&leases.join(","), 40),
                        s(&se["worktree"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                render::table(
                    &[
                        "ID", "CLIENT", "STATE", "BRANCH", "SEEN", "TASK", "HOLDS", "WORKTREE"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        SessionCommand::Show { id, json } => {
            let path = format!("/api/v1/sessions/{}", encode_segment(&id));
            let (_, v) = ask(home, Method::GET, &path, None)?;
            if json.json {
                return print_json(&v);
            }
            let se = &v["session"];
            println!(
                "{} ({}, {})",
                s(&se["id"]),
                s(&se["client"]),
                s(&se["state"])
            );
            println!("client session  {}", s(&se["client_session_id"]));
            println!("worktree        {}", s(&se["worktree"]));
            println!("repository      {}", s(&se["repository"]));
            println!("branch          {}", s(&se["branch"]));
            println!("cwd             {}", s(&se["cwd"]));
            println!("task            {}", s(&se["task"]));
            println!(
                "started         {}",
                render::time(se["started_ms"].as_u64().unwrap_or(0) / 1000)
            );
            println!(
                "last seen       {}",
                render::time(se["last_seen_ms"].as_u64().unwrap_or(0) / 1000)
            );
            let empty = Vec::new();
            println!("leases:");
            for l in v["leases"].as_array().unwrap_or(&empty) {
                println!(
                    "  {} {} until {}",
                    s(&l["mode"]),
                    s(&l["glob"]),
                    render::time(l["expires_ms"].as_u64().unwrap_or(0) / 1000)
                );
            }
            println!("messages:");
            for m in v["messages"].as_array().unwrap_or(&empty) {
                let from = if m["from_session"].is_null() {
                    "the owner".to_string()
                } else {
                    s(&m["from_session"])
                };
                let acked = if m["acked_ms"].is_null() {
                    ""
                } else {
                    " (acknowledged)"
                };
                println!("  [{}] from {from}: {}{acked}", s(&m["id"]), s(&m["text"]));
            }
            Ok(())
        }
        SessionCommand::Conflicts(json) => {
            let (_, v) = ask(home, Method::GET, "/api/v1/sessions/conflicts", None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let mut any = false;
            for repo in v["repositories"].as_array().unwrap_or(&empty) {
                for p in repo["pairs"].as_array().unwrap_or(&empty) {
                    any = true;
                    let files: Vec<String> = p["files"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect())
                        .unwrap_or_default();
                    if p["clean"] == json!(true) {
                        println!("clean     {}  <->  {}", s(&p["a"]), s(&p["b"]));
                    } else {
                        println!(
                            "CONFLICT  {}  <->  {}: {}",
                            s(&p["a"]),
                            s(&p["b"]),
                            files.join(", ")
                        );
                    }
                }
            }
            if !any {
                println!("no live sessions on different worktrees or branches of one repository");
            }
            Ok(())
        }
        SessionCommand::Board {
            post,
            decision,
            json,
        } => {
            let dir = cwd()?;
            if let Some(text) = post {
                let body = json!({
                    "cwd": dir,
                    "text": text,
                    "kind": if decision { "decision" } else { "note" },
                });
                let (_, v) = ask(home, Method::POST, "/api/v1/sessions/board", Some(body))?;
                if json.json {
                    return print_json(&v);
                }
                println!("posted note {}", s(&v["id"]));
                return Ok(());
            }
            let path = format!("/api/v1/sessions/board?cwd={}", encode_segment(&dir));
            let (_, v) = ask(home, Method::GET, &path, None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let notes = v["notes"].as_array().unwrap_or(&empty);
            if notes.is_empty() {
                println!("the board of {} is empty", s(&v["repository"]));
            }
            for n in notes {
                let by = if n["session_id"].is_null() {
                    "owner".to_string()
                } else {
                    s(&n["session_id"])
                };
                println!(
                    "{}  {:<8} {by}: {}",
                    render::time(n["posted_ms"].as_u64().unwrap_or(0) / 1000),
                    s(&n["kind"]),
                    s(&n["text"])
                );
            }
            Ok(())
        }
        SessionCommand::Send { id, text, json } => {
            let path = format!("/api/v1/sessions/{}/messages", encode_segment(&id));
            let (_, v) = ask(home, Method::POST, &path, Some(json!({"text": text})))?;
            if json.json {
                return print_json(&v);
            }
            println!("sent message {} to {id}", s(&v["id"]));
            Ok(())
        }
        SessionCommand::End { id, json } => {
            let path = format!("/api/v1/sessions/{}/end", encode_segment(&id));
            let (_, v) = ask(home, Method::POST, &path, None)?;
            if json.json {
                return print_json(&v);
            }
            println!("ended {id}; its leases are free");
            Ok(())
        }
        SessionCommand::Install {
            client,
            project,
            json,
        } => install(client, project.as_deref(), json.json),
        SessionCommand::Wrap {
            command,
            args,
            task,
        } => wrap(home, &command, &args, task),
        SessionCommand::Guard { install } => {
            if install {
                install_guard()
            } else {
                guard(home)
            }
        }
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The command hooks and MCP settings should run: this binary, by absolute path.
fn gyrus_command() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the gyrus binary's path")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the gyrus binary's path {} is not UTF-8", exe.display()))
}

fn install(which: HookClient, project: Option<&Path>, as_json: bool) -> anyhow::Result<()> {
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .ok_or_else(|| {
            anyhow!("HOME is not set to an absolute path; set it, or use --project DIR")
        })?;
    let project = match project {
        Some(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("--project {}: no such directory", p.display()))?;
            if !p.is_dir() {
                bail!("--project {} is not a directory", p.display());
            }
            Some(p)
        }
        None => None,
    };
    let changes = gyrus_sessions::install::install(
        which.client(),
        project.as_deref(),
        &user_home,
        &gyrus_command()?,
    )?;
    let notes = gyrus_sessions::install::notes(which.client(), project.is_some());
    if as_json {
        let v: Vec<Value> = changes
            .iter()
            .map(|c| {
                json!({
                    "path": c.path.display().to_string(),
                    "changed": c.changed,
                    "backup": c.backup.as_ref().map(|b| b.display().to_string()),
                })
            })
            .collect();
        return print_json(&json!({ "files": v, "notes": notes }));
    }
    for c in &changes {
        match (&c.backup, c.changed) {
            (_, false) => println!("unchanged  {}", c.path.display()),
            (Some(b), true) => println!("updated    {} (backup {})", c.path.display(), b.display()),
            (None, true) => println!("created    {}", c.path.display()),
        }
    }
    if changes.iter().any(|c| c.changed) {
        for note in notes {
            println!("note: {note}");
        }
        println!(
            "hooks answer only while `gyrus up` runs; without it they warn and let the client go on"
        );
    }
    Ok(())
}

/// `gyrus session wrap CMD -- ARGS`: registers a session, runs the command with
/// `GYRUS_SESSION` set, heartbeats while it runs, and ends the session when it exits.
fn wrap(
    home: Option<&Path>,
    command: &str,
    args: &[String],
    task: Option<String>,
) -> anyhow::Result<()> {
    let dir = cwd()?;
    let client_kind = match Path::new(command).file_name().and_then(|n| n.to_str()) {
        Some("aider") => "aider",
        Some("claude") => "claude-code",
        Some("codex") => "codex",
        Some("gemini") => "gemini",
        _ => "other",
    };
    let client_session_id = format!("wrap-{}-{}", std::process::id(), now_secs());
    let client = Client::from_env(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registered = runtime.block_on(client.call(
        Method::POST,
        "/api/v1/sessions",
        Some(json!({
            "client": client_kind,
            "client_session_id": client_session_id,
            "cwd": dir,
            "task": task,
        })),
    ))?;
    let id = s(&registered["session"]["id"]);
    eprintln!("{}", s(&registered["digest"]).trim_end());
    let interval = heartbeat_interval(home);
    let status = runtime.block_on(async {
        let mut child = tokio::process::Command::new(command)
            .args(args)
            .env("GYRUS_SESSION", &id)
            .spawn()
            .with_context(|| format!("cannot run {command}"))?;
        let heartbeat = format!("/api/v1/sessions/{}/heartbeat", encode_segment(&id));
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                status = child.wait() => break status.context("waiting for the command failed"),
                _ = tick.tick() => {
                    if let Err(e) = client.call(Method::POST, &heartbeat, None).await {
                        eprintln!("gyrus: heartbeat failed: {e:#}");
                    }
                }
            }
        }
    });
    let end = format!("/api/v1/sessions/{}/end", encode_segment(&id));
    if let Err(e) = runtime.block_on(client.call(Method::POST, &end, None)) {
        eprintln!("gyrus: could not end session {id}: {e:#}");
    }
    let status = status?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(anyhow!("{command} exited with status {code}")),
        None => Err(anyhow!("{command} was killed by a signal")),
    }
}

/// A third of `sessions.expire_after_secs`, at most a minute.
fn heartbeat_interval(home: Option<&Path>) -> Duration {
    let expire = local_config(home).map_or(1800, |c| c.sessions.expire_after_secs);
    Duration::from_secs((expire / 3).clamp(1, 60))
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .context("cannot run git; install it")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "git {} failed: {}",
            args.join(" "),
            err.lines().next().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pre-commit guard: refuses a commit whose staged paths another live session holds.
/// `GYRUS_SESSION` (set by `gyrus session wrap`) names the committing session, whose own
/// leases never count. With the daemon down, warns and lets the commit through unless
/// `sessions.strict` is set.
fn guard(home: Option<&Path>) -> anyhow::Result<()> {
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let top = top.trim_end_matches('\n').to_string();
    let staged = git(&["diff", "--cached", "--name-only", "-z", "--no-renames"])?;
    let paths: Vec<&str> = staged.split('\0').filter(|p| !p.is_empty()).collect();
    if paths.is_empty() {
        return Ok(());
    }
    let session = std::env::var("GYRUS_SESSION")
        .ok()
        .filter(|v| !v.is_empty());
    let body = json!({"cwd": top, "paths": paths, "session": session});
    let answer = (|| -> anyhow::Result<Value> {
        let client = Client::from_env(home)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(client.call(Method::POST, "/api/v1/sessions/check", Some(body)))
    })();
    let v = match answer {
        Ok(v) => v,
        Err(e) if !strict_mode(home) => {
            eprintln!("gyrus: commit not checked against other sessions' leases ({e:#})");
            return Ok(());
        }
        Err(e) => return Err(e.context("the commit guard cannot reach gyrus (sessions.strict)")),
    };
    let empty = Vec::new();
    let held = v["held"].as_array().unwrap_or(&empty);
    if held.is_empty() {
        return Ok(());
    }
    for h in held {
        let task = if h["holder"]["task"].is_null() {
            String::new()
        } else {
            format!(", working on \"{}\"", s(&h["holder"]["task"]))
        };
        eprintln!(
            "gyrus: {} is held by session {} ({}{task})",
            s(&h["path"]),
            s(&h["holder"]["id"]),
            s(&h["holder"]["client"]),
        );
    }
    bail!(
        "commit refused: {} staged path{} held by another session; wait for it, message it (`gyrus session send ID TEXT`), or commit with --no-verify to override",
        held.len(),
        if held.len() == 1 { " is" } else { "s are" }
    )
}

/// Marks the pre-commit hook gyrus writes.
const GUARD_MARK: &str = "# gyrus session guard";

/// `gyrus session guard --install`: writes the repository's pre-commit hook (where
/// `core.hooksPath` or git's default puts it). Idempotent; refuses to replace a pre-commit
/// hook that is not gyrus's.
fn install_guard() -> anyhow::Result<()> {
    let hooks = git(&["rev-parse", "--git-path", "hooks"])?;
    let hooks = PathBuf::from(hooks.trim_end_matches('\n'));
    let hooks = if hooks.is_absolute() {
        hooks
    } else {
        std::env::current_dir()?.join(hooks)
    };
    std::fs::create_dir_all(&hooks)
        .with_context(|| format!("cannot create {}", hooks.display()))?;
    let path = hooks.join("pre-commit");
    let script = format!(
        "#!/bin/sh\n{GUARD_MARK}: refuses commits touching paths another LLM session holds.\nexec {} session guard\n",
        shell_quote(&gyrus_command()?)
    );
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == script => {
            println!("unchanged  {}", path.display());
            return Ok(());
        }
        Ok(existing) if !existing.contains(GUARD_MARK) => bail!(
            "{} exists and is not gyrus's; add `gyrus session guard` to it yourself",
            path.display()
        ),
        _ => {}
    }
    gyrus_home::write_atomic(&path, script.as_bytes(), 0o755)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("installed  {}", path.display());
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
