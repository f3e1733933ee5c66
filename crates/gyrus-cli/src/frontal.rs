//! `gyrus ask` and `gyrus route …`: the frontal lobe through the daemon.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use http::Method;
use serde_json::{Value, json};

use crate::cli::{AskArgs, RouteArgs, RouteCommand};
use crate::client::Client;
use crate::commands::{print_json, s};
use crate::render;

/// How long `gyrus ask` waits: a small model on a slow CPU, or several tool rounds, take a
/// while; the daemon's drivers have their own timeouts within it.
const ASK_TIMEOUT: Duration = Duration::from_secs(900);

/// One request to the daemon with `timeout`; an error answer is an error with its message.
fn call(
    home: Option<&Path>,
    method: Method,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let client = Client::from_env(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (status, value) = runtime.block_on(client.request(method, path, body, timeout))?;
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the daemon answered {status}"));
    anyhow::bail!(message)
}

/// `gyrus ask "…"`.
pub fn ask(home: Option<&Path>, args: AskArgs) -> anyhow::Result<()> {
    let body = json!({"text": args.text, "agent": args.agent, "cortex": args.cortex,
        "wait_ms": args.wait.map(|secs| secs.saturating_mul(1000))});
    let v = call(home, Method::POST, "/api/v1/ask", Some(body), ASK_TIMEOUT)?;
    if args.json.json {
        return print_json(&v);
    }
    println!("{}", s(&v["answer"]).trim_end());
    let by = match (v["skill"].as_str(), v["cortex"].as_str()) {
        (Some(skill), _) => format!("reactive skill {skill}, no model"),
        (None, Some(cortex)) => format!("{} via {cortex}", s(&v["tier"])),
        (None, None) => s(&v["tier"]),
    };
    let tokens = v["usage"]["input_tokens"].as_u64().unwrap_or(0)
        + v["usage"]["output_tokens"].as_u64().unwrap_or(0);
    let mut footer = format!("— {by}, {} ms", s(&v["latency_ms"]));
    if tokens > 0 {
        footer.push_str(&format!(", {tokens} tokens"));
    }
    if let Some(cost) = v["cost"].as_f64().filter(|c| *c > 0.0) {
        footer.push_str(&format!(", ${cost:.4}"));
    }
    if v["validated"] == Value::Bool(false) {
        footer.push_str(", answer not validated");
    }
    eprintln!("{footer}");
    for call in v["tool_calls"].as_array().into_iter().flatten() {
        eprintln!(
            "  tool {} → {}{} (action {}, gyrus audit why {})",
            s(&call["tool"]),
            s(&call["decision"]),
            call["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            s(&call["action_id"]),
            s(&call["audit_seq"]),
        );
    }
    Ok(())
}

/// `gyrus route …`.
pub fn route(home: Option<&Path>, args: RouteArgs) -> anyhow::Result<()> {
    match args.command {
        RouteCommand::Explain {
            text,
            agent,
            cortex,
            json,
        } => {
            let body = json!({"text": text, "agent": agent, "cortex": cortex});
            let v = call(
                home,
                Method::POST,
                "/api/v1/route/explain",
                Some(body),
                Duration::from_secs(60),
            )?;
            if json.json {
                return print_json(&v);
            }
            print_explanation(&v);
            Ok(())
        }
        RouteCommand::Log { limit, json } => {
            let v = call(
                home,
                Method::GET,
                &format!("/api/v1/routes?limit={limit}"),
                None,
                Duration::from_secs(30),
            )?;
            if json.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        s(&r["id"]),
                        r["at"]
                            .as_u64()
                            .map_or_else(|| "-".into(), |ms| render::time(ms / 1000)),
                        s(&r["agent"]),
                        s(&r["kind"]),
                        s(&r["tier"]),
                        s(&r["cortex"]),
                        match r["actual_outcome"].as_bool() {
                            Some(true) => "ok".into(),
                            Some(false) => "failed".into(),
                            None => "-".into(),
                        },
                        s(&r["tokens"]),
                        format!("{} ms", s(&r["latency_ms"])),
                        s(&r["reason"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no routing decision yet: `gyrus ask \"…\"` makes one");
                return Ok(());
            }
            print!(
                "{}",
                render::table(
                    &[
                        "ID", "AT", "AGENT", "KIND", "TIER", "TARGET", "OUTCOME", "TOKENS",
                        "LATENCY", "REASON"
                    ],
                    &rows
                )
            );
            Ok(())
        }
    }
}

fn print_explanation(v: &Value) {
    let decision = &v["decision"];
    let kind = s(&v["kind"]);
    match kind.as_str() {
        "skill" | "cortex" => {
            let route = &decision["route"];
            let target = match &route["target"] {
                Value::Object(t) if t.contains_key("skill") => format!(
                    "reactive skill {} (tool {}, no model)",
                    s(&t["skill"]["skill"]["id"]),
                    s(&t["skill"]["skill"]["tool"])
                ),
                Value::Object(t) if t.contains_key("cortex") => {
                    format!("cortex {}", s(&t["cortex"]))
                }
                other => s(other),
            };
            println!("→ {target}, tier {}", s(&route["tier"]));
            println!("  why: {}", s(&route["reason"]));
            if let Some(p) = route["predicted"].as_array().filter(|p| !p.is_empty()) {
                let tiers = ["reactive", "operational", "tactical", "strategic"];
                let shown: Vec<String> = p
                    .iter()
                    .zip(tiers)
                    .map(|(p, t)| format!("{t} {:.2}", p.as_f64().unwrap_or(0.0)))
                    .collect();
                println!("  predicted P(success): {}", shown.join(", "));
            }
        }
        _ => {
            let (reason, hint) = match decision.as_object().and_then(|o| o.values().next()) {
                Some(inner) => (
                    s(&inner["reason"]),
                    inner["hint"].as_str().map(str::to_owned),
                ),
                None => (s(decision), None),
            };
            println!("→ {kind}: {reason}");
            if let Some(hint) = hint {
                println!("  {hint}");
            }
        }
    }
    let cortices = v["cortices"].as_array().cloned().unwrap_or_default();
    if cortices.is_empty() {
        println!("  no cortex is configured (`gyrus cortex add …`)");
    } else {
        println!("  cortices:");
        for c in cortices {
            println!(
                "    {} ({}, {}) {}",
                s(&c["name"]),
                s(&c["tier"]),
                s(&c["driver"]),
                if c["healthy"] == Value::Bool(true) {
                    "healthy".to_owned()
                } else {
                    format!("unhealthy: {}", s(&c["detail"]))
                }
            );
        }
    }
    println!("  decided in {} µs", s(&v["micros"]));
}
