//! `gyrus memory …`: the memory tools through the daemon, so every call is decided by the
//! consent broker and audited like any other tool call.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use http::Method;
use serde_json::{Value, json};

use crate::cli::{JsonArg, MemoryArgs, MemoryCommand};
use crate::commands::{ask, print_json, s};

/// Calls `tool` as the owner with `args`; a refused or failed call is an error.
fn call(home: Option<&Path>, tool: &str, args: Value, intent: &str) -> anyhow::Result<Value> {
    let body = json!({"args": args, "intent": intent});
    let (_, v) = ask(
        home,
        Method::POST,
        &format!("/api/v1/tools/{tool}/call"),
        Some(body),
    )?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        anyhow::bail!(
            "{} (action {})",
            s(&v["error"]["message"]),
            s(&v["action_id"])
        );
    }
    Ok(v["output"].clone())
}

fn namespace(ns: Option<String>) -> String {
    ns.unwrap_or_else(|| "owner".to_string())
}

/// A time argument: RFC 3339 (`2026-12-01T10:00:00Z`) or an age before now (`2h`, `7d`),
/// as Unix milliseconds.
fn time_arg(flag: &str, text: &str) -> anyhow::Result<i64> {
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(d) = humantime::parse_duration(text) {
        SystemTime::now()
            .checked_sub(d)
            .with_context(|| format!("--{flag} {text}: too long ago"))?
    } else {
        anyhow::bail!(
            "--{flag} {text:?} is neither a time (2026-12-01T10:00:00Z) nor an age (2h, 7d)"
        );
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn ms_time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|m| u64::try_from(m).ok())
        .map(|m| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(m)).to_string()
        })
        .unwrap_or_else(|| "-".to_string())
}

fn print_item(item: &Value) {
    let tags: Vec<&str> = item["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "{}  {}  {}  {}{}",
        s(&item["id"]),
        s(&item["kind"]),
        ms_time(&item["created_at"]),
        s(&item["namespace"]),
        if tags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", tags.join(", "))
        }
    );
    for line in s(&item["content"]).lines() {
        println!("    {line}");
    }
}

pub fn memory(home: Option<&Path>, args: MemoryArgs) -> anyhow::Result<()> {
    match args.command {
        MemoryCommand::Store {
            content,
            kind,
            tags,
            ttl,
            namespace: ns,
            json,
        } => {
            let ttl_ms = ttl
                .map(|t| {
                    humantime::parse_duration(&t)
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                        .with_context(|| format!("--ttl {t:?} is not a duration such as 10m or 7d"))
                })
                .transpose()?;
            let out = call(
                home,
                "memory.store",
                json!({"content": content, "kind": kind, "tags": tags, "ttl_ms": ttl_ms,
                       "namespace": namespace(ns), "source": "owner"}),
                "remember this",
            )?;
            show(&out, json, |o| println!("{}", s(&o["id"])))
        }
        MemoryCommand::Query {
            text,
            namespaces,
            kinds,
            tags,
            since,
            until,
            as_of,
            mode,
            limit,
            json,
        } => {
            let namespaces = if namespaces.is_empty() {
                vec!["owner".to_string()]
            } else {
                namespaces
            };
            let from = since.map(|t| time_arg("since", &t)).transpose()?;
            let to = until.map(|t| time_arg("until", &t)).transpose()?;
            let as_of = as_of.map(|t| time_arg("as-of", &t)).transpose()?;
            let out = call(
                home,
                "memory.query",
                json!({"text": text, "namespaces": namespaces, "kinds": kinds, "tags": tags,
                       "from": from, "to": to, "as_of": as_of, "mode": mode, "limit": limit}),
                "search my memory",
            )?;
            show(&out, json, |o| {
                let hits = o["hits"].as_array().cloned().unwrap_or_default();
                if hits.is_empty() {
                    eprintln!("nothing found");
                }
                for hit in hits {
                    print_item(&hit["item"]);
                }
            })
        }
        MemoryCommand::Get {
            id,
            namespace: ns,
            json,
        } => {
            let out = call(
                home,
                "memory.get",
                json!({"id": id, "namespace": namespace(ns)}),
                "read a memory",
            )?;
            show(&out, json, print_item)
        }
        MemoryCommand::Update {
            id,
            content,
            namespace: ns,
            json,
        } => {
            let out = call(
                home,
                "memory.update",
                json!({"id": id, "content": content, "namespace": namespace(ns)}),
                "correct a memory",
            )?;
            show(&out, json, |o| println!("{}", s(&o["id"])))
        }
        MemoryCommand::History {
            id,
            namespace: ns,
            json,
        } => {
            let out = call(
                home,
                "memory.history",
                json!({"id": id, "namespace": namespace(ns)}),
                "read a memory's history",
            )?;
            show(&out, json, |o| {
                for v in o["versions"].as_array().cloned().unwrap_or_default() {
                    print_item(&v);
                    println!(
                        "    valid {} .. {}",
                        ms_time(&v["valid_from"]),
                        if v["valid_to"].is_null() {
                            "now".to_string()
                        } else {
                            ms_time(&v["valid_to"])
                        }
                    );
                }
            })
        }
        MemoryCommand::Forget {
            id,
            namespace: ns,
            json,
        } => {
            let out = call(
                home,
                "memory.forget",
                json!({"id": id, "namespace": namespace(ns)}),
                "forget this",
            )?;
            show(&out, json, |o| {
                let n = o["versions"].as_array().map_or(0, Vec::len);
                println!(
                    "forgot {} ({n} version{})",
                    s(&o["id"]),
                    if n == 1 { "" } else { "s" }
                );
            })
        }
        MemoryCommand::Sketch { edit, json } => {
            let out = call(home, "memory.sketch", json!({}), "show my sketch")?;
            if !edit {
                return show(&out, json, |o| print!("{}", s(&o["text"])));
            }
            let edited = edit_text(&s(&out["text"]))?;
            if edited == s(&out["text"]) {
                eprintln!("sketch unchanged");
                return Ok(());
            }
            let out = call(
                home,
                "memory.sketch",
                json!({"text": edited}),
                "edit my sketch",
            )?;
            for d in out["dropped"].as_array().cloned().unwrap_or_default() {
                eprintln!("dropped to fit the budget: {}", s(&d));
            }
            show(&out, json, |o| print!("{}", s(&o["text"])))
        }
        MemoryCommand::Ingest {
            path,
            namespace: ns,
            tags,
            json,
        } => {
            let abs = std::path::absolute(&path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            eprintln!("ingesting {} …", abs.display());
            let out = call(
                home,
                "memory.ingest",
                json!({"path": abs, "namespace": namespace(ns), "tags": tags}),
                "add these files to my knowledge base",
            )?;
            show(&out, json, |o| {
                println!(
                    "{} files: {} chunks stored, {} updated, {} unchanged, {} retired",
                    o["files"], o["stored"], o["updated"], o["unchanged"], o["retired"]
                );
                for skipped in o["skipped"].as_array().cloned().unwrap_or_default() {
                    eprintln!("skipped {}", s(&skipped));
                }
            })
        }
    }
}

fn show(out: &Value, json: JsonArg, human: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if json.json {
        print_json(out)?;
    } else {
        human(out);
    }
    Ok(())
}

/// Opens `text` in `$VISUAL` or `$EDITOR` (else `vi`) and returns what was saved.
fn edit_text(text: &str) -> anyhow::Result<String> {
    let file = tempfile::Builder::new()
        .prefix("gyrus-sketch-")
        .suffix(".md")
        .tempfile()
        .context("cannot create a temporary file for the editor")?;
    std::fs::write(file.path(), text).context("cannot write the temporary file")?;
    let editor = ["VISUAL", "EDITOR"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot run the editor {editor:?}; set $EDITOR"))?;
    if !status.success() {
        anyhow::bail!("the editor {editor:?} failed ({status}); the sketch is unchanged");
    }
    std::fs::read_to_string(file.path()).context("cannot read the edited sketch")
}
