//! Every tool over MCP, driven by rmcp's own client against the real daemon: `gyrus mcp` on
//! stdio (a child process, the owner over the socket) and `/mcp` as streamable HTTP (a
//! device token). Allowed and denied calls, the audit entry a denial leaves, and the stack in
//! front of `/mcp` (no token: 401; a foreign Origin: 403; another principal's session: 404).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, RequestMetaObject};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt as _, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Value, json};
use support::{Daemon, GYRUS, ok};

type Client = RunningService<RoleClient, ()>;

/// `gyrus --home HOME mcp` as a child process, with a clean environment.
async fn stdio_client(home: &std::path::Path, env: &[(&str, &str)]) -> Client {
    let command = tokio::process::Command::new(GYRUS).configure(|cmd| {
        cmd.arg("--home")
            .arg(home)
            .arg("mcp")
            .env_remove("GYRUS_URL")
            .env_remove("GYRUS_TOKEN")
            .env_remove("GYRUS_HOME")
            .env_remove("GYRUS_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
    });
    ().serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap()
}

/// `/mcp` over TCP with a bearer token.
async fn http_client(daemon: &Daemon, token: &str) -> Client {
    // Under `cargo test --workspace`, gyrus-cortex's drivers turn on reqwest's
    // `rustls-no-provider` (they bring rustls with ring themselves), so a plain reqwest
    // client, as rmcp builds one, needs a process-wide provider. Loopback HTTP only.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", daemon.addr))
            .auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

fn args(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_stdio_the_owner_lists_every_tool_and_calls_one() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("home"), None, &[]);
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "hello from mcp\n").unwrap();

    let client = stdio_client(&daemon.home, &[]).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "gyrus");
    assert!(info.capabilities.tools.is_some());

    // Every tool the API lists, with its schemas and hints.
    let tools = client.list_all_tools().await.unwrap();
    let api: Value = serde_json::from_str(&ok(daemon.cli(&["tool", "list", "--json"]))).unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let mut listed: Vec<String> = api["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    listed.sort();
    assert_eq!(names, listed, "MCP lists exactly the API's tools");
    let read = tools.iter().find(|t| t.name == "fs.read").unwrap();
    assert!(
        read.input_schema["properties"]["path"].is_object(),
        "{:?}",
        read.input_schema
    );
    assert!(read.output_schema.is_some());
    let hints = read.annotations.as_ref().unwrap();
    assert_eq!(hints.read_only_hint, Some(true));
    assert_eq!(hints.idempotent_hint, Some(false));

    // An allowed call, with its intent from _meta: the output, as text and structured.
    let mut params = CallToolRequestParams::new("fs.read")
        .with_arguments(args(json!({"path": file.to_str().unwrap()})));
    let mut meta = RequestMetaObject::new();
    meta.0
        .0
        .insert("intent".into(), json!("read my note over MCP"));
    params.meta = Some(meta);
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    let structured = result.structured_content.clone().unwrap();
    assert_eq!(structured["content"], "hello from mcp\n");
    assert!(text(&result).contains("hello from mcp"));
    let call = &result.meta.as_ref().unwrap().0["gyrus/call"];
    assert_eq!(call["decision"]["outcome"], "allow");
    let seq = call["decision"]["seq"].as_u64().unwrap();

    // The decision is in the audit trail, as the owner's, with the intent it was given.
    let entry: Value = serde_json::from_str(&ok(daemon.cli(&[
        "audit",
        "show",
        &seq.to_string(),
        "--json",
    ])))
    .unwrap();
    let entry_text = entry.to_string();
    assert!(entry_text.contains("fs.read"), "{entry_text}");
    assert!(entry_text.contains("read my note over MCP"), "{entry_text}");

    // Arguments that do not fit the schema: a protocol error naming the field, and nothing
    // decided.
    let error = client
        .call_tool(CallToolRequestParams::new("fs.read").with_arguments(args(json!({"path": 7}))))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("path") && message.contains("-32602"),
        "{message}"
    );
    let error = client
        .call_tool(CallToolRequestParams::new("no.such.tool"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no.such.tool"), "{error}");

    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_streamable_http_a_token_without_a_grant_is_denied_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("home"), None, &[]);
    let token = daemon.create_token("mcp-device");
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, "not for you\n").unwrap();

    let client = http_client(&daemon, &token).await;
    let tools = client.list_all_tools().await.unwrap();
    let read = tools.iter().find(|t| t.name == "fs.read").unwrap();
    assert!(read.input_schema["properties"]["path"].is_object());

    let result = client
        .call_tool(
            CallToolRequestParams::new("fs.read")
                .with_arguments(args(json!({"path": file.to_str().unwrap()}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let message = text(&result);
    assert!(message.contains("denied"), "{message}");
    assert!(!message.contains("not for you"), "{message}");
    // No structuredContent on a refusal: clients check it against the output schema.
    assert!(result.structured_content.is_none());
    let call = result.meta.as_ref().unwrap().0["gyrus/call"].clone();
    assert_eq!(call["decision"]["outcome"], "deny");
    let action = call["action_id"].as_str().unwrap();
    let seq = call["decision"]["seq"].as_u64().unwrap();
    assert!(message.contains(action) && message.contains(&format!("audit entry {seq}")));

    // The denial is in the audit trail, under the token's principal.
    let tail: Value = serde_json::from_str(&ok(
        daemon.cli(&["audit", "tail", "--json", "--limit", "50"])
    ))
    .unwrap();
    let entries = tail
        .as_array()
        .or_else(|| tail["entries"].as_array())
        .unwrap();
    let entry = entries
        .iter()
        .find(|e| e["seq"].as_u64() == Some(seq))
        .unwrap_or_else(|| panic!("no audit entry {seq} in {tail}"));
    let entry_text = entry.to_string();
    assert!(entry_text.contains("fs.read"), "{entry_text}");
    assert!(entry_text.contains("deny"), "{entry_text}");
    assert!(
        entry_text.contains("mcp-device") || entry_text.contains("tok_"),
        "{entry_text}"
    );

    client.cancel().await.unwrap();
}

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "0"}}
    })
    .to_string()
}

fn post_mcp(daemon: &Daemon, extra: &str, body: &str) -> support::Response {
    daemon.tcp(
        &format!(
            "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}{extra}",
            body.len()
        ),
        body.as_bytes(),
    )
}

#[test]
fn the_stack_guards_mcp_like_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("home"), None, &[]);
    let token = daemon.create_token("mcp-guard");
    let other = daemon.create_token("mcp-other");
    let body = initialize_body();

    // No token: 401, like any route outside the public allowlist.
    let r = post_mcp(&daemon, "", &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");

    // A foreign Origin (DNS rebinding, a web page): 403 before the token is looked at.
    let auth = format!("\r\nAuthorization: Bearer {token}");
    let r = post_mcp(
        &daemon,
        &format!("{auth}\r\nOrigin: http://evil.example"),
        &body,
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "origin_not_allowed");
    let r = post_mcp(&daemon, &format!("{auth}\r\nHost: evil.example:80"), &body);
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "host_not_allowed");

    // The request's own origin passes, and initialize opens a session with a random id.
    let own = format!("{auth}\r\nOrigin: http://{}", daemon.addr);
    let r = post_mcp(&daemon, &own, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let session = r.header("mcp-session-id").unwrap().to_string();
    assert!(session.len() >= 32, "{session}");
    let again = post_mcp(&daemon, &own, &body);
    assert_ne!(again.header("mcp-session-id").unwrap(), session);

    // Another principal presenting that session id is told it does not exist.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let r = post_mcp(
        &daemon,
        &format!("\r\nAuthorization: Bearer {other}\r\nMcp-Session-Id: {session}"),
        &list,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gyrus_mcp_starts_without_the_daemon_and_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let client = stdio_client(&home, &[]).await;
    let result = client
        .call_tool(
            CallToolRequestParams::new("fs.read")
                .with_arguments(args(json!({"path": "/etc/hostname"}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let message = text(&result);
    assert!(message.contains("gyrus is not running"), "{message}");
    assert!(message.contains("gyrus up"), "{message}");
    client.cancel().await.unwrap();
}
