//! Health, status, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::OpenApi;

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::state::PartStatus;

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the daemon answers.
    pub status: &'static str,
}

/// Liveness: answers without a token, reveals nothing.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses((status = 200, description = "The daemon is up", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One layer of the home.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LayerStatus {
    /// `core`, `user`, `memory` or `runtime`.
    pub name: String,
    /// Its directory.
    pub path: String,
    /// Bytes in regular files.
    pub bytes: u64,
    /// Number of regular files.
    pub files: u64,
    /// Its backup rule.
    pub backup: String,
}

/// `GET /api/v1/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// gyrus version.
    pub version: String,
    /// Daemon pid.
    pub pid: u32,
    /// Unix seconds at start.
    pub started_at: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The home directory.
    pub home: String,
    /// The HTTP listen address.
    pub listen: String,
    /// The owner's Unix socket.
    pub socket: String,
    /// The four layers.
    pub layers: Vec<LayerStatus>,
    /// Each part and its state.
    pub parts: Vec<PartStatus>,
}

/// What is running, where, and how big each layer is.
#[utoipa::path(get, path = "/api/v1/status", tag = "system",
    responses(
        (status = 200, description = "Daemon status", body = Status),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
pub(crate) async fn status(State(state): State<ApiStateRef>) -> Result<Json<Status>, ApiError> {
    let home = state.home.clone();
    // Sizing walks the layers' directories: keep it off the async workers.
    let usage = tokio::task::spawn_blocking(move || home.usage())
        .await
        .map_err(ApiError::internal)?;
    let parts = state
        .parts
        .read()
        .map_err(ApiError::internal)?
        .values()
        .cloned()
        .collect();
    Ok(Json(Status {
        version: state.version.to_string(),
        pid: state.pid,
        started_at: state
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        uptime_secs: state.started.elapsed().as_secs(),
        home: state.home.root().display().to_string(),
        listen: state.listen.to_string(),
        socket: state.socket.display().to_string(),
        layers: usage
            .into_iter()
            .map(|u| LayerStatus {
                name: u.layer.dir_name().to_string(),
                path: u.path.display().to_string(),
                bytes: u.bytes,
                files: u.files,
                backup: u.layer.backup_rule().to_string(),
            })
            .collect(),
        parts,
    }))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
pub(crate) async fn metrics(
    State(state): State<ApiStateRef>,
) -> Result<impl IntoResponse, ApiError> {
    let mut text = state
        .metrics
        .render(state.started.elapsed().as_secs_f64())
        .map_err(ApiError::internal)?;
    if let Some(frontal) = &state.frontal {
        // Before the closing `# EOF`, which must stay last.
        let at = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(
            at,
            &crate::metrics::scheduler_text(&frontal.scheduler_stats()),
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
