//! `gyrus send` and `gyrus recv`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use http::Method;
use serde_json::{Value, json};

use crate::cli::{RecvArgs, SendArgs};
use crate::commands::{ask, encode_segment, print_json, s};

fn duration(text: &str, what: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .map_err(|e| anyhow!("invalid {what} {text:?}: {e}; use e.g. 10s or 5m"))
}

pub fn send(home: Option<&Path>, args: SendArgs) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(&args.payload)
        .with_context(|| format!("--payload is not valid JSON: {}", args.payload))?;
    let ttl_ms = args
        .ttl
        .as_deref()
        .map(|t| duration(t, "--ttl"))
        .transpose()?
        .map(|d| d.as_millis() as u64);
    if let Some(within) = &args.reply_within {
        let timeout = duration(within, "--reply-within")?;
        let body = json!({"intent": args.intent, "payload": payload, "to": args.to,
            "timeout_ms": timeout.as_millis() as u64});
        let (_, v) = ask(home, Method::POST, "/api/v1/messages/request", Some(body))?;
        if args.json.json {
            return print_json(&v);
        }
        let r = &v["reply"];
        println!(
            "{} from {}: {}",
            s(&r["intent"]),
            s(&r["from"]),
            r["payload"]
        );
        return Ok(());
    }
    let body = json!({"intent": args.intent, "payload": payload, "to": args.to, "ttl_ms": ttl_ms,
        "correlation": args.reply_to});
    let (_, v) = ask(home, Method::POST, "/api/v1/messages", Some(body))?;
    if args.json.json {
        return print_json(&v);
    }
    match (v["mailbox_id"].as_u64(), args.to) {
        (Some(_), Some(to)) => println!("Sent {} to {to}'s mailbox.", s(&v["id"])),
        _ => println!(
            "Sent {} to {} live subscriber(s).",
            s(&v["id"]),
            s(&v["subscribers"])
        ),
    }
    Ok(())
}

pub fn recv(home: Option<&Path>, args: RecvArgs) -> anyhow::Result<()> {
    let default_wait = if args.as_agent.is_some() { "0s" } else { "30s" };
    let wait = duration(args.wait.as_deref().unwrap_or(default_wait), "--wait")?;
    let mut path = format!(
        "/api/v1/messages?pattern={}&max={}&wait_ms={}",
        encode_segment(&args.pattern),
        args.max,
        wait.as_millis()
    );
    if let Some(agent) = &args.as_agent {
        path.push_str(&format!("&as={}", encode_segment(agent)));
    }
    if let Some(group) = &args.group {
        path.push_str(&format!("&group={}", encode_segment(group)));
    }
    let (_, v) = ask(home, Method::GET, &path, None)?;
    let empty = Vec::new();
    let messages = v["messages"].as_array().unwrap_or(&empty);
    if args.json.json {
        print_json(&v)?;
    } else if messages.is_empty() {
        println!("No messages.");
    } else {
        for m in messages {
            let e = &m["envelope"];
            println!(
                "{} {} from {}: {}",
                s(&e["id"]),
                s(&e["intent"]),
                s(&e["from"]),
                e["payload"]
            );
        }
    }
    // Acknowledge what was printed, so it is not delivered again.
    let ids: Vec<u64> = messages
        .iter()
        .filter_map(|m| m["delivery_id"].as_u64())
        .collect();
    if !args.no_ack && !ids.is_empty() {
        ask(
            home,
            Method::POST,
            "/api/v1/messages/ack",
            Some(json!({"as": v["agent"], "ids": ids})),
        )?;
    }
    Ok(())
}
