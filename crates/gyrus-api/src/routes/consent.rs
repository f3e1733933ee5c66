//! Decisions, grants and approvals: the consent broker through the API. Every change the
//! owner makes here is itself decided and audited like any other action.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_bus::Subject;
use gyrus_kernel::{KernelError, Recorded};
use gyrus_policy::{
    ActionRequest, ConsentError, ConsentRequest, Grant, GrantError, IntentSource, NewGrant,
    Principal,
};
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::agents::kernel_error;

/// Runs blocking kernel work (it commits audit entries) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &ApiStateRef,
    f: impl FnOnce(&gyrus_kernel::Kernel) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state.kernel))
        .await
        .map_err(ApiError::internal)?
}

/// A refusal as an API error: 403 with the broker's reason.
pub(crate) fn refused(recorded: &Recorded) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "denied",
        format!(
            "denied (audit entry {}): {}",
            recorded.seq, recorded.decision.reason
        ),
    )
}

/// The request for something the owner does directly: intent from the owner.
pub(crate) fn owner_action(
    principal: &Principal,
    action: &str,
    resource: String,
    intent: String,
) -> Result<ActionRequest, ApiError> {
    let action = Subject::new(action).map_err(ApiError::internal)?;
    Ok(ActionRequest::new(
        principal.clone(),
        action,
        resource,
        intent,
        IntentSource::Owner,
    ))
}

/// Decides, runs `act` if allowed, records the outcome.
pub(crate) fn audited<T>(
    kernel: &gyrus_kernel::Kernel,
    request: &ActionRequest,
    args: &serde_json::Value,
    act: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let recorded = kernel.decide(request, args).map_err(kernel_error)?;
    if recorded.decision.outcome != gyrus_policy::Outcome::Allow {
        return Err(refused(&recorded));
    }
    let result = act();
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {}", e.message),
    };
    kernel
        .outcome(&recorded, request, &outcome)
        .map_err(kernel_error)?;
    result
}

/// [`audited`] for work that is itself async (stopping a process): decide, await `act`,
/// record the outcome.
pub(crate) async fn audited_async<T>(
    state: &ApiStateRef,
    request: ActionRequest,
    act: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let (req, request_arc) = (request.clone(), std::sync::Arc::new(request));
    let recorded = blocking(state, move |k| {
        k.decide(&req, &serde_json::Value::Null)
            .map_err(kernel_error)
    })
    .await?;
    if recorded.decision.outcome != gyrus_policy::Outcome::Allow {
        return Err(refused(&recorded));
    }
    let result = act.await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {}", e.message),
    };
    blocking(state, move |k| {
        k.outcome(&recorded, &request_arc, &outcome)
            .map_err(kernel_error)
    })
    .await?;
    result
}

/// `POST /api/v1/decisions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Dotted action, e.g. `fs.read`.
    pub action: String,
    /// What it acts on, e.g. `path:/home/u/notes.md`, `host:example.org:443`.
    pub resource: String,
    /// Why, in words.
    pub intent: String,
    /// The plan the call belongs to; calls of one plan share one consent request.
    pub plan_id: Option<String>,
    /// The call's arguments (only their digest is recorded).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
}

/// What the broker decided, as recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionBody {
    /// Ties the decision to its outcome.
    pub request_id: String,
    /// The audit entry.
    pub seq: u64,
    /// The decision.
    pub decision: gyrus_policy::Decision,
    /// For *ask*: the consent request the owner answers (`gyrus approvals`).
    #[schema(value_type = Option<Object>)]
    pub consent: Option<ConsentRequest>,
}

/// Asks the consent broker about an action by the caller; the decision is recorded in the
/// audit trail. Intent counts as the owner's for the owner, as a plan's when an agent names
/// its plan, and is untrusted otherwise.
#[utoipa::path(post, path = "/api/v1/decisions", tag = "consent", request_body = DecisionRequest,
    responses((status = 200, description = "Allow, deny or ask, recorded", body = DecisionBody),
              (status = 400, description = "Bad action or resource", body = ErrorBody)))]
pub(crate) async fn decide(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionBody>, ApiError> {
    let action = Subject::new(body.action)
        .map_err(|e| ApiError::bad_request("invalid_action", e.to_string()))?;
    if let Some(problem) = gyrus_policy::resource_problem(&body.resource) {
        return Err(ApiError::bad_request("invalid_resource", problem));
    }
    let source = match (&principal, &body.plan_id) {
        (Principal::Owner { .. }, _) => IntentSource::Owner,
        (_, Some(plan)) => IntentSource::Plan(plan.clone()),
        (p, None) => IntentSource::Untrusted(p.id()),
    };
    let mut request = ActionRequest::new(principal, action, body.resource, body.intent, source);
    if let Some(plan) = body.plan_id {
        request = request.with_plan(plan);
    }
    let args = body.args;
    let recorded = blocking(&state, move |k| {
        k.decide(&request, &args).map_err(kernel_error)
    })
    .await?;
    Ok(Json(DecisionBody {
        request_id: recorded.request_id,
        seq: recorded.seq,
        decision: recorded.decision,
        consent: recorded.consent,
    }))
}

/// `POST /api/v1/grants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddGrant {
    /// The agent (by name) the grant is for…
    pub agent: Option<String>,
    /// …or a principal id such as `token:tok_…` or `agent:ag_…`.
    pub principal: Option<String>,
    /// Action patterns, e.g. `fs.read`, `fs.*`.
    pub actions: Vec<String>,
    /// Resource globs, e.g. `path:/home/u/project/**`.
    pub resources: Vec<String>,
    /// If set, only calls with exactly this (trusted) intent.
    pub intent: Option<String>,
    /// Lifetime such as `1h`, `30d`; none: no expiry.
    #[serde(rename = "for")]
    pub valid_for: Option<String>,
    /// At most this many uses; none: unlimited.
    pub uses: Option<u32>,
}

/// One grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantBody {
    /// The grant.
    #[schema(value_type = Object)]
    pub grant: Grant,
}

/// Grants.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantList {
    /// Every grant, revoked and expired ones included.
    #[schema(value_type = Vec<Object>)]
    pub grants: Vec<Grant>,
}

fn grant_error(e: GrantError) -> ApiError {
    match e {
        GrantError::NotFound(_) => ApiError::not_found(e.to_string()),
        GrantError::Store(_) => ApiError::internal(e),
        other => ApiError::bad_request("invalid_grant", other.to_string()),
    }
}

fn duration(text: Option<&str>, field: &str) -> Result<Option<Duration>, ApiError> {
    text.map(|t| {
        humantime::parse_duration(t).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("invalid {field} {t:?}: {e}; use e.g. 1h or 30d"),
            )
        })
    })
    .transpose()
}

/// Adds a grant (owner only).
#[utoipa::path(post, path = "/api/v1/grants", tag = "consent", request_body = AddGrant,
    responses((status = 201, description = "Granted", body = GrantBody),
              (status = 400, description = "Bad pattern, glob or principal", body = ErrorBody),
              (status = 403, description = "Not the owner", body = ErrorBody)))]
pub(crate) async fn add_grant(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<AddGrant>,
) -> Result<(StatusCode, Json<GrantBody>), ApiError> {
    let valid_for = duration(body.valid_for.as_deref(), "for")?;
    let grant = blocking(&state, move |k| {
        let grantee = match (body.agent, body.principal) {
            (Some(name), None) => format!("agent:{}", k.agent(&name).map_err(kernel_error)?.id),
            (None, Some(id)) => id,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "name the grantee with exactly one of \"agent\" (a name) or \"principal\" (an id)",
                ));
            }
        };
        let new = NewGrant {
            principal: grantee.clone(),
            actions: body.actions,
            resources: body.resources,
            intent: body.intent,
            valid_for,
            max_uses: body.uses,
            granted_by: principal.id(),
        };
        let args = serde_json::to_value(&new).unwrap_or_default();
        let request = owner_action(&principal, "grant.add", grantee.clone(), format!("grant {grantee} a capability"))?;
        audited(k, &request, &args, || k.broker().grants().add(new, SystemTime::now()).map_err(grant_error))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(GrantBody { grant })))
}

/// Lists grants (owner only).
#[utoipa::path(get, path = "/api/v1/grants", tag = "consent",
    responses((status = 200, description = "All grants", body = GrantList),
              (status = 403, description = "Not the owner", body = ErrorBody)))]
pub(crate) async fn list_grants(
    State(state): State<ApiStateRef>,
) -> Result<Json<GrantList>, ApiError> {
    let grants = blocking(&state, |k| {
        k.broker().grants().list().map_err(ApiError::internal)
    })
    .await?;
    Ok(Json(GrantList { grants }))
}

/// Revokes a grant (owner only); the next call that relied on it is denied.
#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "consent",
    params(("id" = String, Path, description = "The grant's id")),
    responses((status = 200, description = "Revoked", body = GrantBody),
              (status = 404, description = "No such grant", body = ErrorBody)))]
pub(crate) async fn revoke_grant(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<GrantBody>, ApiError> {
    let grant = blocking(&state, move |k| {
        let request = owner_action(
            &principal,
            "grant.revoke",
            format!("grant:{id}"),
            format!("revoke grant {id}"),
        )?;
        audited(k, &request, &serde_json::Value::Null, || {
            k.broker()
                .grants()
                .revoke(&id, SystemTime::now())
                .map_err(grant_error)
        })
    })
    .await?;
    Ok(Json(GrantBody { grant }))
}

/// Consent requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApprovalList {
    /// Pending requests (overdue ones have expired into a denial).
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<ConsentRequest>,
}

/// `POST /api/v1/approvals/{id}/approve`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// How long the resulting grants last, e.g. `1h`; none: no expiry.
    #[serde(rename = "for")]
    pub valid_for: Option<String>,
    /// Uses per resulting grant; none: unlimited.
    pub uses: Option<u32>,
}

/// The approved request's grants.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Approved {
    /// One grant per bundled call.
    #[schema(value_type = Vec<Object>)]
    pub grants: Vec<Grant>,
}

/// The denied request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Denied {
    /// The request.
    #[schema(value_type = Object)]
    pub approval: ConsentRequest,
}

fn consent_error(e: ConsentError) -> ApiError {
    match e {
        ConsentError::NotFound(_) => ApiError::not_found(e.to_string()),
        ConsentError::NotPending { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        ConsentError::Store(_) => ApiError::internal(e),
        ConsentError::Grant(g) => grant_error(g),
        other => ApiError::bad_request("invalid_body", other.to_string()),
    }
}

/// Pending consent requests, one per plan.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "consent",
    responses((status = 200, description = "Pending requests", body = ApprovalList)))]
pub(crate) async fn approvals(
    State(state): State<ApiStateRef>,
) -> Result<Json<ApprovalList>, ApiError> {
    let approvals = blocking(&state, |k| {
        k.consents().list(SystemTime::now()).map_err(consent_error)
    })
    .await?;
    Ok(Json(ApprovalList { approvals }))
}

/// `?wait_ms=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// While the request is pending, wait up to this many milliseconds for the owner's answer
    /// (default 0; always a second less than `api.request_timeout_secs`).
    pub wait_ms: Option<u64>,
}

/// One consent request, for the owner, the owner's devices, or the principal that asked: an
/// agent told *ask* waits here for the owner's answer, then asks again.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "consent",
    params(("id" = String, Path, description = "The consent request's id"), ApprovalQuery),
    responses((status = 200, description = "The request and its status", body = Denied),
              (status = 404, description = "No such request (or not yours)", body = ErrorBody)))]
pub(crate) async fn approval(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ApprovalQuery>,
) -> Result<Json<Denied>, ApiError> {
    let deadline = tokio::time::Instant::now() + state.max_wait(q.wait_ms.unwrap_or(0));
    let closing = state.kernel.closing();
    tokio::pin!(closing);
    loop {
        // Register for the next answer before looking, so an answer in between is not missed.
        let answered = state.kernel.next_consent_answer();
        tokio::pin!(answered);
        answered.as_mut().enable();
        let (id2, who) = (id.clone(), principal.clone());
        let request = blocking(&state, move |k| {
            let found = k
                .consents()
                .get(&id2, SystemTime::now())
                .map_err(consent_error)?;
            let visible = |c: &ConsentRequest| {
                matches!(who, Principal::Owner { .. } | Principal::Token { .. })
                    || c.principal == who.id()
            };
            found
                .filter(visible)
                .ok_or_else(|| ApiError::not_found(format!("no consent request {id2:?} of yours")))
        })
        .await?;
        let pending = request.status == gyrus_policy::ConsentStatus::Pending;
        if !pending || tokio::time::Instant::now() >= deadline {
            return Ok(Json(Denied { approval: request }));
        }
        tokio::select! {
            _ = &mut answered => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = &mut closing => return Ok(Json(Denied { approval: request })),
        }
    }
}

/// Approves a consent request (owner only): one grant per bundled call.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "consent", request_body = Approve,
    params(("id" = String, Path, description = "The consent request's id")),
    responses((status = 200, description = "Approved", body = Approved),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "No longer pending", body = ErrorBody)))]
pub(crate) async fn approve(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Approve>,
) -> Result<Json<Approved>, ApiError> {
    let valid_for = duration(body.valid_for.as_deref(), "for")?;
    let grants = blocking(&state, move |k| {
        let request = owner_action(
            &principal,
            "consent.approve",
            format!("consent:{id}"),
            format!("approve {id}"),
        )?;
        let args =
            serde_json::json!({"for_secs": valid_for.map(|d| d.as_secs()), "uses": body.uses});
        audited(k, &request, &args, || {
            k.consents()
                .approve(
                    &id,
                    valid_for,
                    body.uses,
                    &principal.id(),
                    SystemTime::now(),
                )
                .map_err(consent_error)
        })
    })
    .await?;
    state.kernel.consent_answered();
    Ok(Json(Approved { grants }))
}

/// Denies a consent request (owner only).
#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", tag = "consent",
    params(("id" = String, Path, description = "The consent request's id")),
    responses((status = 200, description = "Denied", body = Denied),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "No longer pending", body = ErrorBody)))]
pub(crate) async fn deny(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Denied>, ApiError> {
    let approval = blocking(&state, move |k| {
        let request = owner_action(
            &principal,
            "consent.deny",
            format!("consent:{id}"),
            format!("deny {id}"),
        )?;
        audited(k, &request, &serde_json::Value::Null, || {
            k.consents()
                .deny(&id, &principal.id(), SystemTime::now())
                .map_err(consent_error)
        })
    })
    .await?;
    state.kernel.consent_answered();
    Ok(Json(Denied { approval }))
}

impl From<KernelError> for ApiError {
    fn from(e: KernelError) -> Self {
        kernel_error(e)
    }
}
