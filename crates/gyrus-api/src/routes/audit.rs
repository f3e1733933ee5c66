//! The audit trail: tail, show, why, verify, signed tree heads and Merkle proofs.

use axum::Json;
use axum::extract::{Path, Query, State};
use gyrus_audit::{AuditError, AuditLog};
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};

/// Entries, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntries {
    /// The entries.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<gyrus_audit::Entry>,
}

/// One entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The entry.
    #[schema(value_type = Object)]
    pub entry: gyrus_audit::Entry,
}

/// `?limit=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the newest entries (default 20, at most 10,000).
    pub limit: Option<u64>,
}

/// `?seq=&tree_size=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The entry.
    pub seq: u64,
    /// The size of the tree to prove it in (default: the current size).
    pub tree_size: Option<u64>,
}

/// `?old=&new=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree size.
    pub old: u64,
    /// The newer tree size (default: the current size).
    pub new: Option<u64>,
}

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::OutOfRange(message) => ApiError::bad_request("invalid_query", message),
        other => ApiError::internal(other),
    }
}

async fn with_log<T: Send + 'static>(
    state: &ApiStateRef,
    f: impl FnOnce(&AuditLog) -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    let log = state.kernel.audit().clone();
    tokio::task::spawn_blocking(move || f(&log).map_err(audit_error))
        .await
        .map_err(ApiError::internal)?
}

/// The newest entries.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(TailQuery),
    responses((status = 200, description = "Entries, oldest first", body = AuditEntries),
              (status = 403, description = "Not the owner or one of the owner's devices", body = ErrorBody)))]
pub(crate) async fn tail(
    State(state): State<ApiStateRef>,
    Query(q): Query<TailQuery>,
) -> Result<Json<AuditEntries>, ApiError> {
    let limit = q.limit.unwrap_or(20).min(10_000);
    let entries = with_log(&state, move |log| log.tail(limit)).await?;
    Ok(Json(AuditEntries { entries }))
}

/// One entry.
#[utoipa::path(get, path = "/api/v1/audit/{seq}", tag = "audit",
    params(("seq" = u64, Path, description = "The entry's sequence number")),
    responses((status = 200, description = "The entry", body = AuditEntry),
              (status = 404, description = "No such entry", body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiStateRef>,
    Path(seq): Path<u64>,
) -> Result<Json<AuditEntry>, ApiError> {
    match with_log(&state, move |log| log.get(seq)).await? {
        Some(entry) => Ok(Json(AuditEntry { entry })),
        None => Err(ApiError::not_found(format!(
            "no audit entry {seq}; `gyrus audit tail` shows the newest"
        ))),
    }
}

/// Why an entry happened: every entry of its request, in order (request, decision with its
/// intent, grant and policies, then the outcome).
#[utoipa::path(get, path = "/api/v1/audit/{seq}/why", tag = "audit",
    params(("seq" = u64, Path, description = "The entry's sequence number")),
    responses((status = 200, description = "The request's entries", body = AuditEntries),
              (status = 404, description = "No such entry", body = ErrorBody)))]
pub(crate) async fn why(
    State(state): State<ApiStateRef>,
    Path(seq): Path<u64>,
) -> Result<Json<AuditEntries>, ApiError> {
    let entries = with_log(&state, move |log| {
        Ok(match log.get(seq)? {
            Some(e) if !e.record.request_id.is_empty() => {
                Some(log.by_request(&e.record.request_id)?)
            }
            Some(e) => Some(vec![e]),
            None => None,
        })
    })
    .await?;
    entries
        .map(|entries| Json(AuditEntries { entries }))
        .ok_or_else(|| ApiError::not_found(format!("no audit entry {seq}")))
}

/// Recomputes every hash, the chain, the Merkle root and the signed checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "The report; `first_bad` is null when intact", content_type = "application/json")))]
pub(crate) async fn verify(
    State(state): State<ApiStateRef>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = with_log(&state, |log| log.verify()).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(ApiError::internal)?,
    ))
}

/// The current signed tree head.
#[utoipa::path(get, path = "/api/v1/audit/tree-head", tag = "audit",
    responses((status = 200, description = "Size, root, time, public key and Ed25519 signature", content_type = "application/json")))]
pub(crate) async fn tree_head(
    State(state): State<ApiStateRef>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sth = with_log(&state, |log| log.tree_head()).await?;
    Ok(Json(serde_json::to_value(sth).map_err(ApiError::internal)?))
}

/// An RFC 6962 inclusion proof for one entry.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, description = "The audit path", content_type = "application/json"),
              (status = 400, description = "Out of range", body = ErrorBody)))]
pub(crate) async fn inclusion(
    State(state): State<ApiStateRef>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let proof = with_log(&state, move |log| {
        let size = q.tree_size.unwrap_or_else(|| log.len());
        log.inclusion_proof(q.seq, size)
    })
    .await?;
    Ok(Json(
        serde_json::to_value(proof).map_err(ApiError::internal)?,
    ))
}

/// An RFC 6962 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, description = "The consistency proof", content_type = "application/json"),
              (status = 400, description = "Out of range", body = ErrorBody)))]
pub(crate) async fn consistency(
    State(state): State<ApiStateRef>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let proof = with_log(&state, move |log| {
        let new = q.new.unwrap_or_else(|| log.len());
        log.consistency_proof(q.old, new)
    })
    .await?;
    Ok(Json(
        serde_json::to_value(proof).map_err(ApiError::internal)?,
    ))
}
