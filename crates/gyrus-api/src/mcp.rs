//! Every tool over MCP (the Model Context Protocol), as streamable HTTP at `/mcp`.
//!
//! `/mcp` is a route like any other: it is registered in the route table and passes the one
//! stack, so it needs a bearer token (or the owner's socket), and the Host/Origin guard is
//! what protects it from DNS rebinding (MCP requires servers to validate `Origin`; the guard
//! does, so rmcp's own Host check is turned off rather than kept as a second, diverging
//! list). A call runs through [`gyrus_tools::Tools::call`] as the principal the stack
//! authenticated, exactly as `POST /api/v1/tools/{name}/call` does: the consent broker
//! decides it and the audit trail records it.
//!
//! The mapping between gyrus and MCP is public so that `gyrus mcp` (stdio) answers the same
//! way:
//!
//! - a [`gyrus_tools::ToolSpec`] becomes an MCP tool ([`tool`]): name, description, input
//!   and output schemas, and hints from its risk;
//! - the MCP call's `_meta.intent` and `_meta.plan_id` are the call's intent and plan
//!   ([`call_meta`]);
//! - a [`gyrus_tools::CallResult`] becomes an MCP tool result ([`call_result`]): an allowed
//!   call is its output as text and `structuredContent`; a denied, asked or failed call is a
//!   result with `isError: true` whose text says why, with its action id and audit entry.
//!   Either way `_meta["gyrus/call"]` carries the whole `CallResult`.
//!
//! Sessions are rmcp's stateful streamable HTTP sessions with random (UUID v4) ids. Each is
//! bound to the principal that opened it: another principal presenting its id gets 404, as
//! for a session that does not exist.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gyrus_policy::Principal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, MetaObject, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::ApiStateRef;
use crate::error::ApiError;

/// The intent a call has when its `_meta` names none.
pub const DEFAULT_INTENT: &str = "mcp call";

/// The `_meta` key of a call's intent (`gyrus/intent` is accepted too).
pub const INTENT_KEY: &str = "intent";

/// The `_meta` key of a call's plan id (`gyrus/plan_id` is accepted too).
pub const PLAN_KEY: &str = "plan_id";

/// The `_meta` key under which results carry the whole `CallResult`, and under which tools
/// carry their risk, undoability and timeout.
pub const META_PREFIX: &str = "gyrus/";

/// The longest intent a call may carry, as on `POST /api/v1/tools/{name}/call`.
pub const MAX_INTENT_BYTES: usize = 4096;

/// How many sessions one principal may hold open at once. Idle sessions close after rmcp's
/// keep-alive (5 minutes); `DELETE /mcp` closes one at once.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 100;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// What `initialize` answers: gyrus, its version, tools only.
pub fn server_info(version: &str) -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new("gyrus", version).with_title("gyrus"))
        .with_instructions(
            "Every gyrus tool. Each call is decided by the owner's consent broker and recorded in \
             the audit trail; a denied call is a result with isError and the reason. Put the \
             call's purpose in _meta.intent (it counts only from the owner or a plan named in \
             _meta.plan_id).",
        )
}

/// A tool as MCP lists it, from a [`gyrus_tools::ToolSpec`] as JSON. `None` if the spec
/// has no name.
///
/// Hints come from the risk: `read` is read-only; `irreversible` is destructive; nothing is
/// claimed idempotent. The output schema is given only when it describes an object, as MCP
/// requires of `structuredContent`.
pub fn tool(spec: &Value) -> Option<Tool> {
    let name = spec.get("name")?.as_str()?.to_string();
    let description = spec
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let input = match spec.get("input_schema") {
        Some(Value::Object(schema)) => schema.clone(),
        _ => {
            let mut schema = JsonObject::new();
            schema.insert("type".into(), Value::String("object".into()));
            schema
        }
    };
    let risk = spec.get("risk").and_then(Value::as_str).unwrap_or("write");
    let annotations = ToolAnnotations::new()
        .read_only(risk == "read")
        .destructive(risk == "irreversible")
        .idempotent(false);
    let mut meta = MetaObject::new();
    for key in ["risk", "undoable", "timeout", "max_output_bytes"] {
        if let Some(v) = spec.get(key) {
            let key = if key == "timeout" { "timeout_ms" } else { key };
            meta.0.insert(format!("{META_PREFIX}{key}"), v.clone());
        }
    }
    let mut tool = Tool::new(name, description, Arc::new(input))
        .with_annotations(annotations)
        .with_meta(meta);
    if let Some(Value::Object(output)) = spec.get("output_schema")
        && output.get("type").and_then(Value::as_str) == Some("object")
    {
        tool = tool.with_raw_output_schema(Arc::new(output.clone()));
    }
    Some(tool)
}

/// The intent and plan id an MCP call carries in its `_meta`: `intent` (or `gyrus/intent`)
/// and `plan_id` (or `gyrus/plan_id`). Without an intent, [`DEFAULT_INTENT`].
pub fn call_meta(meta: &JsonObject) -> Result<(String, Option<String>), ErrorData> {
    let field = |key: &str| -> Result<Option<String>, ErrorData> {
        let value = meta
            .get(&format!("{META_PREFIX}{key}"))
            .or_else(|| meta.get(key));
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ErrorData::invalid_params(
                format!("_meta.{key} must be a string"),
                None,
            )),
        }
    };
    let intent = field(INTENT_KEY)?.unwrap_or_else(|| DEFAULT_INTENT.to_string());
    if intent.len() > MAX_INTENT_BYTES {
        return Err(ErrorData::invalid_params(
            format!("_meta.{INTENT_KEY} is longer than {MAX_INTENT_BYTES} bytes"),
            None,
        ));
    }
    Ok((intent, field(PLAN_KEY)?))
}

/// An MCP tool result from a [`gyrus_tools::CallResult`] as JSON.
///
/// An allowed call that succeeded: its output as JSON text and, when it is an object, as
/// `structuredContent`. Anything else (denied, waiting for the owner's approval, failed):
/// `isError: true` and a sentence with the reason, the action id and the audit entry. A
/// failed result carries no `structuredContent`, because clients check it against the
/// tool's output schema even on errors; the whole `CallResult` is in `_meta["gyrus/call"]`
/// either way.
pub fn call_result(call: &Value) -> CallToolResult {
    let mut meta = MetaObject::new();
    meta.0.insert(format!("{META_PREFIX}call"), call.clone());
    let output = call.get("output").filter(|_| call.get("error").is_none());
    let result = match output {
        Some(output) => {
            let text = serde_json::to_string_pretty(output).unwrap_or_else(|_| output.to_string());
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            if output.is_object() {
                result.structured_content = Some(output.clone());
            }
            result
        }
        None => CallToolResult::error(vec![ContentBlock::text(refusal_text(call))]),
    };
    result.with_meta(Some(meta))
}

/// A tool-level failure that happened before anything was decided (no action id, no audit
/// entry), e.g. a path that cannot be resolved.
pub fn failure(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn refusal_text(call: &Value) -> String {
    let tool = call
        .get("tool")
        .and_then(Value::as_str)
        .unwrap_or("the tool");
    let message = call
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the call failed");
    let mut text = format!("{tool}: {message}");
    let action = call.get("action_id").and_then(Value::as_str);
    let seq = call.pointer("/decision/seq").and_then(Value::as_u64);
    match (action, seq) {
        (Some(action), Some(seq)) => text.push_str(&format!(
            " (action {action}, audit entry {seq}: `gyrus audit why {seq}`)"
        )),
        (Some(action), None) => text.push_str(&format!(" (action {action})")),
        _ => {}
    }
    text
}

/// The MCP error for a tool error raised before anything was decided, or `Ok` with a
/// tool-level failure result for those the caller should read.
pub fn tool_error(e: gyrus_tools::ToolError) -> Result<CallToolResult, ErrorData> {
    use gyrus_tools::ToolError;
    match e {
        ToolError::UnknownTool(_) | ToolError::InvalidArgs(_) => {
            Err(ErrorData::invalid_params(e.to_string(), None))
        }
        ToolError::Internal(detail) => {
            tracing::error!(%detail, "internal error in an MCP tool call");
            Err(ErrorData::internal_error(
                "internal error; the daemon's log has the details",
                None,
            ))
        }
        other => Ok(failure(other.to_string())),
    }
}

/// The MCP server over the daemon's own tool registry.
#[derive(Debug, Clone, Copy)]
struct ApiMcp;

/// The daemon and the caller of the request being handled: the stack put the principal in
/// the request's extensions, [`Endpoint`] the state, and rmcp hands the request's parts to
/// the handler.
fn caller(cx: &RequestContext<RoleServer>) -> Result<(ApiStateRef, Principal), ErrorData> {
    let parts = cx.extensions.get::<http::request::Parts>();
    let state = parts
        .and_then(|p| p.extensions.get::<ApiStateRef>())
        .cloned();
    let principal = parts.and_then(|p| p.extensions.get::<Principal>()).cloned();
    match (state, principal) {
        (Some(state), Some(principal)) => Ok((state, principal)),
        _ => {
            tracing::error!("an MCP request reached the handler without its caller");
            Err(ErrorData::internal_error(
                "internal error; the daemon's log has the details",
                None,
            ))
        }
    }
}

impl ServerHandler for ApiMcp {
    fn get_info(&self) -> ServerConfig {
        server_info(env!("CARGO_PKG_VERSION"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (state, _) = caller(&cx)?;
        let tools = state
            .tools
            .list()
            .into_iter()
            .filter_map(|spec| serde_json::to_value(spec).ok())
            .filter_map(|spec| tool(&spec))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (state, principal) = caller(&cx)?;
        let mut meta = cx.meta.0.0.clone();
        if let Some(own) = &request.meta {
            meta.extend(own.0.0.clone());
        }
        let (intent, plan_id) = call_meta(&meta)?;
        let call = gyrus_tools::ToolCall {
            intent_source: crate::routes::tools::intent_source(&principal, plan_id.as_deref()),
            principal,
            tool: request.name.to_string(),
            args: Value::Object(request.arguments.unwrap_or_default()),
            intent,
            plan_id,
        };
        let outcome = tokio::task::spawn_blocking(move || state.tools.call(&state.kernel, &call))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "an MCP tool call panicked");
                ErrorData::internal_error("internal error; the daemon's log has the details", None)
            })?;
        let result = match outcome {
            Ok(result) => match serde_json::to_value(&result) {
                Ok(json) => call_result(&json),
                Err(e) => return tool_error(gyrus_tools::ToolError::internal(e)).map(Into::into),
            },
            Err(e) => tool_error(e)?,
        };
        Ok(result.into())
    }
}

/// `/mcp`: rmcp's streamable HTTP service, with each session bound to its principal.
#[derive(Clone)]
pub(crate) struct Endpoint {
    service: StreamableHttpService<ApiMcp, LocalSessionManager>,
    sessions: Arc<LocalSessionManager>,
    /// Session id → the id of the principal that opened it.
    owners: Arc<Mutex<HashMap<String, String>>>,
    /// Whether the task that ends every session at shutdown was started.
    watching: Arc<AtomicBool>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

/// Marks [`Endpoint`]'s handler impl apart from axum's impls for functions.
#[derive(Debug)]
pub(crate) struct ByEndpoint;

impl Endpoint {
    /// A fresh endpoint with no sessions.
    pub(crate) fn new() -> Endpoint {
        let sessions = Arc::new(LocalSessionManager::default());
        // The stack's guard checks Host and Origin against api.allowed_hosts and
        // api.allowed_origins; a second list here would refuse names the owner allowed.
        let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        let service = StreamableHttpService::new(|| Ok(ApiMcp), sessions.clone(), config);
        Endpoint {
            service,
            sessions,
            owners: Arc::new(Mutex::new(HashMap::new())),
            watching: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ends every session's streams once the daemon begins to shut down, so open SSE
    /// streams do not hold up the graceful shutdown.
    fn watch_shutdown(&self, state: &ApiStateRef) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let token = self.service.config.cancellation_token.clone();
        let closing = state.kernel.closing();
        tokio::spawn(async move {
            closing.await;
            token.cancel();
        });
    }

    fn owner_of(&self, session: &str) -> Option<String> {
        self.owners.lock().ok()?.get(session).cloned()
    }

    /// How many live sessions `caller` holds, forgetting those rmcp has closed.
    async fn open_sessions(&self, caller: &str) -> usize {
        let live: Vec<String> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        let Ok(mut owners) = self.owners.lock() else {
            return 0;
        };
        owners.retain(|id, _| live.contains(id));
        owners.values().filter(|o| *o == caller).count()
    }

    async fn serve(self, mut request: Request, state: ApiStateRef) -> Response {
        self.watch_shutdown(&state);
        let Some(principal) = request.extensions().get::<Principal>().cloned() else {
            // The stack authenticates before any route; this is a bug.
            return ApiError::internal("an MCP request reached /mcp without a principal")
                .into_response();
        };
        let caller = principal.id();
        let session = request
            .headers()
            .get(&SESSION_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        match &session {
            Some(id) if self.owner_of(id).as_deref() != Some(caller.as_str()) => {
                return ApiError::not_found(
                    "no such MCP session; send initialize without Mcp-Session-Id to open one",
                )
                .into_response();
            }
            None if request.method() == Method::POST
                && self.open_sessions(&caller).await >= MAX_SESSIONS_PER_PRINCIPAL =>
            {
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_sessions",
                    format!(
                        "{caller} already has {MAX_SESSIONS_PER_PRINCIPAL} MCP sessions open; close one with DELETE /mcp and its Mcp-Session-Id, or wait 5 minutes for idle ones to close"
                    ),
                )
                .into_response();
            }
            _ => {}
        }
        let deleting = request.method() == Method::DELETE;
        request.extensions_mut().insert(state);
        let response = match self.service.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if let Ok(mut owners) = self.owners.lock() {
            match (&session, response.headers().get(&SESSION_HEADER)) {
                (None, Some(new)) => {
                    if let Ok(new) = new.to_str() {
                        owners.insert(new.to_string(), caller);
                    }
                }
                (Some(id), _) if deleting && response.status().is_success() => {
                    owners.remove(id);
                }
                _ => {}
            }
        }
        response.into_response()
    }
}

impl axum::handler::Handler<(ByEndpoint,), ApiStateRef> for Endpoint {
    type Future = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn call(self, request: Request, state: ApiStateRef) -> Self::Future {
        Box::pin(self.serve(request, state))
    }
}

/// MCP streamable HTTP: one JSON-RPC message per POST (`initialize` first, without
/// `Mcp-Session-Id`; then with it). The answer is JSON or a server-sent event stream.
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    request_body(content = Object, content_type = "application/json",
        description = "A JSON-RPC message (MCP 2025-11-25). Send `Accept: application/json, text/event-stream`."),
    params(("Mcp-Session-Id" = Option<String>, Header, description = "The session, from initialize's answer")),
    responses(
        (status = 200, description = "The JSON-RPC answer, as JSON or as an SSE stream"),
        (status = 202, description = "A notification or response was accepted"),
        (status = 400, description = "Not a JSON-RPC message, or a missing session id", body = crate::ErrorBody),
        (status = 404, description = "No such session (or another principal's)", body = crate::ErrorBody),
        (status = 406, description = "The Accept header does not allow JSON and SSE", body = crate::ErrorBody),
        (status = 429, description = "Too many open sessions for this principal", body = crate::ErrorBody)))]
#[allow(dead_code)]
pub(crate) fn post_doc() {}

/// MCP streamable HTTP: the session's stream of server-initiated messages (SSE).
#[utoipa::path(get, path = "/mcp", tag = "mcp",
    params(("Mcp-Session-Id" = String, Header, description = "The session")),
    responses(
        (status = 200, description = "An SSE stream", content_type = "text/event-stream"),
        (status = 404, description = "No such session (or another principal's)", body = crate::ErrorBody)))]
#[allow(dead_code)]
pub(crate) fn get_doc() {}

/// MCP streamable HTTP: closes a session.
#[utoipa::path(delete, path = "/mcp", tag = "mcp",
    params(("Mcp-Session-Id" = String, Header, description = "The session")),
    responses(
        (status = 202, description = "Closed"),
        (status = 404, description = "No such session (or another principal's)", body = crate::ErrorBody)))]
#[allow(dead_code)]
pub(crate) fn delete_doc() {}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_spec_becomes_an_mcp_tool_with_hints_from_its_risk() {
        let spec = json!({
            "name": "fs.read",
            "description": "Reads a file.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "risk": "read",
            "undoable": false,
            "timeout": 30000,
            "max_output_bytes": 4194304
        });
        let tool = serde_json::to_value(tool(&spec).unwrap()).unwrap();
        assert_eq!(tool["name"], "fs.read");
        assert_eq!(tool["inputSchema"]["properties"]["path"]["type"], "string");
        assert_eq!(tool["outputSchema"]["type"], "object");
        assert_eq!(
            tool["annotations"],
            json!({"readOnlyHint": true, "destructiveHint": false, "idempotentHint": false})
        );
        assert_eq!(tool["_meta"]["gyrus/risk"], "read");
        assert_eq!(tool["_meta"]["gyrus/timeout_ms"], 30000);

        let irreversible = json!({"name": "pkg.install", "risk": "irreversible",
            "input_schema": {"type": "object"}, "output_schema": {"type": "array"}});
        let tool = serde_json::to_value(super::tool(&irreversible).unwrap()).unwrap();
        assert_eq!(tool["annotations"]["destructiveHint"], true);
        assert_eq!(tool["annotations"]["readOnlyHint"], false);
        // structuredContent must be an object, so a non-object output schema is left out.
        assert!(tool.get("outputSchema").is_none());
    }

    #[test]
    fn intent_and_plan_come_from_meta() {
        let meta = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            call_meta(&meta(json!({}))).unwrap(),
            (DEFAULT_INTENT.to_string(), None)
        );
        assert_eq!(
            call_meta(&meta(json!({"intent": "tidy up", "plan_id": "plan_1"}))).unwrap(),
            ("tidy up".to_string(), Some("plan_1".to_string()))
        );
        assert_eq!(
            call_meta(&meta(json!({"gyrus/intent": "a", "intent": "b"}))).unwrap(),
            ("a".to_string(), None)
        );
        assert!(call_meta(&meta(json!({"intent": 3}))).is_err());
        assert!(call_meta(&meta(json!({"intent": "x".repeat(MAX_INTENT_BYTES + 1)}))).is_err());
    }

    #[test]
    fn an_allowed_call_is_structured_output_and_a_denial_is_an_error_result() {
        let allowed = json!({
            "action_id": "req_1", "tool": "fs.read",
            "decision": {"outcome": "allow", "reason": "owner", "seq": 4, "grant_id": null, "consent_id": null},
            "output": {"text": "hello"}, "undoable": false
        });
        let result = serde_json::to_value(call_result(&allowed)).unwrap();
        assert_eq!(result["isError"], false);
        assert_eq!(result["structuredContent"], json!({"text": "hello"}));
        assert!(
            result["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("hello")
        );
        assert_eq!(result["_meta"]["gyrus/call"]["action_id"], "req_1");

        let denied = json!({
            "action_id": "req_2", "tool": "fs.read",
            "decision": {"outcome": "deny", "reason": "no grant", "seq": 9, "grant_id": null, "consent_id": null},
            "error": {"code": "denied", "message": "denied (audit entry 9): no grant"}, "undoable": false
        });
        let result = serde_json::to_value(call_result(&denied)).unwrap();
        assert_eq!(result["isError"], true);
        assert!(result.get("structuredContent").is_none());
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("denied"), "{text}");
        assert!(
            text.contains("req_2") && text.contains("audit entry 9"),
            "{text}"
        );
        assert_eq!(result["_meta"]["gyrus/call"]["decision"]["seq"], 9);
    }
}
