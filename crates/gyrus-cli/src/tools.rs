//! `gyrus tool list|describe|call` and `gyrus undo`.

use std::path::Path;

use anyhow::Context;
use http::Method;
use serde_json::{Value, json};

use crate::cli::{JsonArg, ToolArgs, ToolCommand};
use crate::commands::{ask, encode_segment, print_json, s};
use crate::render;

pub fn tool(home: Option<&Path>, args: ToolArgs) -> anyhow::Result<()> {
    match args.command {
        ToolCommand::List(json) => {
            let (_, v) = ask(home, Method::GET, "/api/v1/tools", None)?;
            if json.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["tools"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            vec![
                                s(&t["name"]),
                                s(&t["risk"]),
                                if t["undoable"] == json!(true) {
                                    "yes"
                                } else {
                                    "no"
                                }
                                .into(),
                                s(&t["description"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print!(
                "{}",
                render::table(&["NAME", "RISK", "UNDO", "DESCRIPTION"], &rows)
            );
            Ok(())
        }
        ToolCommand::Describe { name, json } => {
            let path = format!("/api/v1/tools/{}", encode_segment(&name));
            let (_, v) = ask(home, Method::GET, &path, None)?;
            if json.json {
                return print_json(&v);
            }
            println!("{}: {}", s(&v["name"]), s(&v["description"]));
            println!(
                "risk: {}   undoable: {}   timeout: {} ms   output limit: {}",
                s(&v["risk"]),
                if v["undoable"] == json!(true) {
                    "yes"
                } else {
                    "no"
                },
                s(&v["timeout"]),
                render::bytes(v["max_output_bytes"].as_u64().unwrap_or(0)),
            );
            println!("arguments:");
            let schema = &v["input_schema"];
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (field, p) in props {
                    let ty = match &p["type"] {
                        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join("|"),
                        Value::Null => "any".into(),
                        t => s(t),
                    };
                    let req = if required.contains(&field.as_str()) {
                        " (required)"
                    } else {
                        ""
                    };
                    let doc = p["description"].as_str().unwrap_or("").replace('\n', " ");
                    println!("  {field}: {ty}{req}  {doc}");
                }
            }
            Ok(())
        }
        ToolCommand::Call {
            name,
            args,
            intent,
            plan,
            json,
        } => {
            let args: Value = serde_json::from_str(&args).with_context(|| {
                "--args is not valid JSON; pass an object such as '{\"path\":\"/etc/hostname\"}'"
            })?;
            let path = format!("/api/v1/tools/{}/call", encode_segment(&name));
            let body = json!({"args": args, "intent": intent, "plan_id": plan});
            let (_, v) = ask(home, Method::POST, &path, Some(body))?;
            report(&v, json)
        }
    }
}

/// Prints a call result; a refused or failed call is an error (exit 1).
fn report(v: &Value, json: JsonArg) -> anyhow::Result<()> {
    let refused = v.get("error").is_some_and(|e| !e.is_null());
    if json.json {
        print_json(v)?;
    } else if !refused {
        match &v["output"] {
            // File contents print as they are, so `gyrus tool call fs.read … > copy` works.
            Value::Object(o)
                if o.get("encoding") == Some(&json!("utf8")) && o["content"].is_string() =>
            {
                print!("{}", o["content"].as_str().unwrap_or_default());
            }
            out => println!("{}", serde_json::to_string_pretty(out)?),
        }
        eprintln!(
            "action {} ({}{})",
            s(&v["action_id"]),
            s(&v["decision"]["outcome"]),
            if v["undoable"] == json!(true) {
                format!("; undo with `gyrus undo {}`", s(&v["action_id"]))
            } else {
                String::new()
            }
        );
    }
    if refused {
        anyhow::bail!(
            "{} (action {})",
            s(&v["error"]["message"]),
            s(&v["action_id"])
        );
    }
    Ok(())
}

pub fn undo(
    home: Option<&Path>,
    action_id: &str,
    intent: Option<String>,
    json: JsonArg,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/undo/{}", encode_segment(action_id));
    let (_, v) = ask(home, Method::POST, &path, Some(json!({"intent": intent})))?;
    report(&v, json)
}
