//! The session manager as typed tools, so any MCP client (and any agent) can use it:
//! `session.register`, `session.list`, `session.claim`, `session.release`, `session.post`,
//! `session.inbox`, `session.send`.
//!
//! Each goes through the consent broker like every tool. The resource is the session acted
//! for (`session:<id>`), the repository (`repo:<common git dir>`) for the board, or the
//! working directory (`path:<cwd>`) for a registration, so a grant can confine an agent to
//! one project. Clients connected through `gyrus mcp` act as the owner.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gyrus_tools::{
    CallContext, Ran, Requirement, Risk, ToolEnv, ToolError, Tools, Typed, TypedTool,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manager::{Manager, ManagerError};
use crate::model::{Client, Lease, LeaseMode, Message, Note, NoteKind, Session};
use crate::store::{Claim, SessionFilter, StoreError};

/// Registers the session tools, all sharing `manager`.
pub fn register(tools: &mut Tools, manager: Arc<Manager>) {
    tools.register(Typed::new(SessionRegister(manager.clone())));
    tools.register(Typed::new(SessionList(manager.clone())));
    tools.register(Typed::new(SessionClaim(manager.clone())));
    tools.register(Typed::new(SessionRelease(manager.clone())));
    tools.register(Typed::new(SessionPost(manager.clone())));
    tools.register(Typed::new(SessionInbox(manager.clone())));
    tools.register(Typed::new(SessionSend(manager)));
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn err(e: ManagerError) -> ToolError {
    match e {
        ManagerError::Store(StoreError::NotFound(m)) => {
            ToolError::Failed(format!("no session {m}; session.list shows the live ones"))
        }
        ManagerError::Store(e @ StoreError::NoMessage { .. }) => ToolError::Failed(e.to_string()),
        ManagerError::Store(e @ StoreError::NotLive { .. }) => ToolError::Failed(e.to_string()),
        ManagerError::Store(e @ (StoreError::InvalidGlob { .. } | StoreError::Invalid(_))) => {
            ToolError::InvalidArgs(e.to_string())
        }
        ManagerError::Invalid(m) => ToolError::InvalidArgs(m),
        other => ToolError::Internal(other.to_string()),
    }
}

fn store_err(e: StoreError) -> ToolError {
    err(ManagerError::Store(e))
}

fn session_resource(id: &str) -> Result<String, ToolError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(ToolError::InvalidArgs(format!(
            "session ids look like ses_0123abcd…, got {id:?}"
        )));
    }
    Ok(format!("session:{id}"))
}

fn requirement(action: &str, resource: String) -> Result<Vec<Requirement>, ToolError> {
    Ok(vec![Requirement::new(action, resource)?])
}

/// Arguments of `session.register`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterArgs {
    /// Which client you are: claude-code, codex, gemini, aider or other.
    pub client: Client,
    /// Your own id for this session (registering again with it returns the same session).
    pub client_session_id: String,
    /// Your working directory, absolute.
    pub cwd: String,
    /// What you are working on, in a line.
    pub task: Option<String>,
}

/// What `session.register` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Registered {
    /// The session (use its `id` in the other session tools).
    pub session: Session,
    /// False when it was registered already.
    pub created: bool,
    /// Who else works in this repository, what they hold, predicted conflicts, the board.
    pub digest: String,
}

/// `session.register`.
#[derive(Debug)]
pub struct SessionRegister(Arc<Manager>);

impl TypedTool for SessionRegister {
    type Args = RegisterArgs;
    type Output = Registered;
    const NAME: &'static str = "session.register";
    const DESCRIPTION: &'static str = "Register this coding session with gyrus's session manager (idempotent) and get a digest of the other sessions in the repository: their tasks, the paths they hold, predicted merge conflicts and the shared board.";
    const RISK: Risk = Risk::Write;

    fn requirements(
        &self,
        args: &RegisterArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        if !args.cwd.starts_with('/') {
            return Err(ToolError::InvalidArgs(format!(
                "cwd must be an absolute path, got {:?}",
                args.cwd
            )));
        }
        Ok(vec![Requirement::new(
            Self::NAME,
            format!("path:{}", args.cwd.trim_end_matches('/')),
        )?])
    }

    fn run(&self, _cx: &CallContext<'_>, args: RegisterArgs) -> Result<Ran<Registered>, ToolError> {
        let now = now_ms();
        let (session, created) = self
            .0
            .register(
                args.client,
                &args.client_session_id,
                &args.cwd,
                args.task.as_deref(),
                now,
            )
            .map_err(err)?;
        let digest = self.0.digest(&session, now).map_err(err)?;
        Ok(Ran::output(Registered {
            session,
            created,
            digest,
        }))
    }
}

/// Arguments of `session.list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Only this repository (its common git directory, as sessions report it).
    pub repository: Option<String>,
    /// Include ended and expired sessions.
    #[serde(default)]
    pub all: bool,
}

/// A session with what it holds.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionView {
    /// The session.
    pub session: Session,
    /// Its live leases.
    pub leases: Vec<Lease>,
}

/// What `session.list` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionListing {
    /// The sessions, oldest first.
    pub sessions: Vec<SessionView>,
}

/// `session.list`.
#[derive(Debug)]
pub struct SessionList(Arc<Manager>);

impl TypedTool for SessionList {
    type Args = ListArgs;
    type Output = SessionListing;
    const NAME: &'static str = "session.list";
    const DESCRIPTION: &'static str = "List the live coding sessions (Claude Code, Codex, Gemini CLI, Aider, …) with their tasks, branches and the paths they hold.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, args: &ListArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        let resource = match &args.repository {
            Some(r) => format!("repo:{r}"),
            None => "repo:*".to_string(),
        };
        Ok(vec![Requirement::new(Self::NAME, resource)?])
    }

    fn run(&self, _cx: &CallContext<'_>, args: ListArgs) -> Result<Ran<SessionListing>, ToolError> {
        let now = now_ms();
        let store = self.0.store();
        let sessions = store
            .list(&SessionFilter {
                live_only: !args.all,
                repository: args.repository,
                worktree: None,
            })
            .map_err(store_err)?;
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let leases = store.session_leases(&session.id, now).map_err(store_err)?;
            out.push(SessionView { session, leases });
        }
        Ok(Ran::output(SessionListing { sessions: out }))
    }
}

/// Arguments of `session.claim`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimArgs {
    /// Your session id.
    pub session: String,
    /// A path glob relative to your worktree, e.g. `src/parser/**`.
    pub glob: String,
    /// exclusive (default) or shared.
    #[serde(default = "exclusive")]
    pub mode: LeaseMode,
    /// Lifetime in seconds (default 900); claim again with the same key to renew.
    pub ttl_secs: Option<u64>,
    /// Idempotency key (default: mode and glob).
    pub key: Option<String>,
}

fn exclusive() -> LeaseMode {
    LeaseMode::Exclusive
}

/// What `session.claim` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Claimed {
    /// True when the lease is yours.
    pub granted: bool,
    /// The lease, when granted.
    pub lease: Option<Lease>,
    /// Who holds an overlapping lease, when not.
    pub holder: Option<Session>,
    /// Their lease, when not granted.
    pub held: Option<Lease>,
}

/// `session.claim`.
#[derive(Debug)]
pub struct SessionClaim(Arc<Manager>);

impl TypedTool for SessionClaim {
    type Args = ClaimArgs;
    type Output = Claimed;
    const NAME: &'static str = "session.claim";
    const DESCRIPTION: &'static str = "Take (or renew) an advisory lease on a path glob in your worktree, exclusive or shared, so other sessions' edits of it are refused. Answers granted=false with the holder when another session holds an overlapping lease.";
    const RISK: Risk = Risk::Write;

    fn requirements(
        &self,
        args: &ClaimArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        requirement(Self::NAME, session_resource(&args.session)?)
    }

    fn run(&self, _cx: &CallContext<'_>, args: ClaimArgs) -> Result<Ran<Claimed>, ToolError> {
        let ttl_secs = args.ttl_secs.unwrap_or(900);
        if ttl_secs == 0 || ttl_secs > 7 * 24 * 3600 {
            return Err(ToolError::InvalidArgs(
                "ttl_secs must be between 1 and 604800".into(),
            ));
        }
        let claim = Claim {
            glob: args.glob,
            mode: args.mode,
            ttl_ms: i64::try_from(ttl_secs * 1000).unwrap_or(i64::MAX),
            key: args.key,
        };
        let out = match self
            .0
            .store()
            .claim(&args.session, &claim, now_ms())
            .map_err(store_err)?
        {
            Ok(lease) => Claimed {
                granted: true,
                lease: Some(lease),
                holder: None,
                held: None,
            },
            Err(c) => Claimed {
                granted: false,
                lease: None,
                holder: Some(c.holder),
                held: Some(c.lease),
            },
        };
        Ok(Ran::output(out))
    }
}

/// Arguments of `session.release`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseArgs {
    /// Your session id.
    pub session: String,
    /// A lease id, a glob you hold, or `*` for all of your leases.
    pub which: String,
}

/// What `session.release` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Released {
    /// How many leases ended.
    pub released: usize,
}

/// `session.release`.
#[derive(Debug)]
pub struct SessionRelease(Arc<Manager>);

impl TypedTool for SessionRelease {
    type Args = ReleaseArgs;
    type Output = Released;
    const NAME: &'static str = "session.release";
    const DESCRIPTION: &'static str = "Release your leases: one by id or glob, or all with `*`.";
    const RISK: Risk = Risk::Write;

    fn requirements(
        &self,
        args: &ReleaseArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        requirement(Self::NAME, session_resource(&args.session)?)
    }

    fn run(&self, _cx: &CallContext<'_>, args: ReleaseArgs) -> Result<Ran<Released>, ToolError> {
        let released = self
            .0
            .store()
            .release(&args.session, &args.which)
            .map_err(store_err)?;
        Ok(Ran::output(Released { released }))
    }
}

/// Arguments of `session.post`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostArgs {
    /// Your session id; the note goes on your repository's board.
    pub session: String,
    /// note (default) or decision.
    #[serde(default = "note")]
    pub kind: NoteKind,
    /// The text (up to 8 KiB).
    pub text: String,
}

fn note() -> NoteKind {
    NoteKind::Note
}

/// `session.post`.
#[derive(Debug)]
pub struct SessionPost(Arc<Manager>);

impl TypedTool for SessionPost {
    type Args = PostArgs;
    type Output = Note;
    const NAME: &'static str = "session.post";
    const DESCRIPTION: &'static str = "Post a note or a decision on your repository's shared board; every session in the repository sees the latest ones in its digest.";
    const RISK: Risk = Risk::Write;

    fn requirements(&self, args: &PostArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        requirement(Self::NAME, session_resource(&args.session)?)
    }

    fn run(&self, _cx: &CallContext<'_>, args: PostArgs) -> Result<Ran<Note>, ToolError> {
        let store = self.0.store();
        let session = store
            .get(&args.session)
            .map_err(store_err)?
            .ok_or_else(|| store_err(StoreError::NotFound(args.session.clone())))?;
        let note = store
            .post(
                &session.repository,
                Some(&session.id),
                args.kind,
                &args.text,
                now_ms(),
            )
            .map_err(store_err)?;
        Ok(Ran::output(note))
    }
}

/// Arguments of `session.inbox`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxArgs {
    /// Your session id.
    pub session: String,
    /// Message ids to acknowledge first.
    #[serde(default)]
    pub ack: Vec<i64>,
    /// Include acknowledged messages.
    #[serde(default)]
    pub all: bool,
}

/// What `session.inbox` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Inbox {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
}

/// `session.inbox`.
#[derive(Debug)]
pub struct SessionInbox(Arc<Manager>);

impl TypedTool for SessionInbox {
    type Args = InboxArgs;
    type Output = Inbox;
    const NAME: &'static str = "session.inbox";
    const DESCRIPTION: &'static str =
        "Read your messages from other sessions (and acknowledge some by id).";
    const RISK: Risk = Risk::Write;

    fn requirements(
        &self,
        args: &InboxArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        requirement(Self::NAME, session_resource(&args.session)?)
    }

    fn run(&self, _cx: &CallContext<'_>, args: InboxArgs) -> Result<Ran<Inbox>, ToolError> {
        let store = self.0.store();
        for id in &args.ack {
            store.ack(&args.session, *id).map_err(store_err)?;
        }
        let messages = store.inbox(&args.session, args.all).map_err(store_err)?;
        Ok(Ran::output(Inbox { messages }))
    }
}

/// Arguments of `session.send`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// Your session id.
    pub from: String,
    /// The recipient's session id.
    pub to: String,
    /// The text (up to 8 KiB); it reaches the recipient at its next prompt or tool call.
    pub text: String,
}

/// `session.send`.
#[derive(Debug)]
pub struct SessionSend(Arc<Manager>);

impl TypedTool for SessionSend {
    type Args = SendArgs;
    type Output = Message;
    const NAME: &'static str = "session.send";
    const DESCRIPTION: &'static str = "Send a message to another live session; it is shown to it at its next prompt or tool call.";
    const RISK: Risk = Risk::Write;

    fn requirements(&self, args: &SendArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        let from = session_resource(&args.from)?;
        let to = session_resource(&args.to)?;
        Ok(vec![
            Requirement::new(Self::NAME, from)?,
            Requirement::new("session.receive", to)?,
        ])
    }

    fn run(&self, _cx: &CallContext<'_>, args: SendArgs) -> Result<Ran<Message>, ToolError> {
        let message = self
            .0
            .store()
            .send(Some(&args.from), &args.to, &args.text, now_ms())
            .map_err(store_err)?;
        Ok(Ran::output(message))
    }
}
