//! `gyrus mcp`: every tool over MCP on stdio, for MCP clients that launch a command.
//!
//! It is a client like the other commands: each `tools/list` and `tools/call` becomes a
//! request to the running daemon's tool API (`GET /api/v1/tools`,
//! `POST /api/v1/tools/{name}/call`), as whoever this client is: the owner over the Unix
//! socket, or the holder of `GYRUS_TOKEN` at `GYRUS_URL`. So every call is decided by the
//! consent broker and recorded in the audit trail, exactly as over HTTP. Answers are mapped
//! to MCP by the same functions the daemon's `/mcp` uses ([`gyrus_api::mcp`]).
//!
//! stdout carries the protocol and nothing else; logs go to stderr (`GYRUS_LOG`, default
//! `warn`). The server starts whether or not the daemon runs: without it, a call answers
//! with a tool error that says how to start it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gyrus_api::mcp;
use http::{Method, StatusCode};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};

use crate::client::Client;

/// How long a call may wait for the daemon. The daemon's own request timeout
/// (`api.request_timeout_secs`) ends a call well before this.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// How long listing the tools may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the stdio server until the MCP client closes stdin.
pub fn run(home: Option<&Path>) -> anyhow::Result<()> {
    crate::up::init_logging("warn");
    let client = Client::from_env(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Proxy {
            client: Arc::new(client),
        };
        let running = server
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP client did not complete the handshake")?;
        running.waiting().await.context("the MCP session failed")?;
        Ok(())
    })
}

/// The MCP server: a proxy to the daemon's tool API.
#[derive(Debug, Clone)]
struct Proxy {
    client: Arc<Client>,
}

/// A tool name that is safe in a URL path without encoding (tool names are dotted words).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The message of an API error body, or a fallback naming the status.
fn api_message(status: StatusCode, body: &Value) -> String {
    body.pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("gyrus answered {status}"), str::to_string)
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        mcp::server_info(env!("CARGO_PKG_VERSION"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let answer = self
            .client
            .request(Method::GET, "/api/v1/tools", None, LIST_TIMEOUT)
            .await;
        let body = match answer {
            Ok((status, body)) if status.is_success() => body,
            Ok((status, body)) => {
                return Err(ErrorData::internal_error(api_message(status, &body), None));
            }
            Err(e) => return Err(ErrorData::internal_error(format!("{e:#}"), None)),
        };
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| tools.iter().filter_map(mcp::tool).collect())
            .unwrap_or_default();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut meta = cx.meta.0.0.clone();
        if let Some(own) = &request.meta {
            meta.extend(own.0.0.clone());
        }
        let (intent, plan_id) = mcp::call_meta(&meta)?;
        let name = request.name.as_ref();
        if !plain_name(name) {
            return Err(ErrorData::invalid_params(
                gyrus_tools::ToolError::UnknownTool(name.to_string()).to_string(),
                None,
            ));
        }
        let body = json!({
            "args": Value::Object(request.arguments.clone().unwrap_or_default()),
            "intent": intent,
            "plan_id": plan_id,
        });
        let path = format!("/api/v1/tools/{name}/call");
        let result = match self
            .client
            .request(Method::POST, &path, Some(body), CALL_TIMEOUT)
            .await
        {
            Ok((status, body)) if status.is_success() => mcp::call_result(&body),
            Ok((status, body)) => {
                let message = api_message(status, &body);
                let code = body.pointer("/error/code").and_then(Value::as_str);
                match code {
                    // Nothing was decided: the request itself is wrong (MCP's protocol error).
                    Some("unknown_tool" | "invalid_args" | "invalid_intent" | "invalid_body") => {
                        return Err(ErrorData::invalid_params(message, None));
                    }
                    _ => mcp::failure(message),
                }
            }
            // Most often: the daemon is not running (the message says how to start it).
            Err(e) => mcp::failure(format!("{e:#}")),
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tool_names_go_into_the_path() {
        assert!(plain_name("fs.read"));
        assert!(plain_name("sys.health"));
        assert!(!plain_name(""));
        assert!(!plain_name("../tokens"));
        assert!(!plain_name("fs.read?x=1"));
        assert!(!plain_name("fs read"));
    }
}
