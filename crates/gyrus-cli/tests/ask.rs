//! `gyrus ask` and `gyrus route …` against a real daemon: reactive skills answer through
//! tools with no model, the embedded SmolLM2 answers through the operational tier, a failed
//! answer escalates, the model's tool calls go through the broker (for the owner, as one plan
//! the owner approves once), and every decision is logged.
//!
//! Paid APIs are stood in for by a scripted OpenAI-compatible server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::{Daemon, ok};

/// A scripted OpenAI-compatible server: answers each `/chat/completions` with the next
/// scripted body (the last one repeats) and records every request body.
struct Scripted {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Scripted {
    fn start(answers: Vec<Value>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(request);
                    log.len()
                };
                let answer = answers[(n - 1).min(answers.len() - 1)].to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Scripted { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn requests(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// An OpenAI chat completion saying `text`.
fn says(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    })
}

/// An OpenAI chat completion calling `tool` with `args`.
fn calls(tool: &str, args: Value) -> Value {
    json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": tool, "arguments": args.to_string()}}]},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
    })
}

/// Writes `user/cortices.toml` with these `[[cortex]]` entries.
fn cortices(home: &Path, entries: &str) {
    std::fs::create_dir_all(home.join("user")).unwrap();
    std::fs::write(home.join("user/cortices.toml"), entries).unwrap();
}

fn smollm2() -> PathBuf {
    if let Some(path) = std::env::var_os("GYRUS_SMOLLM2_GGUF") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "the test model {} is missing: run `cargo xtask fetch-models`",
        path.display()
    );
    path
}

fn ask_json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["ask"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&ok(daemon.cli(&all))).unwrap()
}

#[test]
fn reactive_questions_are_answered_by_tools_and_never_reach_a_model() {
    let home = tempfile::tempdir().unwrap();
    // A configured model that must not be called.
    let model = Scripted::start(vec![says("a model answered")]);
    cortices(
        home.path(),
        &format!(
            "[[cortex]]\nname = \"big\"\ndriver = \"openai\"\nmodel = \"m\"\ntier = \"strategic\"\n\
             url = \"{}\"\n",
            model.url()
        ),
    );
    let daemon = Daemon::start(home.path(), None, &[]);

    let v = ask_json(&daemon, &["how much disk space is free?"]);
    assert_eq!(v["tier"], "reactive", "{v}");
    assert_eq!(v["skill"], "disk");
    assert_eq!(v["cortex"], Value::Null);
    assert_eq!(v["validated"], true);
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains(" free of "), "{answer}");
    let call = &v["tool_calls"][0];
    assert_eq!(call["tool"], "sys.health");
    assert_eq!(call["decision"], "allow");
    let action = call["action_id"].as_str().unwrap();
    assert!(action.starts_with("req_"), "{action}");
    // The call is in the audit trail under that id.
    let seq = call["audit_seq"].as_u64().unwrap().to_string();
    let why = ok(daemon.cli(&["audit", "why", &seq]));
    assert!(why.contains("sys.health") && why.contains(action), "{why}");

    for (question, skill) in [
        ("how much RAM is used", "memory"),
        ("how long has this machine been up?", "uptime"),
        ("which grants are active", "grants"),
    ] {
        let v = ask_json(&daemon, &[question]);
        assert_eq!(v["skill"], skill, "{question}: {v}");
        assert!(!v["answer"].as_str().unwrap().is_empty());
    }
    // The plain-text form prints the answer, and who answered on stderr.
    let out = daemon.cli(&["ask", "show disk usage"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(" free of "));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reactive skill disk, no model"));

    assert!(
        model.requests().is_empty(),
        "a reactive question reached a model"
    );
    // Each decision is in the route log.
    let log: Value =
        serde_json::from_str(&ok(daemon.cli(&["route", "log", "--json", "--limit", "10"])))
            .unwrap();
    let routes = log["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 5, "{log}");
    assert!(
        routes
            .iter()
            .all(|r| r["kind"] == "skill" && r["tier"] == "reactive")
    );
    assert!(routes.iter().all(|r| r["actual_outcome"] == true));
}

#[test]
fn with_nothing_configured_a_model_question_says_how_to_add_a_cortex() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let out = daemon.cli(&["ask", "write a haiku about autumn"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no cortex is configured"), "{err}");
    assert!(err.contains("gyrus cortex add"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let v: Value = serde_json::from_str(&ok(daemon.cli(&[
        "route",
        "explain",
        "write a haiku about autumn",
        "--json",
    ])))
    .unwrap();
    assert_eq!(v["kind"], "unservable", "{v}");
    let v: Value = serde_json::from_str(&ok(daemon.cli(&[
        "route",
        "explain",
        "is my disk full",
        "--json",
    ])))
    .unwrap();
    assert_eq!(v["kind"], "skill", "{v}");
    let text = ok(daemon.cli(&["route", "explain", "is my disk full"]));
    assert!(text.contains("reactive skill disk"), "{text}");

    let out = daemon.cli(&["ask", "   "]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

#[test]
fn the_embedded_smollm2_answers_through_the_operational_tier() {
    let home = tempfile::tempdir().unwrap();
    cortices(
        home.path(),
        &format!(
            "[[cortex]]\nname = \"small\"\ndriver = \"local\"\nmodel = \"{}\"\n\
             tier = \"operational\"\n",
            smollm2().display()
        ),
    );
    let daemon = Daemon::start(home.path(), None, &[]);
    let v = ask_json(
        &daemon,
        &["What is the capital of France? Answer in one word."],
    );
    assert_eq!(v["tier"], "operational", "{v}");
    assert_eq!(v["cortex"], "small");
    assert_eq!(v["skill"], Value::Null);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(!v["answer"].as_str().unwrap().trim().is_empty(), "{v}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1);
    // At temperature 0 the same question gets the same answer.
    let again = ask_json(
        &daemon,
        &["What is the capital of France? Answer in one word."],
    );
    assert_eq!(again["answer"], v["answer"]);
    let log: Value = serde_json::from_str(&ok(daemon.cli(&["route", "log", "--json"]))).unwrap();
    let newest = &log["routes"][0];
    assert_eq!(newest["kind"], "cortex");
    assert_eq!(newest["cortex"], "small");
    assert!(newest["tokens"].as_u64().unwrap() > 0);
    // Both calls went through the scheduler, and its metrics say so.
    let metrics = daemon.unix("GET /metrics HTTP/1.1", b"");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("gyrus_scheduler_completed{cortex=\"small\",class=\"interactive\"} 2"),
        "{text}"
    );
    assert!(text.contains("gyrus_scheduler_wait_p95_seconds{cortex=\"small\""));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn an_answer_that_fails_validation_escalates_to_the_next_tier() {
    let home = tempfile::tempdir().unwrap();
    let weak = Scripted::start(vec![says("")]);
    let strong = Scripted::start(vec![says("Paris.")]);
    cortices(
        home.path(),
        &format!(
            "[[cortex]]\nname = \"weak\"\ndriver = \"openai\"\nmodel = \"w\"\n\
             tier = \"operational\"\nurl = \"{}\"\n\n\
             [[cortex]]\nname = \"strong\"\ndriver = \"openai\"\nmodel = \"s\"\n\
             tier = \"strategic\"\nurl = \"{}\"\nprice_in = 3.0\nprice_out = 15.0\n",
            weak.url(),
            strong.url()
        ),
    );
    let daemon = Daemon::start(home.path(), None, &[]);
    let v = ask_json(
        &daemon,
        &["what is the capital of France", "--cortex", "weak"],
    );
    assert_eq!(v["cortex"], "strong", "{v}");
    assert_eq!(v["tier"], "strategic");
    assert_eq!(v["answer"], "Paris.");
    assert_eq!(v["validated"], true);
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{v}");
    assert_eq!(attempts[0]["cortex"], "weak");
    assert_eq!(attempts[0]["valid"], false);
    assert_eq!(attempts[0]["invalid"], "the answer is empty");
    assert!(v["reason"].as_str().unwrap().contains("escalated"), "{v}");
    // Both models were called once each; the strong one's price is counted.
    assert_eq!(weak.requests().len(), 1);
    assert_eq!(strong.requests().len(), 1);
    assert_eq!(v["usage"]["input_tokens"], 40);
    let cost = v["cost"].as_f64().unwrap();
    assert!(
        (cost - (20.0 * 3.0 + 5.0 * 15.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
}

/// An OpenAI chat completion calling each `(tool, args)` in one turn.
fn calls_all(tools: &[(&str, Value)]) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .enumerate()
        .map(|(i, (tool, args))| {
            json!({"id": format!("call_{}", i + 1), "type": "function",
                   "function": {"name": tool, "arguments": args.to_string()}})
        })
        .collect();
    json!({
        "id": "chatcmpl-3", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": calls}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
    })
}

fn planner(home: &Path, model: &Scripted) {
    cortices(
        home,
        &format!(
            "[[cortex]]\nname = \"planner\"\ndriver = \"openai\"\nmodel = \"p\"\n\
             tier = \"tactical\"\nurl = \"{}\"\n",
            model.url()
        ),
    );
}

/// The tool results the model was sent in request `n`, by call id.
fn tool_results(model: &Scripted, n: usize) -> Vec<(String, String)> {
    model.requests()[n]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_model_s_tool_calls_are_one_plan_the_owner_approves_once() {
    let home = tempfile::tempdir().unwrap();
    let two = calls_all(&[("sys__health", json!({})), ("process__list", json!({}))]);
    let model = Scripted::start(vec![
        two.clone(),
        two.clone(),
        says("The machine is fine."),
        two,
    ]);
    planner(home.path(), &model);
    let daemon = Daemon::start(home.path(), None, &[]);
    let question = "give me a short health summary of this host with advice";

    let v = ask_json(&daemon, &[question]);
    assert_eq!(v["cortex"], "planner", "{v}");
    // The first request offered the tools, under wire-safe names.
    let offered: Vec<String> = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(offered.contains(&"sys__health".to_owned()), "{offered:?}");
    assert!(offered.iter().all(|n| !n.contains('.')));
    // Both calls were put to the owner, in one consent request, and nothing ran.
    let made = v["tool_calls"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{v}");
    assert!(
        made.iter()
            .all(|c| c["decision"] == "ask" && c["ok"] == false)
    );
    let consent = v["approval"]["consent_id"].as_str().unwrap().to_owned();
    assert!(
        made.iter().all(|c| c["consent_id"] == consent.as_str()),
        "{v}"
    );
    assert_eq!(v["approval"]["status"], "pending");
    assert_eq!(v["approval"]["calls"].as_array().unwrap().len(), 2, "{v}");
    let answer = v["answer"].as_str().unwrap();
    assert!(
        answer.contains(&format!("gyrus approve {consent}")),
        "{answer}"
    );
    assert_eq!(v["validated"], false);
    assert_eq!(model.requests().len(), 1, "the model was told nothing yet");
    let pending: Value = serde_json::from_str(&ok(daemon.cli(&["approvals", "--json"]))).unwrap();
    let pending = pending["approvals"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["id"], consent.as_str());
    assert_eq!(pending[0]["plan_id"], v["approval"]["plan_id"]);
    assert_eq!(pending[0]["calls"].as_array().unwrap().len(), 2);
    // The audit trail says the intent was the owner's question, as a plan.
    let seq = made[0]["audit_seq"].as_u64().unwrap().to_string();
    let why = ok(daemon.cli(&["audit", "why", &seq]));
    assert!(why.contains("answering: give me a short health"), "{why}");
    assert!(why.contains("plan:pl_"), "{why}");
    assert!(why.contains("core.plan"), "{why}");

    // One approval covers the plan: asked again, both calls run under its grants.
    ok(daemon.cli(&["approve", &consent]));
    let v = ask_json(&daemon, &[question]);
    assert_eq!(v["answer"], "The machine is fine.", "{v}");
    assert_eq!(v["approval"], Value::Null);
    let made = v["tool_calls"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{v}");
    assert!(
        made.iter()
            .all(|c| c["decision"] == "allow" && c["ok"] == true),
        "{v}"
    );
    assert_eq!(model.requests().len(), 3);
    let results = tool_results(&model, 2);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].0, "call_1");
    assert!(results[0].1.contains("uptime_secs"), "{results:?}");
    let seq = made[0]["audit_seq"].as_u64().unwrap().to_string();
    let why = ok(daemon.cli(&["audit", "why", &seq]));
    assert!(why.contains("core.grant"), "{why}");
    // Learned: the same question again replays the two calls under the same grants, no model.
    let learned = v["learned"]
        .as_str()
        .expect("a learned procedure")
        .to_owned();
    let again = ask_json(&daemon, &[question]);
    assert_eq!(again["procedure"], learned.as_str(), "{again}");
    assert_eq!(model.requests().len(), 3, "the model was called again");
    // The grants name this question only: a different one is a new plan to approve.
    let v = ask_json(
        &daemon,
        &["and now a longer health report with more advice please"],
    );
    assert_eq!(v["approval"]["status"], "pending", "{v}");
    assert_ne!(v["approval"]["consent_id"], consent.as_str());
}

#[test]
fn with_wait_the_loop_goes_on_when_the_owner_answers() {
    let home = tempfile::tempdir().unwrap();
    let model = Scripted::start(vec![
        calls("sys__health", json!({})),
        says("Healthy."),
        calls("sys__health", json!({})),
        says("I could not check."),
    ]);
    planner(home.path(), &model);
    let daemon = Daemon::start(home.path(), None, &[]);
    // Answers the first consent request that shows up, as the owner would in another terminal.
    let answer = |verb: &'static str| {
        let daemon = &daemon;
        move || {
            for _ in 0..400 {
                let v: Value =
                    serde_json::from_str(&ok(daemon.cli(&["approvals", "--json"]))).unwrap();
                if let Some(id) = v["approvals"][0]["id"].as_str() {
                    ok(daemon.cli(&[verb, id]));
                    return id.to_owned();
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("no consent request showed up");
        }
    };
    let (v, approved) = std::thread::scope(|scope| {
        let owner = scope.spawn(answer("approve"));
        let v = ask_json(
            &daemon,
            &[
                "give me a short health summary of this host",
                "--wait",
                "20",
            ],
        );
        (v, owner.join().unwrap())
    });
    assert_eq!(v["approval"]["consent_id"], approved.as_str(), "{v}");
    assert_eq!(v["approval"]["status"], "approved");
    assert_eq!(v["answer"], "Healthy.", "{v}");
    let made = v["tool_calls"].as_array().unwrap();
    let decisions: Vec<&str> = made
        .iter()
        .map(|c| c["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["ask", "allow"], "{v}");
    assert_eq!(made[1]["ok"], true);
    assert_eq!(model.requests().len(), 2);
    assert!(tool_results(&model, 1)[0].1.contains("uptime_secs"));

    // Denied: the model hears so and answers without it.
    let (v, denied) = std::thread::scope(|scope| {
        let owner = scope.spawn(answer("deny"));
        let v = ask_json(
            &daemon,
            &["how healthy is this host, in one word", "--wait", "20"],
        );
        (v, owner.join().unwrap())
    });
    assert_eq!(v["approval"]["status"], "denied", "{v}");
    assert_eq!(v["answer"], "I could not check.", "{v}");
    let results = tool_results(&model, 3);
    assert!(results[0].1.contains("denied"), "{results:?}");
    assert!(results[0].1.contains(&denied), "{results:?}");
}

#[test]
fn a_token_s_model_calls_are_untrusted_and_never_put_to_the_owner() {
    let home = tempfile::tempdir().unwrap();
    let model = Scripted::start(vec![
        calls("sys__health", json!({})),
        says("The machine is fine."),
    ]);
    planner(home.path(), &model);
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = daemon.create_token("laptop");
    let body = json!({"text": "give me a short health summary of this host with advice"});
    let r = daemon.tcp(
        &format!(
            "POST /api/v1/ask HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}",
            body.to_string().len()
        ),
        body.to_string().as_bytes(),
    );
    let v = r.json();
    assert_eq!(v["cortex"], "planner", "{v}");
    let call = &v["tool_calls"][0];
    assert_eq!(call["decision"], "deny", "{v}");
    assert_eq!(call["consent_id"], Value::Null);
    assert_eq!(v["approval"], Value::Null);
    let why = ok(daemon.cli(&["audit", "why", &call["audit_seq"].to_string()]));
    assert!(why.contains("untrusted:model:planner"), "{why}");
    // The refusal was fed back, and the model answered.
    assert_eq!(v["answer"], "The machine is fine.");
    assert!(tool_results(&model, 1)[0].1.contains("deny"));
    let pending: Value = serde_json::from_str(&ok(daemon.cli(&["approvals", "--json"]))).unwrap();
    assert_eq!(
        pending["approvals"].as_array().unwrap().len(),
        0,
        "{pending}"
    );
}

#[test]
fn a_daily_budget_stops_spending_on_priced_cortices() {
    let home = tempfile::tempdir().unwrap();
    // Each answer reports 100k prompt and 1k completion tokens: $0.315 at $3/$15 per Mtok.
    let mut costly = says("Done.");
    costly["usage"] = json!({"prompt_tokens": 100_000, "completion_tokens": 1_000,
                             "total_tokens": 101_000});
    let model = Scripted::start(vec![costly]);
    cortices(
        home.path(),
        &format!(
            "[[cortex]]\nname = \"frontier\"\ndriver = \"openai\"\nmodel = \"f\"\n\
             tier = \"strategic\"\nurl = \"{}\"\nprice_in = 3.0\nprice_out = 15.0\n",
            model.url()
        ),
    );
    // 50 cents a day for every agent, but the agent `ci` may spend $2.
    let config =
        "[router]\ndaily_budget_cents = 50\n[router.agents.ci]\ndaily_budget_cents = 200\n";
    let daemon = Daemon::start(home.path(), Some(config), &[]);
    let question = "draft a two-line release note for version 2";
    for _ in 0..2 {
        let v = ask_json(&daemon, &[question]);
        assert_eq!(v["cortex"], "frontier", "{v}");
        assert!((v["cost"].as_f64().unwrap() - 0.315).abs() < 1e-9, "{v}");
    }
    // $0.63 spent of $0.50: the next call is refused before it is made.
    let out = daemon.cli(&["ask", question]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("over budget") && err.contains("$0.5000"),
        "{err}"
    );
    assert_eq!(model.requests().len(), 2);
    // An agent with its own limit still has room.
    let v = ask_json(&daemon, &[question, "--agent", "ci"]);
    assert_eq!(v["cortex"], "frontier", "{v}");
    assert_eq!(model.requests().len(), 3);
    // Reactive skills cost nothing and still answer.
    let v = ask_json(&daemon, &["how much disk space is free?"]);
    assert_eq!(v["skill"], "disk");
}

#[test]
fn a_successful_multi_step_answer_is_learned_and_replayed_without_a_model() {
    let home = tempfile::tempdir().unwrap();
    let model = Scripted::start(vec![
        calls("sys__health", json!({})),
        calls("process__list", json!({})),
        says("The host is healthy and its processes are listed."),
    ]);
    cortices(
        home.path(),
        &format!(
            "[[cortex]]\nname = \"planner\"\ndriver = \"openai\"\nmodel = \"p\"\n\
             tier = \"tactical\"\nurl = \"{}\"\n",
            model.url()
        ),
    );
    // The owner lets models run these two read-only tools on the owner's behalf.
    std::fs::create_dir_all(home.path().join("user/policies")).unwrap();
    std::fs::write(
        home.path().join("user/policies/model-reads.cedar"),
        "@id(\"owner.model-reads\")\npermit (principal is Gyrus::Owner, \
         action == Gyrus::Action::\"invoke\", resource is Gyrus::Resource)\n\
         when { context.action == \"sys.health\" || context.action == \"process.list\" };\n",
    )
    .unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    // The owner's sketch goes into the model's context.
    let sketch = json!({"text": "## Preferences\n- answers in British English\n"});
    ok(daemon.cli(&[
        "tool",
        "call",
        "memory.sketch",
        "--args",
        &sketch.to_string(),
        "--intent",
        "set my sketch",
    ]));

    let question = "check the health and the processes of the build box";
    let first = ask_json(&daemon, &[question]);
    assert_eq!(first["cortex"], "planner", "{first}");
    let calls_made = first["tool_calls"].as_array().unwrap();
    assert_eq!(calls_made.len(), 2, "{first}");
    assert!(
        calls_made
            .iter()
            .all(|c| c["decision"] == "allow" && c["ok"] == true)
    );
    let learned = first["learned"].as_str().expect("a learned procedure");
    assert_eq!(model.requests().len(), 3);
    let system = &model.requests()[0]["messages"][0];
    assert_eq!(system["role"], "system");
    assert!(
        system["content"]
            .as_str()
            .unwrap()
            .contains("answers in British English"),
        "{system}"
    );

    // The same request again: the procedure answers at the reactive tier, no model call.
    let again = ask_json(&daemon, &[question]);
    assert_eq!(again["procedure"], learned, "{again}");
    assert_eq!(again["tier"], "reactive");
    assert_eq!(again["cortex"], Value::Null);
    assert_eq!(again["tool_calls"].as_array().unwrap().len(), 2);
    assert!(
        again["answer"]
            .as_str()
            .unwrap()
            .contains("learned procedure")
    );
    assert_eq!(model.requests().len(), 3, "the model was called again");
    let log: Value = serde_json::from_str(&ok(daemon.cli(&["route", "log", "--json"]))).unwrap();
    assert_eq!(log["routes"][0]["kind"], "procedure", "{log}");
}
