//! Client commands: each asks the daemon and prints the answer for people or as JSON.

use std::path::Path;

use anyhow::Context;
use http::Method;
use serde_json::{Value, json};

use crate::cli::{AgentArgs, AgentCommand, JsonArg, TokenArgs, TokenCommand};
use crate::client::Client;
use crate::render;

/// Runs one client request on a small single-threaded runtime (client commands must start
/// fast; the daemon is where the threads are).
pub(crate) fn ask(
    home: Option<&Path>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(Client, Value)> {
    let client = Client::from_env(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let value = runtime.block_on(client.call(method, path, body))?;
    Ok((client, value))
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `gyrus status`.
pub fn status(home: Option<&Path>, args: JsonArg) -> anyhow::Result<()> {
    let (_, v) = ask(home, Method::GET, "/api/v1/status", None)?;
    if args.json {
        return print_json(&v);
    }
    let uptime = v["uptime_secs"].as_u64().unwrap_or(0);
    println!(
        "gyrus {} running (pid {}, up {})",
        s(&v["version"]),
        s(&v["pid"]),
        render::duration(uptime)
    );
    println!("home    {}", s(&v["home"]));
    println!("http    http://{}", s(&v["listen"]));
    println!("socket  {}\n", s(&v["socket"]));
    let empty = Vec::new();
    let layers: Vec<Vec<String>> = v["layers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|l| {
            vec![
                s(&l["name"]),
                render::bytes(l["bytes"].as_u64().unwrap_or(0)),
                s(&l["files"]),
                s(&l["backup"]),
            ]
        })
        .collect();
    print!(
        "{}",
        render::table(&["LAYER", "SIZE", "FILES", "BACKUP"], &layers)
    );
    println!();
    let parts: Vec<Vec<String>> = v["parts"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| vec![s(&p["name"]), s(&p["state"]), s(&p["detail"])])
        .collect();
    print!("{}", render::table(&["PART", "STATE", "DETAIL"], &parts));
    Ok(())
}

/// `gyrus token create|list|revoke`.
pub fn token(home: Option<&Path>, args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create {
            name,
            expires,
            json,
        } => {
            let body = json!({ "name": name, "expires": expires });
            let (client, v) = ask(home, Method::POST, "/api/v1/tokens", Some(body))?;
            if json.json {
                return print_json(&v);
            }
            let t = &v["token"];
            let expiry = t["expires_at"]
                .as_u64()
                .map_or("never expires".to_string(), |e| {
                    format!("expires {}", render::time(e))
                });
            println!(
                "Created token {} ({}), {expiry}.",
                s(&t["name"]),
                s(&t["id"])
            );
            println!("Copy it now; it is not stored and will not be shown again:\n");
            println!("{}\n", s(&v["secret"]));
            let listen = client
                .home
                .as_ref()
                .and_then(|h| std::fs::read_to_string(h.listen_path()).ok())
                .map(|a| a.trim().to_string());
            let url = listen.map_or("http://HOST:PORT".to_string(), |a| format!("http://{a}"));
            println!("Use it from another machine or tool with:");
            println!("  export GYRUS_URL={url} GYRUS_TOKEN=<the token above>");
            Ok(())
        }
        TokenCommand::List(json) => {
            let (_, v) = ask(home, Method::GET, "/api/v1/tokens", None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let tokens = v["tokens"].as_array().unwrap_or(&empty);
            if tokens.is_empty() {
                println!("No tokens yet; create one with `gyrus token create NAME`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        s(&t["name"]),
                        s(&t["id"]),
                        s(&t["state"]),
                        t["created_at"].as_u64().map_or("-".into(), render::time),
                        t["expires_at"]
                            .as_u64()
                            .map_or("never".into(), render::time),
                    ]
                })
                .collect();
            print!(
                "{}",
                render::table(&["NAME", "ID", "STATE", "CREATED", "EXPIRES"], &rows)
            );
            Ok(())
        }
        TokenCommand::Revoke { name, json } => {
            let path = format!("/api/v1/tokens/{}", encode_segment(&name));
            let (_, v) = ask(home, Method::DELETE, &path, None)?;
            if json.json {
                return print_json(&v);
            }
            println!(
                "Revoked token {} ({}).",
                s(&v["token"]["name"]),
                s(&v["token"]["id"])
            );
            Ok(())
        }
    }
}

fn agent_rows(agents: &[Value]) -> Vec<Vec<String>> {
    agents
        .iter()
        .map(|a| {
            vec![
                s(&a["name"]),
                s(&a["id"]),
                s(&a["state"]),
                if a["manifest"]["command"].is_null() {
                    "no".into()
                } else {
                    "yes".into()
                },
                s(&a["starts"]),
                a["last_error"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect()
}

fn print_agent(v: &Value) {
    print!(
        "{}",
        render::table(
            &["NAME", "ID", "STATE", "PROCESS", "STARTS", "LAST ERROR"],
            &agent_rows(std::slice::from_ref(v))
        )
    );
}

/// `gyrus agent …`.
pub fn agent(home: Option<&Path>, args: AgentArgs) -> anyhow::Result<()> {
    let one = |method: Method, path: String, json: JsonArg| -> anyhow::Result<()> {
        let (_, v) = ask(home, method, &path, None)?;
        if json.json {
            return print_json(&v);
        }
        print_agent(&v["agent"]);
        Ok(())
    };
    match args.command {
        AgentCommand::Spawn { manifest, json } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
            let (_, v) = ask(
                home,
                Method::POST,
                "/api/v1/agents",
                Some(json!({ "manifest": text })),
            )?;
            if json.json {
                return print_json(&v);
            }
            print_agent(&v["agent"]);
            if let Some(token) = v["token"].as_str() {
                println!(
                    "\nThis agent has no command: it connects by itself with this token (shown once):\n\n{token}\n"
                );
            }
            Ok(())
        }
        AgentCommand::List(json) => {
            let (_, v) = ask(home, Method::GET, "/api/v1/agents", None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let agents = v["agents"].as_array().unwrap_or(&empty);
            if agents.is_empty() {
                println!("No agents; spawn one with `gyrus agent spawn --manifest FILE`.");
                return Ok(());
            }
            print!(
                "{}",
                render::table(
                    &["NAME", "ID", "STATE", "PROCESS", "STARTS", "LAST ERROR"],
                    &agent_rows(agents)
                )
            );
            Ok(())
        }
        AgentCommand::Show { name, json } => one(
            Method::GET,
            format!("/api/v1/agents/{}", encode_segment(&name)),
            json,
        ),
        AgentCommand::Stop { name, json } => one(
            Method::POST,
            format!("/api/v1/agents/{}/stop", encode_segment(&name)),
            json,
        ),
        AgentCommand::Start { name, json } => one(
            Method::POST,
            format!("/api/v1/agents/{}/start", encode_segment(&name)),
            json,
        ),
        AgentCommand::Remove { name, json } => one(
            Method::DELETE,
            format!("/api/v1/agents/{}", encode_segment(&name)),
            json,
        ),
        AgentCommand::Logs { name, bytes } => {
            let path = format!(
                "/api/v1/agents/{}/logs?bytes={bytes}",
                encode_segment(&name)
            );
            let (_, v) = ask(home, Method::GET, &path, None)?;
            print!("{}", v["log"].as_str().unwrap_or(""));
            Ok(())
        }
    }
}

/// Percent-encodes a path segment or query value, so a name with odd characters reaches the daemon (which
/// rejects it with a reason) instead of breaking the request line.
pub(crate) fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
