//! Tools through the API: list, describe, call, undo. Every call goes through
//! [`gyrus_tools::Tools::call`]: schema check, consent broker, audit trail, undo journal.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_policy::{IntentSource, Principal};
use gyrus_tools::{CallResult, ToolCall, ToolError, ToolSpec};
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// A tool failure before anything was decided, as an API error.
pub(crate) fn tool_error(e: ToolError) -> ApiError {
    match e {
        ToolError::UnknownTool(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_tool", e.to_string())
        }
        ToolError::InvalidArgs(_) => ApiError::bad_request("invalid_args", e.to_string()),
        ToolError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        ToolError::Failed(_) => ApiError::bad_request("failed", e.to_string()),
        ToolError::Internal(_) => ApiError::internal(e),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            other.code(),
            other.to_string(),
        ),
    }
}

/// Where a caller's intent counts from: the owner's own, a plan's when an agent or device
/// names its plan, untrusted otherwise (SYSTEM.md, invariant 2).
pub(crate) fn intent_source(principal: &Principal, plan_id: Option<&str>) -> IntentSource {
    match (principal, plan_id) {
        (Principal::Owner { .. }, _) => IntentSource::Owner,
        (_, Some(plan)) => IntentSource::Plan(plan.to_string()),
        (p, None) => IntentSource::Untrusted(p.id()),
    }
}

/// `GET /api/v1/tools`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolList {
    /// Every tool: name, description, input and output JSON Schemas, risk, undoable,
    /// timeout (ms), output limit.
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolSpec>,
}

/// Lists every tool with its schemas.
#[utoipa::path(get, path = "/api/v1/tools", tag = "tools",
    responses((status = 200, description = "Every tool", body = ToolList)))]
pub(crate) async fn list(State(state): State<ApiStateRef>) -> Json<ToolList> {
    Json(ToolList {
        tools: state.tools.list().into_iter().cloned().collect(),
    })
}

/// Describes one tool.
#[utoipa::path(get, path = "/api/v1/tools/{name}", tag = "tools",
    params(("name" = String, Path, description = "Dotted tool name, e.g. fs.read")),
    responses((status = 200, description = "The tool", body = Object),
              (status = 404, description = "No such tool", body = ErrorBody)))]
pub(crate) async fn describe(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
) -> Result<Json<ToolSpec>, ApiError> {
    state
        .tools
        .describe(&name)
        .cloned()
        .map(Json)
        .map_err(tool_error)
}

/// `POST /api/v1/tools/{name}/call`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    /// The arguments, as the tool's input schema describes them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// Why, in words; recorded in the audit trail. Counts only from the owner or a plan.
    pub intent: String,
    /// The plan this call belongs to, if any.
    pub plan_id: Option<String>,
}

/// Calls a tool as the caller. Any decided call answers 200 with
/// `{action_id, decision, output | error}`, whether it was allowed, denied, asked or failed;
/// an unknown tool is 404 and arguments that do not fit the schema are 400, before anything
/// is decided.
#[utoipa::path(post, path = "/api/v1/tools/{name}/call", tag = "tools", request_body = CallBody,
    params(("name" = String, Path, description = "Dotted tool name")),
    responses((status = 200, description = "The call, as decided and run", body = Object),
              (status = 400, description = "Arguments that do not fit the schema", body = ErrorBody),
              (status = 404, description = "No such tool", body = ErrorBody)))]
pub(crate) async fn call(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CallBody>,
) -> Result<Json<CallResult>, ApiError> {
    if body.intent.len() > 4096 {
        return Err(ApiError::bad_request(
            "invalid_intent",
            "the intent is longer than 4096 bytes",
        ));
    }
    let call = ToolCall {
        intent_source: intent_source(&principal, body.plan_id.as_deref()),
        principal,
        tool: name,
        args: body.args,
        intent: body.intent,
        plan_id: body.plan_id,
    };
    let state2 = state.clone();
    let result = tokio::task::spawn_blocking(move || state2.tools.call(&state2.kernel, &call))
        .await
        .map_err(ApiError::internal)?
        .map_err(tool_error)?;
    Ok(Json(result))
}

/// `POST /api/v1/undo/{action_id}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoBody {
    /// Why, in words.
    #[serde(default)]
    pub intent: Option<String>,
}

/// Undoes a reversible call byte for byte (itself decided and audited). 409 if the target
/// changed since, or it was already undone.
#[utoipa::path(post, path = "/api/v1/undo/{action_id}", tag = "tools", request_body = UndoBody,
    params(("action_id" = String, Path, description = "The call's action id (req_…)")),
    responses((status = 200, description = "The undo, as decided and run", body = Object),
              (status = 400, description = "Nothing to undo", body = ErrorBody),
              (status = 409, description = "The target changed since", body = ErrorBody)))]
pub(crate) async fn undo(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(action_id): Path<String>,
    ApiJson(body): ApiJson<UndoBody>,
) -> Result<Json<CallResult>, ApiError> {
    let intent = body.intent.unwrap_or_else(|| format!("undo {action_id}"));
    let source = intent_source(&principal, None);
    let state2 = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        state2
            .tools
            .undo(&state2.kernel, &principal, &action_id, &intent, source)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(tool_error)?;
    Ok(Json(result))
}
