//! [`SessionStore`]: the SQLite registry of sessions, their leases, the boards and the inboxes
//! (`memory/sessions.db`).
//!
//! Many processes open the same file at once (the daemon, hook processes, tests), so the
//! database runs in WAL mode with `synchronous=FULL` (an acknowledged write survives
//! `kill -9` and power loss), waits up to 10 s for a lock, and does every read-modify-write
//! in a `BEGIN IMMEDIATE` transaction: two processes racing for the same lease are put in
//! order by SQLite's write lock, and exactly one wins. Inside one process the connection
//! sits behind a mutex, so a store is `Send + Sync` and shared by reference.
//!
//! Times are Unix milliseconds passed in by the caller (`now_ms`); the store never reads the
//! clock (except [`SessionStore::ack`], whose signature has no time: see
//! [`SessionStore::ack_at`]). Session rows are kept forever as history; leases are deleted
//! when released, when their session ends or expires, and by [`SessionStore::expire`] once
//! lapsed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::globs;
use crate::model::{
    Client, Lease, LeaseMode, Message, NewSession, Note, NoteKind, Session, SessionState,
};

/// The schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// The longest board note, message or task, in bytes.
pub const MAX_TEXT_BYTES: usize = 8192;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    client_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    worktree TEXT NOT NULL,
    repository TEXT NOT NULL,
    branch TEXT,
    started_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    task TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_client ON sessions (client, client_session_id);
CREATE INDEX IF NOT EXISTS sessions_state ON sessions (state, last_seen_ms);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_ms, id);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    worktree TEXT NOT NULL,
    glob TEXT NOT NULL,
    mode TEXT NOT NULL,
    key TEXT NOT NULL,
    acquired_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS leases_key ON leases (session_id, key);
CREATE INDEX IF NOT EXISTS leases_worktree ON leases (worktree, expires_ms);
CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires_ms);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    session_id TEXT REFERENCES sessions (id),
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    posted_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_repository ON notes (repository, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_session TEXT REFERENCES sessions (id),
    to_session TEXT NOT NULL REFERENCES sessions (id),
    text TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    acked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_to ON messages (to_session, id);
";

const SESSION_COLUMNS: &str = "s.id, s.client, s.client_session_id, s.cwd, s.worktree, \
     s.repository, s.branch, s.started_ms, s.last_seen_ms, s.state, s.task";
const LEASE_COLUMNS: &str =
    "l.id, l.session_id, l.worktree, l.glob, l.mode, l.key, l.acquired_ms, l.expires_ms";
const MESSAGE_COLUMNS: &str = "id, from_session, to_session, text, sent_ms, delivered_ms, acked_ms";
const LIVE: &str = "('active', 'idle')";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (the file is unreadable, locked past the busy timeout, corrupt, …).
    #[error("session store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database file or its directory could not be created.
    #[error("session store {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// No session has this id.
    #[error("no session {0}; `gyrus session list` shows the live ones")]
    NotFound(String),
    /// The session ended or expired.
    #[error("session {id} is {}; it must register again", .state.as_str())]
    NotLive {
        /// The session.
        id: String,
        /// Ended or expired.
        state: SessionState,
    },
    /// The session has no message with this id.
    #[error("session {session_id} has no message {message_id}")]
    NoMessage {
        /// The session asked about.
        session_id: String,
        /// The message id asked for.
        message_id: i64,
    },
    /// A lease glob (or path) that [`globs::validate`] refuses.
    #[error("invalid lease glob {glob:?}: {reason}")]
    InvalidGlob {
        /// The glob as given.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other bad argument: empty or oversized text, a TTL under 1 ms, …
    #[error("{0}")]
    Invalid(String),
}

/// A request for one lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The glob, relative to the session's worktree.
    pub glob: String,
    /// Exclusive or shared.
    pub mode: LeaseMode,
    /// How long it lasts unless renewed, in milliseconds (at least 1).
    pub ttl_ms: i64,
    /// The idempotency key; `None` means `"{mode}:{glob}"`.
    pub key: Option<String>,
}

/// Another session's lease that stands in the way of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The glob or path asked for, exactly as given.
    pub path: String,
    /// The other session's lease.
    pub lease: Lease,
    /// The session holding it.
    pub holder: Session,
}

/// Which sessions [`SessionStore::list`] returns; the default is all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Only active and idle sessions.
    pub live_only: bool,
    /// Only sessions of this repository.
    pub repository: Option<String>,
    /// Only sessions in this worktree.
    pub worktree: Option<String>,
}

/// The SQLite registry of sessions, leases, boards and inboxes. See the module documentation.
pub struct SessionStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What to return from a transaction that may find a conflict: the conflict, or the value.
type Claimed<T> = Result<T, Conflict>;

impl SessionStore {
    /// Opens (creating if needed) the store at `path`. A missing parent directory is created
    /// with mode 0700 and a new file gets mode 0600.
    pub fn open(path: &Path) -> Result<SessionStore, StoreError> {
        let shown = path.display().to_string();
        let io = |source| StoreError::Io {
            path: shown.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir(parent).map_err(io)?;
        }
        create_file(path).map_err(io)?;
        let sqlite = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        set_wal(&conn).map_err(sqlite)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Invalid(format!(
                "session store {shown} has schema version {version}, newer than this gyrus \
                 ({SCHEMA_VERSION}); upgrade gyrus"
            )));
        }
        if version < SCHEMA_VERSION {
            tx.execute_batch(SCHEMA).map_err(sqlite)?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        Ok(SessionStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers a session, or returns the existing one for `(client, client_session_id)`
    /// whatever its state, updating its cwd, worktree, repository, branch, task (when
    /// `Some`) and last-seen time and making it active (a revived session keeps its id).
    /// Leases it holds in another worktree than the new one are released. Returns the
    /// session and whether it was created now.
    pub fn register(&self, new: &NewSession, now_ms: i64) -> Result<(Session, bool), StoreError> {
        if new.client_session_id.is_empty() {
            return Err(StoreError::Invalid(
                "the client's session id is empty".into(),
            ));
        }
        if new.worktree.is_empty() || new.repository.is_empty() {
            return Err(StoreError::Invalid(
                "a session needs its worktree and repository".into(),
            ));
        }
        if let Some(task) = &new.task {
            check_text("a task", task)?;
        }
        self.write(|tx| {
            let existing = find_session(tx, new.client, &new.client_session_id)?;
            let created = existing.is_none();
            let id = match existing {
                Some(old) => {
                    tx.prepare_cached(
                        "UPDATE sessions SET cwd = ?2, worktree = ?3, repository = ?4, \
                         branch = ?5, task = COALESCE(?6, task), last_seen_ms = ?7, \
                         state = 'active' WHERE id = ?1",
                    )?
                    .execute(params![
                        old.id,
                        new.cwd,
                        new.worktree,
                        new.repository,
                        new.branch,
                        new.task,
                        now_ms
                    ])?;
                    tx.prepare_cached(
                        "DELETE FROM leases WHERE session_id = ?1 AND worktree != ?2",
                    )?
                    .execute(params![old.id, new.worktree])?;
                    old.id
                }
                None => {
                    let id = new_id("ses_");
                    tx.prepare_cached(
                        "INSERT INTO sessions (id, client, client_session_id, cwd, worktree, \
                         repository, branch, started_ms, last_seen_ms, state, task) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'active', ?9)",
                    )?
                    .execute(params![
                        id,
                        new.client.as_str(),
                        new.client_session_id,
                        new.cwd,
                        new.worktree,
                        new.repository,
                        new.branch,
                        now_ms,
                        new.task
                    ])?;
                    id
                }
            };
            let session = get_session(tx, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            Ok((session, created))
        })
    }

    /// The session with this id, in any state.
    pub fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.read(|conn| get_session(conn, id))
    }

    /// The session a client knows by `client_session_id`, in any state.
    pub fn find(
        &self,
        client: Client,
        client_session_id: &str,
    ) -> Result<Option<Session>, StoreError> {
        self.read(|conn| find_session(conn, client, client_session_id))
    }

    /// A heartbeat: last-seen becomes `now_ms` and, when `state` is given, the state (only
    /// active or idle; anything else is [`StoreError::Invalid`]). [`StoreError::NotLive`] for
    /// an ended or expired session, [`StoreError::NotFound`] for an unknown one.
    pub fn touch(
        &self,
        id: &str,
        state: Option<SessionState>,
        now_ms: i64,
    ) -> Result<Session, StoreError> {
        if let Some(state) = state.filter(|s| !s.is_live()) {
            return Err(StoreError::Invalid(format!(
                "a heartbeat may set a session active or idle, not {}",
                state.as_str()
            )));
        }
        self.write(|tx| {
            live_session(tx, id)?;
            tx.prepare_cached(
                "UPDATE sessions SET last_seen_ms = ?2, state = COALESCE(?3, state) WHERE id = ?1",
            )?
            .execute(params![id, now_ms, state.map(SessionState::as_str)])?;
            get_session(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
        })
    }

    /// Sets (or with `None` clears) what the session is doing; also a heartbeat. Errors as
    /// [`SessionStore::touch`].
    pub fn set_task(
        &self,
        id: &str,
        task: Option<&str>,
        now_ms: i64,
    ) -> Result<Session, StoreError> {
        if let Some(task) = task {
            check_text("a task", task)?;
        }
        self.write(|tx| {
            live_session(tx, id)?;
            tx.prepare_cached("UPDATE sessions SET last_seen_ms = ?2, task = ?3 WHERE id = ?1")?
                .execute(params![id, now_ms, task])?;
            get_session(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
        })
    }

    /// Ends the session and releases all its leases, in one transaction. Ending an ended
    /// session returns it unchanged; an expired one becomes ended.
    pub fn end(&self, id: &str, now_ms: i64) -> Result<Session, StoreError> {
        self.write(|tx| {
            let session =
                get_session(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            tx.prepare_cached("DELETE FROM leases WHERE session_id = ?1")?
                .execute(params![id])?;
            if session.state == SessionState::Ended {
                return Ok(session);
            }
            tx.prepare_cached(
                "UPDATE sessions SET state = 'ended', last_seen_ms = MAX(last_seen_ms, ?2) \
                 WHERE id = ?1",
            )?
            .execute(params![id, now_ms])?;
            get_session(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
        })
    }

    /// Expires every live session silent since before `now_ms - silent_after_ms` (it loses
    /// its leases) and deletes every lease with `expires_ms <= now_ms`. Returns the sessions
    /// expired now, ordered by start time and id.
    pub fn expire(&self, now_ms: i64, silent_after_ms: i64) -> Result<Vec<Session>, StoreError> {
        let cutoff = now_ms.saturating_sub(silent_after_ms);
        self.write(|tx| {
            let silent: Vec<String> = tx
                .prepare_cached(&format!(
                    "SELECT id FROM sessions WHERE state IN {LIVE} AND last_seen_ms < ?1 \
                     ORDER BY started_ms, id"
                ))?
                .query_map(params![cutoff], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut expired = Vec::with_capacity(silent.len());
            for id in &silent {
                tx.prepare_cached("UPDATE sessions SET state = 'expired' WHERE id = ?1")?
                    .execute(params![id])?;
                tx.prepare_cached("DELETE FROM leases WHERE session_id = ?1")?
                    .execute(params![id])?;
                if let Some(s) = get_session(tx, id)? {
                    expired.push(s);
                }
            }
            tx.prepare_cached("DELETE FROM leases WHERE expires_ms <= ?1")?
                .execute(params![now_ms])?;
            Ok(expired)
        })
    }

    /// The sessions `filter` lets through, ordered by start time and id.
    pub fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.read(|conn| {
            let mut sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE 1 = 1");
            if filter.live_only {
                sql.push_str(&format!(" AND s.state IN {LIVE}"));
            }
            sql.push_str(" AND (?1 IS NULL OR s.repository = ?1)");
            sql.push_str(" AND (?2 IS NULL OR s.worktree = ?2)");
            sql.push_str(" ORDER BY s.started_ms, s.id");
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![filter.repository, filter.worktree], |r| {
                    session_from_row(r, 0)
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Takes or renews one lease for a live session, on its own worktree. The same
    /// `(session, key)` renews: new expiry (`now_ms + ttl_ms`), glob and mode, same id and
    /// acquisition time. A conflict is another live session's unexpired lease in the same
    /// worktree whose glob [`globs::overlap`]s, one of the two being exclusive; the first
    /// (oldest lease first) comes back as `Ok(Err(conflict))` and nothing is written.
    pub fn claim(
        &self,
        session_id: &str,
        claim: &Claim,
        now_ms: i64,
    ) -> Result<Claimed<Lease>, StoreError> {
        globs::validate(&claim.glob).map_err(|reason| StoreError::InvalidGlob {
            glob: claim.glob.clone(),
            reason,
        })?;
        check_ttl(claim.ttl_ms)?;
        let glob = globs::normalize(&claim.glob);
        let key = match &claim.key {
            Some(key) if key.is_empty() => {
                return Err(StoreError::Invalid("a lease key may not be empty".into()));
            }
            Some(key) if key.len() > globs::MAX_GLOB_BYTES + 16 => {
                return Err(StoreError::Invalid("a lease key is too long".into()));
            }
            Some(key) => key.clone(),
            None => format!("{}:{glob}", claim.mode.as_str()),
        };
        self.write(|tx| {
            let session = live_session(tx, session_id)?;
            for lease in others_leases(tx, &session, now_ms)? {
                let either_exclusive =
                    claim.mode == LeaseMode::Exclusive || lease.mode == LeaseMode::Exclusive;
                if either_exclusive && globs::overlap(&lease.glob, glob) {
                    return Ok(Err(conflict(tx, &claim.glob, &lease)?));
                }
            }
            let expires = now_ms.saturating_add(claim.ttl_ms);
            Ok(Ok(upsert_lease(
                tx, &session, glob, claim.mode, &key, now_ms, expires,
            )?))
        })
    }

    /// For edits: exclusive leases on each exact relative path (key `edit:{path}`), all or
    /// nothing in one transaction. A conflict is another live session's unexpired lease, of
    /// either mode, in the same worktree that [`globs::covers`] one of the paths; the first
    /// (in path order, then oldest lease first) comes back and nothing is written. Glob
    /// metacharacters in a path are taken literally (the lease's glob escapes them).
    pub fn claim_paths(
        &self,
        session_id: &str,
        paths: &[String],
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Claimed<Vec<Lease>>, StoreError> {
        check_ttl(ttl_ms)?;
        let paths = checked_paths(paths)?;
        self.write(|tx| {
            let session = live_session(tx, session_id)?;
            let others = others_leases(tx, &session, now_ms)?;
            if let Some((path, lease)) = first_covering(&others, &paths) {
                return Ok(Err(conflict(tx, path, lease)?));
            }
            let expires = now_ms.saturating_add(ttl_ms);
            let mut leases = Vec::with_capacity(paths.len());
            for (_, path) in &paths {
                let key = format!("edit:{path}");
                let glob = globs::literal(path);
                leases.push(upsert_lease(
                    tx,
                    &session,
                    &glob,
                    LeaseMode::Exclusive,
                    &key,
                    now_ms,
                    expires,
                )?);
            }
            Ok(Ok(leases))
        })
    }

    /// Read-only: the conflicts [`SessionStore::claim_paths`] would report, one for each path
    /// that has one, in path order.
    pub fn check_paths(
        &self,
        session_id: &str,
        paths: &[String],
        now_ms: i64,
    ) -> Result<Vec<Conflict>, StoreError> {
        let paths = checked_paths(paths)?;
        self.read(|conn| {
            let session = live_session(conn, session_id)?;
            let others = others_leases(conn, &session, now_ms)?;
            paths
                .iter()
                .filter_map(|p| first_covering(&others, std::slice::from_ref(p)))
                .map(|(path, lease)| conflict(conn, path, lease))
                .collect()
        })
    }

    /// Releases the session's leases whose id, glob or key equals `which` (`"*"`: all of
    /// them); returns how many. [`StoreError::NotFound`] for an unknown session.
    pub fn release(&self, session_id: &str, which: &str) -> Result<usize, StoreError> {
        self.write(|tx| {
            if get_session(tx, session_id)?.is_none() {
                return Err(StoreError::NotFound(session_id.to_string()));
            }
            let released = if which == "*" {
                tx.prepare_cached("DELETE FROM leases WHERE session_id = ?1")?
                    .execute(params![session_id])?
            } else {
                tx.prepare_cached(
                    "DELETE FROM leases WHERE session_id = ?1 \
                     AND (id = ?2 OR glob = ?2 OR glob = ?3 OR key = ?2)",
                )?
                .execute(params![session_id, which, globs::normalize(which)])?
            };
            Ok(released)
        })
    }

    /// Unexpired leases (`expires_ms > now_ms`) of live sessions, optionally only in one
    /// worktree, ordered by worktree, glob and id.
    pub fn leases(&self, worktree: Option<&str>, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {LEASE_COLUMNS} FROM leases l JOIN sessions s ON s.id = l.session_id \
                     WHERE l.expires_ms > ?1 AND s.state IN {LIVE} \
                     AND (?2 IS NULL OR l.worktree = ?2) ORDER BY l.worktree, l.glob, l.id"
                ))?
                .query_map(params![now_ms, worktree], |r| lease_from_row(r, 0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// The session's unexpired leases, ordered by glob and id (none once it is not live).
    /// [`StoreError::NotFound`] for an unknown session.
    pub fn session_leases(&self, session_id: &str, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        self.read(|conn| {
            if get_session(conn, session_id)?.is_none() {
                return Err(StoreError::NotFound(session_id.to_string()));
            }
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {LEASE_COLUMNS} FROM leases l JOIN sessions s ON s.id = l.session_id \
                     WHERE l.session_id = ?1 AND l.expires_ms > ?2 AND s.state IN {LIVE} \
                     ORDER BY l.glob, l.id"
                ))?
                .query_map(params![session_id, now_ms], |r| lease_from_row(r, 0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Posts a note to a repository's board. The text is 1 to 8192 bytes; `session_id`, when
    /// given, must name a session (in any state).
    pub fn post(
        &self,
        repository: &str,
        session_id: Option<&str>,
        kind: NoteKind,
        text: &str,
        now_ms: i64,
    ) -> Result<Note, StoreError> {
        if repository.is_empty() {
            return Err(StoreError::Invalid("a board needs a repository".into()));
        }
        check_text("a note", text)?;
        self.write(|tx| {
            if let Some(id) = session_id
                && get_session(tx, id)?.is_none()
            {
                return Err(StoreError::NotFound(id.to_string()));
            }
            tx.prepare_cached(
                "INSERT INTO notes (repository, session_id, kind, text, posted_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                repository,
                session_id,
                kind_str(kind),
                text,
                now_ms
            ])?;
            Ok(Note {
                id: tx.last_insert_rowid(),
                repository: repository.to_string(),
                session_id: session_id.map(str::to_string),
                kind,
                text: text.to_string(),
                posted_ms: now_ms,
            })
        })
    }

    /// The last `limit` notes of a repository's board, oldest first.
    pub fn board(&self, repository: &str, limit: usize) -> Result<Vec<Note>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut notes: Vec<Note> = conn
                .prepare_cached(
                    "SELECT id, repository, session_id, kind, text, posted_ms FROM notes \
                     WHERE repository = ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![repository, limit], note_from_row)?
                .collect::<Result<_, _>>()?;
            notes.reverse();
            Ok(notes)
        })
    }

    /// Sends a message to a live session ([`StoreError::NotFound`] / [`StoreError::NotLive`]
    /// otherwise); `from`, when given, must name a session (in any state). The text is 1 to
    /// 8192 bytes.
    pub fn send(
        &self,
        from: Option<&str>,
        to: &str,
        text: &str,
        now_ms: i64,
    ) -> Result<Message, StoreError> {
        check_text("a message", text)?;
        self.write(|tx| {
            live_session(tx, to)?;
            if let Some(from) = from
                && get_session(tx, from)?.is_none()
            {
                return Err(StoreError::NotFound(from.to_string()));
            }
            tx.prepare_cached(
                "INSERT INTO messages (from_session, to_session, text, sent_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![from, to, text, now_ms])?;
            Ok(Message {
                id: tx.last_insert_rowid(),
                from_session: from.map(str::to_string),
                to_session: to.to_string(),
                text: text.to_string(),
                sent_ms: now_ms,
                delivered_ms: None,
                acked_ms: None,
            })
        })
    }

    /// The session's messages, oldest first: only unacknowledged ones unless
    /// `include_acked`. [`StoreError::NotFound`] for an unknown session.
    pub fn inbox(&self, session_id: &str, include_acked: bool) -> Result<Vec<Message>, StoreError> {
        self.read(|conn| {
            if get_session(conn, session_id)?.is_none() {
                return Err(StoreError::NotFound(session_id.to_string()));
            }
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE to_session = ?1 \
                     AND (?2 OR acked_ms IS NULL) ORDER BY id"
                ))?
                .query_map(params![session_id, include_acked], message_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// The session's messages never delivered (nor acknowledged) yet, oldest first, marked
    /// delivered at `now_ms` in the same transaction.
    pub fn take_undelivered(
        &self,
        session_id: &str,
        now_ms: i64,
    ) -> Result<Vec<Message>, StoreError> {
        self.write(|tx| {
            if get_session(tx, session_id)?.is_none() {
                return Err(StoreError::NotFound(session_id.to_string()));
            }
            let mut rows: Vec<Message> = tx
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE to_session = ?1 \
                     AND delivered_ms IS NULL AND acked_ms IS NULL ORDER BY id"
                ))?
                .query_map(params![session_id], message_from_row)?
                .collect::<Result<_, _>>()?;
            for m in &mut rows {
                tx.prepare_cached("UPDATE messages SET delivered_ms = ?2 WHERE id = ?1")?
                    .execute(params![m.id, now_ms])?;
                m.delivered_ms = Some(now_ms);
            }
            Ok(rows)
        })
    }

    /// [`SessionStore::ack_at`] at the current time (this signature carries no time, so it
    /// reads the clock).
    pub fn ack(&self, session_id: &str, message_id: i64) -> Result<Message, StoreError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.ack_at(session_id, message_id, now_ms)
    }

    /// Acknowledges one of the session's own messages at `now_ms`
    /// ([`StoreError::NoMessage`] if it is not one of them, [`StoreError::NotFound`] for an
    /// unknown session). Acknowledging again changes nothing.
    pub fn ack_at(
        &self,
        session_id: &str,
        message_id: i64,
        now_ms: i64,
    ) -> Result<Message, StoreError> {
        self.write(|tx| {
            if get_session(tx, session_id)?.is_none() {
                return Err(StoreError::NotFound(session_id.to_string()));
            }
            let select =
                format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1 AND to_session = ?2");
            let no_message = || StoreError::NoMessage {
                session_id: session_id.to_string(),
                message_id,
            };
            tx.prepare_cached(&select)?
                .query_row(params![message_id, session_id], message_from_row)
                .optional()?
                .ok_or_else(no_message)?;
            tx.prepare_cached(
                "UPDATE messages SET acked_ms = ?2 WHERE id = ?1 AND acked_ms IS NULL",
            )?
            .execute(params![message_id, now_ms])?;
            tx.prepare_cached(&select)?
                .query_row(params![message_id, session_id], message_from_row)
                .optional()?
                .ok_or_else(no_message)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which rolled back: the
        // connection is still good.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing when it returns `Ok` (an
    /// `Ok(Err(conflict))` of a claim is committed too, having written nothing).
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sqlite(e))?;
        let value = f(&tx).map_err(|e| self.wrap(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(value)
    }

    /// Runs `f` in a read transaction, so that its queries see one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| self.sqlite(e))?;
        let value = f(&tx).map_err(|e| self.wrap(e))?;
        tx.finish().map_err(|e| self.sqlite(e))?;
        Ok(value)
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Fills in the path of an SQLite error raised inside a transaction.
    fn wrap(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Sqlite { path, source } if path.is_empty() => self.sqlite(source),
            other => other,
        }
    }
}

/// Inside a transaction the path is not at hand; [`SessionStore::wrap`] fills it in.
impl From<rusqlite::Error> for StoreError {
    fn from(source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: String::new(),
            source,
        }
    }
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Creates the database file with mode 0600 if it is missing (SQLite gives its `-wal` and
/// `-shm` files the same mode).
fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Switches to WAL. Another process switching at the same moment can make this fail with
/// `SQLITE_BUSY` without the busy handler being asked, so it is retried for a while.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 1000 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `prefix` and 16 lowercase hex digits from a v4 UUID (the two halves XORed, so the fixed
/// version and variant bits are mixed with random ones).
fn new_id(prefix: &str) -> String {
    let v = uuid::Uuid::new_v4().as_u128();
    let bits = ((v >> 64) as u64) ^ (v as u64);
    format!("{prefix}{bits:016x}")
}

fn check_text(what: &str, text: &str) -> Result<(), StoreError> {
    if text.is_empty() {
        return Err(StoreError::Invalid(format!("{what} may not be empty")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} may be at most {MAX_TEXT_BYTES} bytes, not {}",
            text.len()
        )));
    }
    Ok(())
}

fn check_ttl(ttl_ms: i64) -> Result<(), StoreError> {
    if ttl_ms < 1 {
        return Err(StoreError::Invalid(format!(
            "a lease's ttl must be at least 1 ms, not {ttl_ms}"
        )));
    }
    Ok(())
}

/// The paths validated, each with its normalized form, duplicates dropped (first kept).
fn checked_paths(paths: &[String]) -> Result<Vec<(String, String)>, StoreError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(paths.len());
    for path in paths {
        globs::validate_path(path).map_err(|reason| StoreError::InvalidGlob {
            glob: path.clone(),
            reason,
        })?;
        let normal = globs::normalize(path).to_string();
        if !out.iter().any(|(_, n)| *n == normal) {
            out.push((path.clone(), normal));
        }
    }
    Ok(out)
}

/// The first of `others` (oldest first) covering the first path that has one, with that
/// path as given.
fn first_covering<'a>(
    others: &'a [Lease],
    paths: &'a [(String, String)],
) -> Option<(&'a str, &'a Lease)> {
    paths.iter().find_map(|(given, path)| {
        others
            .iter()
            .find(|lease| globs::covers(&lease.glob, path))
            .map(|lease| (given.as_str(), lease))
    })
}

fn get_session(conn: &Connection, id: &str) -> Result<Option<Session>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?1"
        ))?
        .query_row(params![id], |r| session_from_row(r, 0))
        .optional()?)
}

fn find_session(
    conn: &Connection,
    client: Client,
    client_session_id: &str,
) -> Result<Option<Session>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s \
             WHERE s.client = ?1 AND s.client_session_id = ?2"
        ))?
        .query_row(params![client.as_str(), client_session_id], |r| {
            session_from_row(r, 0)
        })
        .optional()?)
}

/// The session, which must exist and be live.
fn live_session(conn: &Connection, id: &str) -> Result<Session, StoreError> {
    let session = get_session(conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    if !session.state.is_live() {
        return Err(StoreError::NotLive {
            id: session.id,
            state: session.state,
        });
    }
    Ok(session)
}

/// Other live sessions' unexpired leases in `session`'s worktree, oldest lease first (by
/// insertion: a renewal keeps a lease's place).
fn others_leases(
    conn: &Connection,
    session: &Session,
    now_ms: i64,
) -> Result<Vec<Lease>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases l \
             JOIN sessions s ON s.id = l.session_id \
             WHERE l.worktree = ?1 AND l.expires_ms > ?2 AND l.session_id != ?3 \
             AND s.state IN {LIVE} ORDER BY l.rowid"
        ))?
        .query_map(params![session.worktree, now_ms, session.id], |r| {
            lease_from_row(r, 0)
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The conflict of `path` (as given) with `lease`, its holder read in.
fn conflict(conn: &Connection, path: &str, lease: &Lease) -> Result<Conflict, StoreError> {
    let holder = get_session(conn, &lease.session_id)?
        .ok_or_else(|| StoreError::NotFound(lease.session_id.clone()))?;
    Ok(Conflict {
        path: path.to_string(),
        lease: lease.clone(),
        holder,
    })
}

/// Inserts the session's lease under `key`, or renews the one it has.
fn upsert_lease(
    tx: &Transaction<'_>,
    session: &Session,
    glob: &str,
    mode: LeaseMode,
    key: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<Lease, StoreError> {
    let existing: Option<(String, i64)> = tx
        .prepare_cached("SELECT id, acquired_ms FROM leases WHERE session_id = ?1 AND key = ?2")?
        .query_row(params![session.id, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, acquired_ms) = match existing {
        Some((id, acquired_ms)) => {
            tx.prepare_cached(
                "UPDATE leases SET glob = ?2, mode = ?3, expires_ms = ?4, worktree = ?5 \
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                glob,
                mode.as_str(),
                expires_ms,
                session.worktree
            ])?;
            (id, acquired_ms)
        }
        None => {
            let id = new_id("lea_");
            tx.prepare_cached(
                "INSERT INTO leases (id, session_id, worktree, glob, mode, key, acquired_ms, \
                 expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id,
                session.id,
                session.worktree,
                glob,
                mode.as_str(),
                key,
                now_ms,
                expires_ms
            ])?;
            (id, now_ms)
        }
    };
    Ok(Lease {
        id,
        session_id: session.id.clone(),
        worktree: session.worktree.clone(),
        glob: glob.to_string(),
        mode,
        key: key.to_string(),
        acquired_ms,
        expires_ms,
    })
}

fn bad_value(column: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

fn session_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Session> {
    let client: String = r.get(at + 1)?;
    let state: String = r.get(at + 9)?;
    Ok(Session {
        id: r.get(at)?,
        client: Client::parse(&client).ok_or_else(|| bad_value(at + 1, "client", &client))?,
        client_session_id: r.get(at + 2)?,
        cwd: r.get(at + 3)?,
        worktree: r.get(at + 4)?,
        repository: r.get(at + 5)?,
        branch: r.get(at + 6)?,
        started_ms: r.get(at + 7)?,
        last_seen_ms: r.get(at + 8)?,
        state: parse_state(&state).ok_or_else(|| bad_value(at + 9, "state", &state))?,
        task: r.get(at + 10)?,
    })
}

fn lease_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Lease> {
    let mode: String = r.get(at + 4)?;
    Ok(Lease {
        id: r.get(at)?,
        session_id: r.get(at + 1)?,
        worktree: r.get(at + 2)?,
        glob: r.get(at + 3)?,
        mode: match mode.as_str() {
            "exclusive" => LeaseMode::Exclusive,
            "shared" => LeaseMode::Shared,
            _ => return Err(bad_value(at + 4, "lease mode", &mode)),
        },
        key: r.get(at + 5)?,
        acquired_ms: r.get(at + 6)?,
        expires_ms: r.get(at + 7)?,
    })
}

fn note_from_row(r: &Row<'_>) -> rusqlite::Result<Note> {
    let kind: String = r.get(3)?;
    Ok(Note {
        id: r.get(0)?,
        repository: r.get(1)?,
        session_id: r.get(2)?,
        kind: match kind.as_str() {
            "note" => NoteKind::Note,
            "decision" => NoteKind::Decision,
            _ => return Err(bad_value(3, "note kind", &kind)),
        },
        text: r.get(4)?,
        posted_ms: r.get(5)?,
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        from_session: r.get(1)?,
        to_session: r.get(2)?,
        text: r.get(3)?,
        sent_ms: r.get(4)?,
        delivered_ms: r.get(5)?,
        acked_ms: r.get(6)?,
    })
}

fn parse_state(text: &str) -> Option<SessionState> {
    Some(match text {
        "active" => SessionState::Active,
        "idle" => SessionState::Idle,
        "ended" => SessionState::Ended,
        "expired" => SessionState::Expired,
        _ => return None,
    })
}

fn kind_str(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Note => "note",
        NoteKind::Decision => "decision",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_have_prefix_and_16_hex_digits() {
        let id = new_id("ses_");
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("ses_"));
        assert!(
            id[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(new_id("lea_"), new_id("lea_"));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SessionStore>();
    }

    #[cfg(unix)]
    #[test]
    fn open_creates_private_directory_and_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory/deeper/sessions.db");
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("memory/deeper")), 0o700);
        assert_eq!(mode(&path), 0o600);
        drop(store);
        // Opening again finds the schema in place.
        SessionStore::open(&path).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        drop(SessionStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = SessionStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
