//! Agents: spawn, list, show, stop, start, remove, logs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_kernel::{AgentRecord, KernelError, Manifest};
use gyrus_policy::Principal;
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::consent::{audited, audited_async, owner_action};

/// An agent as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentView {
    /// Never reused, e.g. `ag_3f9c0d1e2b4a5968`.
    pub id: String,
    /// Unique among agents not removed.
    pub name: String,
    /// `ready`, `running`, `backoff`, `exited`, `failed`, `stopped` or `removed`.
    pub state: String,
    /// Whether the owner wants it up.
    pub enabled: bool,
    /// Its process id while running.
    pub pid: Option<u32>,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Process starts so far.
    pub starts: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last state change.
    pub updated_at: u64,
    /// The manifest it was spawned with.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
}

impl From<AgentRecord> for AgentView {
    fn from(a: AgentRecord) -> Self {
        AgentView {
            manifest: serde_json::to_value(&a.manifest).unwrap_or_default(),
            id: a.id,
            name: a.name,
            state: a.state.as_str().to_string(),
            enabled: a.enabled,
            pid: a.pid,
            last_error: a.last_error,
            starts: a.starts,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// `GET /api/v1/agents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentList {
    /// Agents, oldest first.
    pub agents: Vec<AgentView>,
}

/// `POST /api/v1/agents`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnAgent {
    /// The manifest's text, TOML or JSON.
    pub manifest: String,
}

/// The spawned agent; `token` only for agents without a command (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpawnedAgent {
    /// The agent.
    pub agent: AgentView,
    /// Its token, for an agent that connects by itself.
    pub token: Option<String>,
}

/// One agent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentBody {
    /// The agent.
    pub agent: AgentView,
}

/// `?bytes=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// How much of the end of the log to return (default 64 KiB, at most 1 MiB).
    pub bytes: Option<u64>,
}

/// An agent's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentLog {
    /// The end of the log.
    pub log: String,
}

pub(crate) fn kernel_error(e: KernelError) -> ApiError {
    use gyrus_kernel::registry::RegistryError;
    match e {
        KernelError::Registry(RegistryError::NameTaken(_)) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        KernelError::Registry(RegistryError::NotFound(_)) => ApiError::not_found(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Blocking kernel work off the async workers.
async fn blocking<T: Send + 'static>(
    state: &ApiStateRef,
    f: impl FnOnce(&gyrus_kernel::Kernel) -> Result<T, KernelError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state.kernel).map_err(kernel_error))
        .await
        .map_err(ApiError::internal)?
}

/// Lists agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, description = "Live agents", body = AgentList),
              (status = 401, description = "No or bad token", body = ErrorBody)))]
pub(crate) async fn list(State(state): State<ApiStateRef>) -> Result<Json<AgentList>, ApiError> {
    let agents = blocking(&state, |k| k.agents(false)).await?;
    Ok(Json(AgentList {
        agents: agents.into_iter().map(AgentView::from).collect(),
    }))
}

/// Spawns an agent from a manifest (owner only).
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = SpawnAgent,
    responses((status = 201, description = "Spawned", body = SpawnedAgent),
              (status = 400, description = "Bad manifest", body = ErrorBody),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 409, description = "A live agent has that name", body = ErrorBody)))]
pub(crate) async fn spawn(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<SpawnAgent>,
) -> Result<(StatusCode, Json<SpawnedAgent>), ApiError> {
    let manifest = Manifest::parse(&body.manifest)
        .map_err(|e| ApiError::bad_request("invalid_manifest", e.to_string()))?;
    let args = serde_json::to_value(&manifest).unwrap_or_default();
    let request = owner_action(
        &principal,
        "agent.spawn",
        format!("agent:{}", manifest.name),
        format!("spawn agent {}", manifest.name),
    )?;
    // The blocking pool keeps the runtime's context, so the supervisor can start the
    // agent's process from there.
    let state2 = state.clone();
    let spawned = tokio::task::spawn_blocking(move || {
        let k = &state2.kernel;
        audited(k, &request, &args, || {
            k.spawn_agent(&manifest).map_err(kernel_error)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(name = %spawned.agent.name, id = %spawned.agent.id, "agent spawned");
    Ok((
        StatusCode::CREATED,
        Json(SpawnedAgent {
            agent: spawned.agent.into(),
            token: spawned.token,
        }),
    ))
}

/// Shows one agent.
#[utoipa::path(get, path = "/api/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, description = "The agent", body = AgentBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
) -> Result<Json<AgentBody>, ApiError> {
    let agent = blocking(&state, move |k| k.agent(&name)).await?;
    Ok(Json(AgentBody {
        agent: agent.into(),
    }))
}

/// Stops an agent (owner only); it keeps its id, grants and mailbox.
#[utoipa::path(post, path = "/api/v1/agents/{name}/stop", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, description = "Stopped", body = AgentBody),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn stop(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<AgentBody>, ApiError> {
    let request = owner_action(
        &principal,
        "agent.stop",
        format!("agent:{name}"),
        format!("stop agent {name}"),
    )?;
    let agent = audited_async(&state, request, async {
        state.kernel.stop_agent(&name).await.map_err(kernel_error)
    })
    .await?;
    Ok(Json(AgentBody {
        agent: agent.into(),
    }))
}

/// Starts a stopped agent (owner only).
#[utoipa::path(post, path = "/api/v1/agents/{name}/start", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, description = "Started", body = AgentBody),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn start(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<AgentBody>, ApiError> {
    let request = owner_action(
        &principal,
        "agent.start",
        format!("agent:{name}"),
        format!("start agent {name}"),
    )?;
    let agent = audited_async(&state, request, async {
        state.kernel.start_agent(&name).map_err(kernel_error)
    })
    .await?;
    Ok(Json(AgentBody {
        agent: agent.into(),
    }))
}

/// Removes an agent for good (owner only): its name is free, its id never works again.
#[utoipa::path(delete, path = "/api/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, description = "Removed", body = AgentBody),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
) -> Result<Json<AgentBody>, ApiError> {
    let agent = state
        .kernel
        .remove_agent(&name)
        .await
        .map_err(kernel_error)?;
    Ok(Json(AgentBody {
        agent: agent.into(),
    }))
}

/// The end of an agent's log (owner only).
#[utoipa::path(get, path = "/api/v1/agents/{name}/logs", tag = "agents",
    params(("name" = String, Path, description = "The agent's name"), LogQuery),
    responses((status = 200, description = "The log's end", body = AgentLog),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn logs(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Json<AgentLog>, ApiError> {
    let bytes = query.bytes.unwrap_or(64 * 1024).min(1024 * 1024);
    let log = blocking(&state, move |k| k.agent_log(&name, bytes)).await?;
    Ok(Json(AgentLog { log }))
}
