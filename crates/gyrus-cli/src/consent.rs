//! `gyrus grant add|list|revoke`, `gyrus approvals`, `gyrus approve`, `gyrus deny`.

use std::path::Path;

use http::Method;
use serde_json::{Value, json};

use crate::cli::{GrantArgs, GrantCommand, JsonArg};
use crate::commands::{ask, encode_segment, print_json, s};
use crate::render;

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn grant_rows(grants: &[Value]) -> String {
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            let state = if !g["revoked_at"].is_null() {
                "revoked".to_string()
            } else {
                format!(
                    "{}/{} uses",
                    s(&g["uses"]),
                    g["max_uses"]
                        .as_u64()
                        .map_or("∞".to_string(), |m| m.to_string())
                )
            };
            vec![
                s(&g["id"]),
                s(&g["principal"]),
                list(&g["actions"]),
                list(&g["resources"]),
                g["intent"].as_str().unwrap_or("any").to_string(),
                g["expires_at"]
                    .as_u64()
                    .map_or("never".into(), render::time),
                state,
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "PRINCIPAL",
            "ACTIONS",
            "RESOURCES",
            "INTENT",
            "EXPIRES",
            "STATE",
        ],
        &rows,
    )
}

pub fn grant(home: Option<&Path>, args: GrantArgs) -> anyhow::Result<()> {
    match args.command {
        GrantCommand::Add {
            agent,
            principal,
            actions,
            resources,
            intent,
            valid_for,
            uses,
            json,
        } => {
            let body = json!({"agent": agent, "principal": principal, "actions": actions, "resources": resources,
                "intent": intent, "for": valid_for, "uses": uses});
            let (_, v) = ask(home, Method::POST, "/api/v1/grants", Some(body))?;
            if json.json {
                return print_json(&v);
            }
            print!("{}", grant_rows(std::slice::from_ref(&v["grant"])));
            Ok(())
        }
        GrantCommand::List(json) => {
            let (_, v) = ask(home, Method::GET, "/api/v1/grants", None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let grants = v["grants"].as_array().unwrap_or(&empty);
            if grants.is_empty() {
                println!("No grants: everything but the owner's own requests is denied.");
            } else {
                print!("{}", grant_rows(grants));
            }
            Ok(())
        }
        GrantCommand::Revoke { id, json } => {
            let (_, v) = ask(
                home,
                Method::DELETE,
                &format!("/api/v1/grants/{}", encode_segment(&id)),
                None,
            )?;
            if json.json {
                return print_json(&v);
            }
            println!("Revoked grant {}.", s(&v["grant"]["id"]));
            Ok(())
        }
    }
}

pub fn approvals(home: Option<&Path>, json: JsonArg) -> anyhow::Result<()> {
    let (_, v) = ask(home, Method::GET, "/api/v1/approvals", None)?;
    if json.json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let pending = v["approvals"].as_array().unwrap_or(&empty);
    if pending.is_empty() {
        println!("Nothing waits for your approval.");
        return Ok(());
    }
    for a in pending {
        println!(
            "{}  {} asks, for {:?}{} (expires {}):",
            s(&a["id"]),
            a["principal_label"]
                .as_str()
                .unwrap_or_else(|| a["principal"].as_str().unwrap_or("?")),
            a["intent"].as_str().unwrap_or(""),
            a["plan_id"]
                .as_str()
                .map_or(String::new(), |p| format!(", plan {p}")),
            a["expires_at"].as_u64().map_or("-".into(), render::time)
        );
        for call in a["calls"].as_array().unwrap_or(&empty) {
            println!("    {} on {}", s(&call["action"]), s(&call["resource"]));
        }
    }
    println!("\nAnswer with `gyrus approve ID [--for 1h] [--uses N]` or `gyrus deny ID`.");
    Ok(())
}

pub fn approve(
    home: Option<&Path>,
    id: &str,
    valid_for: Option<String>,
    uses: Option<u32>,
    json: JsonArg,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/approvals/{}/approve", encode_segment(id));
    let (_, v) = ask(
        home,
        Method::POST,
        &path,
        Some(json!({"for": valid_for, "uses": uses})),
    )?;
    if json.json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let grants = v["grants"].as_array().unwrap_or(&empty);
    println!("Approved {id}: {} grant(s).", grants.len());
    print!("{}", grant_rows(grants));
    Ok(())
}

pub fn deny(home: Option<&Path>, id: &str, json: JsonArg) -> anyhow::Result<()> {
    let path = format!("/api/v1/approvals/{}/deny", encode_segment(id));
    let (_, v) = ask(home, Method::POST, &path, None)?;
    if json.json {
        return print_json(&v);
    }
    println!("Denied {id}.");
    Ok(())
}
