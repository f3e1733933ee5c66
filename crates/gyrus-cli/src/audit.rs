//! `gyrus audit tail|show|why|verify`.

use std::path::Path;

use anyhow::{anyhow, bail};
use gyrus_audit::AuditLog;
use gyrus_home::{Home, resolve};
use http::Method;
use serde_json::Value;

use crate::cli::{AuditArgs, AuditCommand};
use crate::commands::{ask, print_json, s};
use crate::render;

pub fn run(home: Option<&Path>, args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Tail { limit, json } => {
            let (_, v) = ask(
                home,
                Method::GET,
                &format!("/api/v1/audit?limit={limit}"),
                None,
            )?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            let entries = v["entries"].as_array().unwrap_or(&empty);
            if entries.is_empty() {
                println!("The audit trail is empty.");
                return Ok(());
            }
            print!("{}", entry_table(entries));
            Ok(())
        }
        AuditCommand::Show { seq, json } => {
            let (_, v) = ask(home, Method::GET, &format!("/api/v1/audit/{seq}"), None)?;
            if json.json {
                return print_json(&v);
            }
            let entry = &v["entry"];
            if let Some(fields) = entry.as_object() {
                for (key, value) in fields {
                    println!("{key:<14} {}", s(value));
                }
            }
            Ok(())
        }
        AuditCommand::Why { seq, json } => {
            let (_, v) = ask(home, Method::GET, &format!("/api/v1/audit/{seq}/why"), None)?;
            if json.json {
                return print_json(&v);
            }
            let empty = Vec::new();
            print!("{}", why(v["entries"].as_array().unwrap_or(&empty)));
            Ok(())
        }
        AuditCommand::Verify(json) => verify(home, json.json),
    }
}

fn entry_table(entries: &[Value]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                s(&e["seq"]),
                e["time"]
                    .as_u64()
                    .map_or("-".into(), |ms| render::time(ms / 1000)),
                s(&e["principal"]),
                s(&e["kind"]),
                s(&e["action"]),
                s(&e["resource"]),
                e["decision"].as_str().unwrap_or("").to_string(),
                e["outcome"]
                    .as_str()
                    .map_or_else(|| s(&e["reason"]), str::to_string),
            ]
        })
        .collect();
    render::table(
        &[
            "SEQ",
            "TIME",
            "PRINCIPAL",
            "KIND",
            "ACTION",
            "RESOURCE",
            "DECISION",
            "OUTCOME/REASON",
        ],
        &rows,
    )
}

/// The chain of one request: request → intent → grant/policy → decision → outcome.
fn why(entries: &[Value]) -> String {
    let Some(first) = entries.first() else {
        return "No entries.\n".into();
    };
    let mut out = format!(
        "request {} by {}: {} on {}\n",
        s(&first["request_id"]),
        s(&first["principal"]),
        s(&first["action"]),
        s(&first["resource"])
    );
    for e in entries {
        let seq = s(&e["seq"]);
        match e["kind"].as_str() {
            Some("decision") => {
                out.push_str(&format!(
                    "  #{seq} intent    {:?} (from {})\n",
                    e["intent"].as_str().unwrap_or(""),
                    s(&e["intent_source"])
                ));
                let policies: Vec<String> = e["policies"]
                    .as_array()
                    .map(|p| p.iter().map(s).collect())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  #{seq} grant     {}; policies {}\n",
                    e["grant_id"].as_str().unwrap_or("none"),
                    if policies.is_empty() {
                        "none".into()
                    } else {
                        policies.join(", ")
                    }
                ));
                out.push_str(&format!(
                    "  #{seq} decision  {}: {}\n",
                    s(&e["decision"]),
                    s(&e["reason"])
                ));
            }
            Some("outcome") => {
                out.push_str(&format!("  #{seq} outcome   {}\n", s(&e["outcome"])));
            }
            _ => out.push_str(&format!("  #{seq} event     {}\n", s(&e["reason"]))),
        }
    }
    out
}

/// Over HTTP (GYRUS_URL) the daemon verifies; on this host the files are verified directly,
/// read-only, so a stopped daemon (or a tampered database) is no obstacle.
fn verify(home: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let report: Value = if std::env::var_os("GYRUS_URL").is_some_and(|v| !v.is_empty()) {
        ask(home, Method::GET, "/api/v1/audit/verify", None)?.1
    } else {
        let resolved = resolve(home, |k| std::env::var_os(k))?;
        let home = Home::new(resolved.path);
        let (db, key, checkpoint) = gyrus_kernel::audit_paths(&home);
        if !db.exists() {
            bail!(
                "no audit trail at {}; it is created when gyrus first runs",
                db.display()
            );
        }
        let report = AuditLog::verify_files(&db, &key, &checkpoint)
            .map_err(|e| anyhow!("cannot verify: {e}"))?;
        serde_json::to_value(report)?
    };
    if json {
        print_json(&report)?;
    }
    match report["first_bad"].as_object() {
        None => {
            if !json {
                println!(
                    "The audit trail is intact: {} entries, root {}.",
                    s(&report["entries"]),
                    s(&report["root_hash"])
                );
            }
            Ok(())
        }
        Some(bad) => {
            let place = bad
                .get("seq")
                .and_then(Value::as_u64)
                .map_or("the log".to_string(), |seq| format!("entry {seq}"));
            let reason = bad.get("reason").map(s).unwrap_or_default();
            bail!("the audit trail is NOT intact: first bad place: {place}: {reason}")
        }
    }
}
