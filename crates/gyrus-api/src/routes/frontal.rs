//! The frontal lobe through the API: ask (the agent loop), route explain, the route log.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_frontal::{AskRequest, AskResponse, Frontal, FrontalError, LoggedRoute};
use gyrus_policy::Principal;
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// The daemon's frontal lobe, or 503 when this API runs without one.
pub(crate) fn frontal(state: &ApiStateRef) -> Result<Arc<Frontal>, ApiError> {
    state.frontal.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_frontal",
            "this API runs without the frontal lobe, so nothing can be asked, routed or \
             served by a cortex; run the full daemon with `gyrus up`",
        )
    })
}

/// A frontal-lobe failure as an API error.
pub(crate) fn frontal_error(e: FrontalError) -> ApiError {
    let message = e.to_string();
    match e {
        FrontalError::BadRequest(_) => ApiError::bad_request("invalid_request", message),
        FrontalError::UnknownCortex(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_cortex", message)
        }
        FrontalError::Unavailable { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cortex_unavailable",
            message,
        ),
        FrontalError::Unservable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unservable", message)
        }
        FrontalError::OverBudget(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "over_budget", message)
        }
        FrontalError::Registry(e) => registry_error(e),
        FrontalError::Internal(_) => ApiError::internal(message),
        FrontalError::Driver { source, .. } => {
            let status = if matches!(
                source,
                gyrus_cortex::driver::DriverError::RateLimited { .. }
            ) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::BAD_GATEWAY
            };
            ApiError::new(status, "cortex_failed", message)
        }
        FrontalError::Scheduler(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cortex_removed", message)
        }
    }
}

/// A registry error as an API error: 409 duplicate, 404 unknown, 500 with the registry's own
/// message when `user/cortices.toml` cannot be read or written (paths, never a key, so the
/// owner can fix it), 400 otherwise.
pub(crate) fn registry_error(e: gyrus_cortex::registry::RegistryError) -> ApiError {
    use gyrus_cortex::registry::RegistryError;
    match e {
        RegistryError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        RegistryError::NotFound(_) => ApiError::not_found(e.to_string()),
        RegistryError::Read { .. }
        | RegistryError::Write { .. }
        | RegistryError::Parse { .. }
        | RegistryError::InFile { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "registry_file",
            e.to_string(),
        ),
        other => ApiError::bad_request("invalid_cortex", other.to_string()),
    }
}

/// Asks the frontal lobe: the router picks a reactive skill or a cortex, tools the model
/// calls go through the consent broker as the caller, and the answer comes back with the
/// tier, cortex, tool calls (with their audit ids), tokens and cost.
#[utoipa::path(post, path = "/api/v1/ask", tag = "frontal",
    request_body(content = Object, description = "`{text, agent?, cortex?, wait_ms?}`"),
    responses((status = 200, description = "The answer", body = Object),
              (status = 400, description = "An empty question", body = ErrorBody),
              (status = 503, description = "Nothing configured can serve it", body = ErrorBody)))]
pub(crate) async fn ask(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<AskRequest>,
) -> Result<Json<AskResponse>, ApiError> {
    check_text(&body.text)?;
    let frontal = frontal(&state)?;
    let mut body = body;
    // Waiting for the owner's approval must end before the request times out.
    body.wait_ms = body
        .wait_ms
        .map(|ms| u64::try_from(state.max_wait(ms).as_millis()).unwrap_or(u64::MAX));
    let answer = frontal.ask(&principal, body).await.map_err(frontal_error)?;
    Ok(Json(answer))
}

/// `POST /api/v1/route/explain`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    /// The request to route.
    pub text: String,
    /// The agent asking (its budget); the caller when unset.
    #[serde(default)]
    pub agent: Option<String>,
    /// A cortex the request would name.
    #[serde(default)]
    pub cortex: Option<String>,
}

/// What the router would decide for a request, and why, without calling anything.
#[utoipa::path(post, path = "/api/v1/route/explain", tag = "frontal", request_body = ExplainBody,
    responses((status = 200, description = "The decision and the cortices it chose from", body = Object),
              (status = 400, description = "An empty request", body = ErrorBody)))]
pub(crate) async fn explain(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<ExplainBody>,
) -> Result<Json<gyrus_frontal::Explanation>, ApiError> {
    check_text(&body.text)?;
    let frontal = frontal(&state)?;
    let agent = body.agent.unwrap_or_else(|| principal.id());
    let explanation = frontal
        .explain(&body.text, &agent, body.cortex)
        .await
        .map_err(frontal_error)?;
    Ok(Json(explanation))
}

/// `GET /api/v1/routes` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoutesQuery {
    /// How many, newest first (default 20, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /api/v1/routes`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteList {
    /// The newest decisions first: tier, cortex, reason, predicted and actual outcome,
    /// tokens, cost, latency. Request texts appear only as their SHA-256.
    #[schema(value_type = Vec<Object>)]
    pub routes: Vec<LoggedRoute>,
}

/// The newest routing decisions and their outcomes.
#[utoipa::path(get, path = "/api/v1/routes", tag = "frontal", params(RoutesQuery),
    responses((status = 200, description = "The route log, newest first", body = RouteList)))]
pub(crate) async fn routes(
    State(state): State<ApiStateRef>,
    Query(query): Query<RoutesQuery>,
) -> Result<Json<RouteList>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 1000",
        ));
    }
    let frontal = frontal(&state)?;
    let routes = tokio::task::spawn_blocking(move || frontal.log().recent(limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(RouteList { routes }))
}

fn check_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_text",
            "the text is empty: give the question to ask or route",
        ));
    }
    if text.len() > 64 * 1024 {
        return Err(ApiError::bad_request(
            "invalid_text",
            "the text is longer than 64 KiB",
        ));
    }
    Ok(())
}
