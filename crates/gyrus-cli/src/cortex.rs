//! `gyrus cortex add|list|remove|test`: the configured cortices through the daemon, which
//! writes `user/cortices.toml` (owner only, decided and audited), and `gyrus cortex pull`,
//! which runs here ([`crate::pull`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use http::Method;
use serde_json::{Value, json};

use crate::cli::{CortexArgs, CortexCommand, JsonArg};
use crate::client::Client;
use crate::commands::{encode_segment, print_json, s};
use crate::render;

/// How long `gyrus cortex test` waits: the embedded model's first load and a slow remote
/// API both count (the daemon's `api.request_timeout_secs` still applies).
const TEST_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the other commands wait.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `gyrus cortex …`.
pub fn cortex(home: Option<&Path>, args: CortexArgs) -> anyhow::Result<()> {
    match args.command {
        CortexCommand::Add(add) => self::add(home, add),
        CortexCommand::List(json) => list(home, json),
        CortexCommand::Remove { name, json } => {
            let client = Client::from_env(home)?;
            let path = format!("/api/v1/cortices/{}", encode_segment(&name));
            let v = send(&client, Method::DELETE, &path, None, TIMEOUT)?;
            if json.json {
                return print_json(&v);
            }
            println!("Removed cortex {}.", s(&v["removed"]));
            Ok(())
        }
        CortexCommand::Test { name, json } => test(home, &name, json),
        CortexCommand::Pull {
            model,
            source,
            force,
        } => crate::pull::run(home, &model, source, force),
    }
}

/// Sends one request and returns the JSON of a successful answer; an error answer is an
/// error with the daemon's message.
fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (status, v) = runtime.block_on(client.request(method, path, body, timeout))?;
    if status.is_success() {
        return Ok(v);
    }
    Err(anyhow!(
        "{}",
        v["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the daemon answered {status}"), str::to_owned)
    ))
}

/// A key file as the registry wants it: relative to `user/`. An absolute path inside this
/// home's `user/` is made relative; anything else goes as given, for the daemon to refuse
/// with the registry's reason.
fn key_file_arg(client: &Client, path: PathBuf) -> String {
    let relative = client
        .home
        .as_ref()
        .map(|h| h.layer(gyrus_home::Layer::User))
        .and_then(|user| path.strip_prefix(&user).ok().map(Path::to_path_buf));
    relative.unwrap_or(path).display().to_string()
}

fn add(home: Option<&Path>, add: crate::cli::CortexAdd) -> anyhow::Result<()> {
    let client = Client::from_env(home)?;
    let key_file = add.key_file.map(|p| key_file_arg(&client, p));
    let body = json!({
        "name": add.name,
        "driver": add.driver.as_str(),
        "model": add.model,
        "tier": add.tier.as_str(),
        "url": add.url,
        "key_env": add.key_env,
        "key_file": key_file,
        "max_concurrency": add.max_concurrency,
        "price_in": add.price_in,
        "price_out": add.price_out,
    });
    let v = send(
        &client,
        Method::POST,
        "/api/v1/cortices",
        Some(body),
        TIMEOUT,
    )?;
    if add.json.json {
        return print_json(&v);
    }
    let c = &v["cortex"];
    println!(
        "Added cortex {} ({} tier, {} {}); requests name it gyrus/{}.",
        s(&c["name"]),
        s(&c["tier"]),
        s(&c["driver"]),
        s(&c["model"]),
        s(&c["name"])
    );
    if c["healthy"] == Value::Bool(true) {
        println!(
            "Check it answers with `gyrus cortex test {}`.",
            s(&c["name"])
        );
    } else {
        println!("It is not usable yet: {}", s(&c["detail"]));
    }
    Ok(())
}

/// The table rows of `gyrus cortex list`.
fn rows(cortices: &[Value]) -> Vec<Vec<String>> {
    cortices
        .iter()
        .map(|c| {
            vec![
                s(&c["name"]),
                s(&c["tier"]),
                s(&c["driver"]),
                s(&c["model"]),
                s(&c["url"]),
                s(&c["key"]),
                if c["healthy"] == Value::Bool(true) {
                    "ok".into()
                } else {
                    "unhealthy".into()
                },
                s(&c["detail"]),
            ]
        })
        .collect()
}

fn list(home: Option<&Path>, json: JsonArg) -> anyhow::Result<()> {
    let client = Client::from_env(home)?;
    let v = send(&client, Method::GET, "/api/v1/cortices", None, TIMEOUT)?;
    if json.json {
        return print_json(&v);
    }
    if let Some(error) = v["registry_error"].as_str() {
        println!("The registry cannot be read, so no cortex is configured: {error}\n");
    }
    let empty = Vec::new();
    let cortices = v["cortices"].as_array().unwrap_or(&empty);
    if cortices.is_empty() {
        println!(
            "No cortices; add one with `gyrus cortex add NAME --driver D --model M --tier T` \
             (`gyrus cortex pull smollm2` fetches a small model for the embedded cortex)."
        );
        return Ok(());
    }
    print!(
        "{}",
        render::table(
            &[
                "NAME", "TIER", "DRIVER", "MODEL", "URL", "KEY", "HEALTH", "DETAIL"
            ],
            &rows(cortices)
        )
    );
    Ok(())
}

fn test(home: Option<&Path>, name: &str, json: JsonArg) -> anyhow::Result<()> {
    let client = Client::from_env(home)?;
    let path = format!("/api/v1/cortices/{}/test", encode_segment(name));
    let v = send(&client, Method::POST, &path, None, TEST_TIMEOUT)?;
    let ok = v["ok"] == Value::Bool(true);
    if json.json {
        print_json(&v)?;
    } else if ok {
        println!(
            "Cortex {} answered in {} ms ({}, {} tokens in, {} out):",
            s(&v["cortex"]),
            s(&v["latency_ms"]),
            s(&v["model"]),
            s(&v["usage"]["input_tokens"]),
            s(&v["usage"]["output_tokens"])
        );
        println!("{}", v["reply"].as_str().unwrap_or("").trim());
    }
    if ok {
        return Ok(());
    }
    Err(anyhow!(
        "cortex {} failed its test after {} ms: {}",
        s(&v["cortex"]),
        s(&v["latency_ms"]),
        s(&v["error"])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_health_and_never_more_than_the_key_source() {
        let cortices = vec![json!({
            "name": "big", "tier": "strategic", "driver": "anthropic",
            "model": "claude-sonnet-4-5", "url": "https://api.anthropic.com",
            "key": "env:ANTHROPIC_API_KEY", "healthy": false,
            "detail": "set ANTHROPIC_API_KEY"
        })];
        let table = render::table(
            &[
                "NAME", "TIER", "DRIVER", "MODEL", "URL", "KEY", "HEALTH", "DETAIL",
            ],
            &rows(&cortices),
        );
        assert!(table.contains("env:ANTHROPIC_API_KEY"), "{table}");
        assert!(
            table.contains("unhealthy  set ANTHROPIC_API_KEY"),
            "{table}"
        );
    }
}
