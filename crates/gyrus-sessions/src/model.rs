//! The session manager's types.

use serde::{Deserialize, Serialize};

/// Which LLM client a session is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    /// Anthropic's Claude Code.
    ClaudeCode,
    /// OpenAI's Codex CLI.
    Codex,
    /// Google's Gemini CLI.
    Gemini,
    /// Aider (no hooks: run through `gyrus session wrap aider`).
    Aider,
    /// Anything else that registers itself (e.g. over MCP).
    Other,
}

impl Client {
    /// The name used on the command line and in JSON: `claude-code`, `codex`, `gemini`,
    /// `aider`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Client::ClaudeCode => "claude-code",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
            Client::Aider => "aider",
            Client::Other => "other",
        }
    }

    /// Parses [`Client::as_str`]'s names, and `claude` for Claude Code.
    pub fn parse(text: &str) -> Option<Client> {
        Some(match text {
            "claude-code" | "claude" => Client::ClaudeCode,
            "codex" => Client::Codex,
            "gemini" => Client::Gemini,
            "aider" => Client::Aider,
            "other" => Client::Other,
            _ => return None,
        })
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Working on a prompt (a prompt or tool call was seen since the last stop).
    Active,
    /// Registered and alive, waiting for its user (the client reported a stop).
    Idle,
    /// The client reported its end (or its wrapper process exited).
    Ended,
    /// Silent for longer than `sessions.expire_after_secs`.
    Expired,
}

impl SessionState {
    /// True while the session counts as alive: active or idle.
    pub fn is_live(self) -> bool {
        matches!(self, SessionState::Active | SessionState::Idle)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Idle => "idle",
            SessionState::Ended => "ended",
            SessionState::Expired => "expired",
        }
    }
}

/// What a client tells the registry when a session starts (or is first seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewSession {
    /// The client.
    pub client: Client,
    /// The client's own id for the session (Claude Code's `session_id`, …). Registering the
    /// same `(client, client_session_id)` again returns the same session.
    pub client_session_id: String,
    /// Working directory, absolute.
    pub cwd: String,
    /// The worktree's top directory (`git rev-parse --show-toplevel`), or `cwd` outside git.
    /// Leases are relative to it.
    pub worktree: String,
    /// The repository every worktree of it shares (the canonical `git rev-parse
    /// --git-common-dir`), or `cwd` outside git. Boards and conflict prediction are per
    /// repository.
    pub repository: String,
    /// The checked-out branch, if any.
    pub branch: Option<String>,
    /// What the session is doing, if known.
    pub task: Option<String>,
}

/// A registered session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Session {
    /// gyrus's id for it (`ses_…`), never reused.
    pub id: String,
    /// The client.
    pub client: Client,
    /// The client's own id.
    pub client_session_id: String,
    /// Working directory.
    pub cwd: String,
    /// The worktree's top directory.
    pub worktree: String,
    /// The shared repository.
    pub repository: String,
    /// The branch, if any.
    pub branch: Option<String>,
    /// Unix milliseconds it registered.
    pub started_ms: i64,
    /// Unix milliseconds of its last event.
    pub last_seen_ms: i64,
    /// Where it is in its life.
    pub state: SessionState,
    /// What it is doing.
    pub task: Option<String>,
}

/// Exclusive or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseMode {
    /// Nobody else may hold an overlapping lease.
    Exclusive,
    /// Others may hold overlapping shared leases, not exclusive ones.
    Shared,
}

impl LeaseMode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseMode::Exclusive => "exclusive",
            LeaseMode::Shared => "shared",
        }
    }
}

/// An advisory lease on a path glob within one worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lease {
    /// `lea_…`.
    pub id: String,
    /// The holding session.
    pub session_id: String,
    /// The worktree the glob is relative to.
    pub worktree: String,
    /// A glob relative to the worktree, `/`-separated, e.g. `src/lib.rs` or `docs/**`.
    pub glob: String,
    /// Exclusive or shared.
    pub mode: LeaseMode,
    /// The idempotency key: claiming again with the same session and key renews this lease.
    pub key: String,
    /// Unix milliseconds it was first taken.
    pub acquired_ms: i64,
    /// Unix milliseconds it lapses unless renewed.
    pub expires_ms: i64,
}

/// A note on a repository's board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoteKind {
    /// Something others should know.
    Note,
    /// Something decided that others should follow.
    Decision,
}

/// One entry on a repository's board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Note {
    /// Its sequence number on the board.
    pub id: i64,
    /// The repository.
    pub repository: String,
    /// The session that posted it, if any (the owner may post too).
    pub session_id: Option<String>,
    /// Note or decision.
    pub kind: NoteKind,
    /// The text.
    pub text: String,
    /// Unix milliseconds it was posted.
    pub posted_ms: i64,
}

/// A message from one session (or the owner) to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// Its sequence number.
    pub id: i64,
    /// The sender's session id, or `None` for the owner.
    pub from_session: Option<String>,
    /// The recipient's session id.
    pub to_session: String,
    /// The text.
    pub text: String,
    /// Unix milliseconds it was sent.
    pub sent_ms: i64,
    /// Unix milliseconds it was first shown to the recipient (injected into its context).
    pub delivered_ms: Option<i64>,
    /// Unix milliseconds the recipient acknowledged it.
    pub acked_ms: Option<i64>,
}
