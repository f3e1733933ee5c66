//! The session manager: hook events from LLM clients, the registry, leases, the board,
//! messages and conflict prediction.
//!
//! Refused edits are written to the audit trail as decisions by the session
//! (`session.edit` on the path, with the holder in the reason), and session starts, ends and
//! refusals are published on the event bus (`session.*`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_audit::{EntryKind, NewEntry};
use gyrus_policy::Principal;
use gyrus_sessions::hooks::{HookInput, HookReply, Verdict};
use gyrus_sessions::manager::{Handled, Refusal, RepoConflicts};
use gyrus_sessions::store::{SessionFilter, StoreError};
use gyrus_sessions::tools::now_ms;
use gyrus_sessions::{Client, Lease, ManagerError, Message, Note, NoteKind, Session};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

fn manager_error(e: ManagerError) -> ApiError {
    match e {
        ManagerError::Store(StoreError::NotFound(id)) => ApiError::not_found(format!(
            "no session {id}; `gyrus session list` shows the live ones"
        )),
        ManagerError::Store(e @ StoreError::NoMessage { .. }) => ApiError::not_found(e.to_string()),
        ManagerError::Store(e @ StoreError::NotLive { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "session_not_live", e.to_string())
        }
        ManagerError::Store(e @ (StoreError::InvalidGlob { .. } | StoreError::Invalid(_))) => {
            ApiError::bad_request("invalid", e.to_string())
        }
        ManagerError::Invalid(m) => ApiError::bad_request("invalid", m),
        ManagerError::Git(e) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "git", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

fn store_error(e: StoreError) -> ApiError {
    manager_error(ManagerError::Store(e))
}

/// Runs blocking session-store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// `POST /api/v1/sessions/hook`: the answer to one hook event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookAnswer {
    /// The verdict, reason and context to give the client.
    #[schema(value_type = Object)]
    pub reply: HookReply,
    /// The session the event belongs to.
    pub session_id: String,
    /// The audit entry of a refused edit.
    pub audit_seq: Option<u64>,
}

/// Handles one hook event from an LLM client, already parsed by `gyrus hook CLIENT` into
/// gyrus's canonical form: registers the session on its start, takes leases for its edits,
/// refuses an edit of a path another live session holds exclusively, delivers messages.
#[utoipa::path(post, path = "/api/v1/sessions/hook", tag = "sessions",
    request_body(content = Object, description = "A canonical hook event: {client, client_session_id, cwd, event_name, event: {kind, …}}"),
    responses((status = 200, description = "What to answer the client", body = HookAnswer),
              (status = 400, description = "A malformed event", body = ErrorBody)))]
pub(crate) async fn hook(
    State(state): State<ApiStateRef>,
    ApiJson(input): ApiJson<HookInput>,
) -> Result<Json<HookAnswer>, ApiError> {
    let state2 = state.clone();
    // One trip to the blocking pool: the event, and for a refused edit its audit entry.
    let (handled, audit_seq): (Handled, Option<u64>) = blocking(move || {
        let handled = state2
            .sessions
            .handle(&input, now_ms())
            .map_err(manager_error)?;
        let seq = match &handled.refusal {
            Some(r) => Some(
                state2
                    .kernel
                    .record(refusal_entry(&handled, r))
                    .map(|e| e.seq)
                    .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        Ok((handled, seq))
    })
    .await?;
    let kernel = &state.kernel;
    let session = &handled.session;
    if handled.registered {
        kernel.emit(
            "session.started",
            json!({"session": session.id, "client": session.client, "worktree": session.worktree}),
        );
    }
    if !session.state.is_live() {
        kernel.emit("session.ended", json!({"session": session.id}));
    }
    if let (Some(r), Some(seq)) = (&handled.refusal, audit_seq) {
        kernel.emit(
            "session.lease.refused",
            json!({"session": session.id, "path": r.path, "holder": r.holder.id, "seq": seq}),
        );
    }
    Ok(Json(HookAnswer {
        reply: handled.reply,
        session_id: handled.session.id,
        audit_seq,
    }))
}

/// The audit decision for an edit refused because another session holds the path.
fn refusal_entry(handled: &Handled, r: &Refusal) -> NewEntry {
    let session = &handled.session;
    NewEntry {
        request_id: format!("req_{}", uuid_hex()),
        kind: EntryKind::Decision,
        principal: format!("session:{}", session.id),
        action: "session.edit".into(),
        resource: format!("path:{}", r.path),
        intent: session.task.clone().unwrap_or_default(),
        intent_source: "session".into(),
        policies: vec!["sessions.lease".into()],
        decision: Some(match r.verdict {
            Verdict::Ask => gyrus_audit::Decision::Ask,
            _ => gyrus_audit::Decision::Deny,
        }),
        reason: handled.reply.reason.clone().unwrap_or_default(),
        ..NewEntry::default()
    }
}

fn uuid_hex() -> String {
    let mut hex = uuid::Uuid::new_v4().simple().to_string();
    hex.truncate(16);
    hex
}

/// `GET /api/v1/sessions` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include ended and expired sessions.
    #[serde(default)]
    pub all: bool,
    /// Only sessions in this repository (its common git directory).
    pub repository: Option<String>,
}

/// A session with its leases.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session.
    #[schema(value_type = Object)]
    pub session: Session,
    /// Its live leases.
    #[schema(value_type = Vec<Object>)]
    pub leases: Vec<Lease>,
}

/// `GET /api/v1/sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Oldest first.
    pub sessions: Vec<SessionView>,
}

/// Lists sessions (live ones unless `all`), each with its leases.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(ListQuery),
    responses((status = 200, description = "The sessions", body = SessionList)))]
pub(crate) async fn list(
    State(state): State<ApiStateRef>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    blocking(move || {
        let now = now_ms();
        // Expire the silent first, so the list never shows a dead session as live.
        state.sessions.sweep(now).map_err(manager_error)?;
        let store = state.sessions.store();
        let sessions = store
            .list(&SessionFilter {
                live_only: !q.all,
                repository: q.repository,
                worktree: None,
            })
            .map_err(store_error)?;
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let leases = store
                .session_leases(&session.id, now)
                .map_err(store_error)?;
            out.push(SessionView { session, leases });
        }
        Ok(Json(SessionList { sessions: out }))
    })
    .await
}

/// `GET /api/v1/sessions/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionDetail {
    /// The session.
    #[schema(value_type = Object)]
    pub session: Session,
    /// Its live leases.
    #[schema(value_type = Vec<Object>)]
    pub leases: Vec<Lease>,
    /// Its messages, acknowledged ones included.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Message>,
}

/// Shows one session with its leases and messages.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session id, ses_…")),
    responses((status = 200, description = "The session", body = SessionDetail),
              (status = 404, description = "No such session", body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiStateRef>,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    blocking(move || {
        let now = now_ms();
        state.sessions.sweep(now).map_err(manager_error)?;
        let store = state.sessions.store();
        let session = store
            .get(&id)
            .map_err(store_error)?
            .ok_or_else(|| store_error(StoreError::NotFound(id.clone())))?;
        let leases = store.session_leases(&id, now).map_err(store_error)?;
        let messages = store.inbox(&id, true).map_err(store_error)?;
        Ok(Json(SessionDetail {
            session,
            leases,
            messages,
        }))
    })
    .await
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// claude-code, codex, gemini, aider or other.
    #[schema(value_type = String)]
    pub client: Client,
    /// The client's own id for the session.
    pub client_session_id: String,
    /// Absolute working directory.
    pub cwd: String,
    /// What it works on.
    pub task: Option<String>,
}

/// A registered session and its digest.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    /// The session.
    #[schema(value_type = Object)]
    pub session: Session,
    /// False when it was registered already.
    pub created: bool,
    /// Who else works here, what they hold, predicted conflicts, the board.
    pub digest: String,
}

/// Registers a session (idempotent by client and client session id), for clients without
/// hooks (`gyrus session wrap`).
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = RegisterBody,
    responses((status = 200, description = "The session", body = Registered),
              (status = 400, description = "A bad registration", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<ApiStateRef>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Json<Registered>, ApiError> {
    let state2 = state.clone();
    let out = blocking(move || {
        let now = now_ms();
        let (session, created) = state2
            .sessions
            .register(
                body.client,
                &body.client_session_id,
                &body.cwd,
                body.task.as_deref(),
                now,
            )
            .map_err(manager_error)?;
        let digest = state2
            .sessions
            .digest(&session, now)
            .map_err(manager_error)?;
        Ok(Registered {
            session,
            created,
            digest,
        })
    })
    .await?;
    state.kernel.emit(
        "session.started",
        json!({"session": out.session.id, "client": out.session.client, "worktree": out.session.worktree}),
    );
    Ok(Json(out))
}

/// Heartbeat of a session registered through `POST /api/v1/sessions`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/heartbeat", tag = "sessions",
    params(("id" = String, Path, description = "The session id")),
    responses((status = 200, description = "The session", body = Object),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "It ended or expired", body = ErrorBody)))]
pub(crate) async fn heartbeat(
    State(state): State<ApiStateRef>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    blocking(move || {
        state
            .sessions
            .store()
            .touch(&id, None, now_ms())
            .map(Json)
            .map_err(store_error)
    })
    .await
}

/// Ends a session and frees its leases.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/end", tag = "sessions",
    params(("id" = String, Path, description = "The session id")),
    responses((status = 200, description = "The session", body = Object),
              (status = 404, description = "No such session", body = ErrorBody)))]
pub(crate) async fn end(
    State(state): State<ApiStateRef>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let state2 = state.clone();
    let session = blocking(move || {
        state2
            .sessions
            .store()
            .end(&id, now_ms())
            .map_err(store_error)
    })
    .await?;
    state
        .kernel
        .emit("session.ended", json!({"session": session.id}));
    Ok(Json(session))
}

/// `POST /api/v1/sessions/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The text, up to 8 KiB.
    pub text: String,
    /// The sending session, if a session sends it (the owner otherwise).
    pub from: Option<String>,
}

/// Sends a message to a live session; it reaches it at its next prompt or tool call.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/messages", tag = "sessions", request_body = SendBody,
    params(("id" = String, Path, description = "The recipient's session id")),
    responses((status = 200, description = "The message", body = Object),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "It ended or expired", body = ErrorBody)))]
pub(crate) async fn send(
    State(state): State<ApiStateRef>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<Message>, ApiError> {
    blocking(move || {
        state
            .sessions
            .store()
            .send(body.from.as_deref(), &id, &body.text, now_ms())
            .map(Json)
            .map_err(store_error)
    })
    .await
}

/// `GET /api/v1/sessions/conflicts` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConflictsQuery {
    /// Only this repository (its common git directory).
    pub repository: Option<String>,
}

/// `GET /api/v1/sessions/conflicts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictList {
    /// Per repository with live sessions in several worktrees: each pair's predicted merge.
    #[schema(value_type = Vec<Object>)]
    pub repositories: Vec<RepoConflicts>,
}

/// Predicts, now, the merge conflicts between the worktrees of live sessions
/// (`git merge-tree --write-tree` between their current states, uncommitted changes
/// included).
#[utoipa::path(get, path = "/api/v1/sessions/conflicts", tag = "sessions", params(ConflictsQuery),
    responses((status = 200, description = "The predictions", body = ConflictList)))]
pub(crate) async fn conflicts(
    State(state): State<ApiStateRef>,
    Query(q): Query<ConflictsQuery>,
) -> Result<Json<ConflictList>, ApiError> {
    blocking(move || {
        state.sessions.sweep(now_ms()).map_err(manager_error)?;
        let repositories = state
            .sessions
            .predict(q.repository.as_deref())
            .map_err(manager_error)?;
        Ok(Json(ConflictList { repositories }))
    })
    .await
}

/// `GET /api/v1/sessions/board` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    /// A directory inside the repository (its board is shown).
    pub cwd: String,
    /// How many of the latest notes (default 50).
    pub limit: Option<usize>,
}

/// `GET /api/v1/sessions/board`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Board {
    /// The repository.
    pub repository: String,
    /// Oldest first.
    #[schema(value_type = Vec<Object>)]
    pub notes: Vec<Note>,
}

/// A repository's board of notes and decisions.
#[utoipa::path(get, path = "/api/v1/sessions/board", tag = "sessions", params(BoardQuery),
    responses((status = 200, description = "The board", body = Board),
              (status = 400, description = "Not an absolute directory", body = ErrorBody)))]
pub(crate) async fn board(
    State(state): State<ApiStateRef>,
    Query(q): Query<BoardQuery>,
) -> Result<Json<Board>, ApiError> {
    blocking(move || {
        let repository = state
            .sessions
            .repository_of(&q.cwd)
            .map_err(manager_error)?;
        let notes = state
            .sessions
            .store()
            .board(&repository, q.limit.unwrap_or(50).min(1000))
            .map_err(store_error)?;
        Ok(Json(Board { repository, notes }))
    })
    .await
}

/// `POST /api/v1/sessions/board`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// A directory inside the repository.
    pub cwd: String,
    /// note (default) or decision.
    #[schema(value_type = Option<String>)]
    pub kind: Option<NoteKind>,
    /// The text, up to 8 KiB.
    pub text: String,
    /// The posting session, if a session posts it (the owner otherwise).
    pub session: Option<String>,
}

/// Posts a note or decision on a repository's board.
#[utoipa::path(post, path = "/api/v1/sessions/board", tag = "sessions", request_body = PostBody,
    responses((status = 200, description = "The note", body = Object),
              (status = 400, description = "A bad note", body = ErrorBody)))]
pub(crate) async fn post(
    State(state): State<ApiStateRef>,
    ApiJson(body): ApiJson<PostBody>,
) -> Result<Json<Note>, ApiError> {
    blocking(move || {
        let repository = state
            .sessions
            .repository_of(&body.cwd)
            .map_err(manager_error)?;
        state
            .sessions
            .store()
            .post(
                &repository,
                body.session.as_deref(),
                body.kind.unwrap_or(NoteKind::Note),
                &body.text,
                now_ms(),
            )
            .map(Json)
            .map_err(store_error)
    })
    .await
}

/// `POST /api/v1/sessions/check`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// A directory inside the worktree the paths are relative to.
    pub cwd: String,
    /// Paths relative to the worktree's top directory (as `git diff --name-only` gives).
    pub paths: Vec<String>,
    /// The session asking; its own leases never count against it.
    pub session: Option<String>,
}

/// `POST /api/v1/sessions/check`: who holds which of these paths.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckAnswer {
    /// One line per held path, naming the holder and its task.
    pub held: Vec<HeldPath>,
}

/// A path another live session holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldPath {
    /// The path asked about.
    pub path: String,
    /// The lease that covers it.
    #[schema(value_type = Object)]
    pub lease: Lease,
    /// Its holder.
    #[schema(value_type = Object)]
    pub holder: Session,
}

/// Which of these paths other live sessions hold (for `gyrus session guard`, the pre-commit
/// guard).
#[utoipa::path(post, path = "/api/v1/sessions/check", tag = "sessions", request_body = CheckBody,
    responses((status = 200, description = "The held paths", body = CheckAnswer),
              (status = 400, description = "A bad request", body = ErrorBody)))]
pub(crate) async fn check(
    State(state): State<ApiStateRef>,
    Extension(_principal): Extension<Principal>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<CheckAnswer>, ApiError> {
    if body.paths.len() > 100_000 {
        return Err(ApiError::bad_request("invalid", "at most 100000 paths"));
    }
    blocking(move || {
        let now = now_ms();
        state.sessions.sweep(now).map_err(manager_error)?;
        let held = state
            .sessions
            .held(&body.cwd, &body.paths, body.session.as_deref(), now)
            .map_err(manager_error)?
            .into_iter()
            .map(|c| HeldPath {
                path: c.path,
                lease: c.lease,
                holder: c.holder,
            })
            .collect();
        Ok(Json(CheckAnswer { held }))
    })
    .await
}
