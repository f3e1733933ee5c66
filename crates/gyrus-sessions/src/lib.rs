//! The session manager (SYSTEM.md: "sessions", the corpus callosum).
//!
//! Several LLM coding clients (Claude Code, Codex, Gemini CLI, Aider) run at once on one
//! repository. This crate keeps what lets them see each other and not clobber each other's
//! files:
//!
//! - [`model`]: the types: sessions, leases, board notes, messages.
//! - [`store`]: [`SessionStore`], the SQLite registry, leases, board and inboxes
//!   (`memory/sessions.db`), safe for many processes at once.
//! - [`globs`]: when a lease's path glob covers a path, and when two leases overlap (pure).
//! - [`conflicts`]: conflict prediction between branches and worktrees with
//!   `git merge-tree --write-tree`.
//! - [`hooks`]: each client's hook JSON in, canonical [`hooks::HookEvent`]s out, and
//!   [`hooks::HookReply`] rendered back in the client's format and exit-code convention (pure).
//! - [`patch`]: the paths a Codex `apply_patch` envelope touches (pure).
//! - [`manager`]: [`Manager`], what the daemon runs: hook events in, verdicts and context
//!   out, digests, conflict prediction across live sessions.
//! - [`tools`]: the `session.*` tools (register, list, claim, release, post, inbox, send),
//!   also served over MCP.
//! - [`install`]: merging gyrus's hook and MCP settings into each client's configuration (pure).

pub mod conflicts;
pub mod globs;
pub mod hooks;
pub mod install;
pub mod manager;
pub mod model;
pub mod patch;
pub mod store;
pub mod tools;

pub use manager::{Manager, ManagerConfig, ManagerError};
pub use model::{
    Client, Lease, LeaseMode, Message, NewSession, Note, NoteKind, Session, SessionState,
};
pub use store::{Claim, Conflict, SessionStore, StoreError};

/// Where the session store lives: `memory/sessions.db` (history of sessions, the board and
/// messages are memory; leases are only ever live rows in it).
pub fn store_path(home: &gyrus_home::Home) -> std::path::PathBuf {
    home.layer(gyrus_home::Layer::Memory).join("sessions.db")
}
