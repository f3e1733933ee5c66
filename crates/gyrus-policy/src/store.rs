//! The grants database (`user/grants.db`, SQLite in WAL mode) and [`GrantStore`], with its
//! write-through in-memory index of grants by principal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::grant::{self, CompiledGrant, Grant, GrantError, GrantMismatch, NewGrant};
use crate::request::ActionRequest;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    id          TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    actions     TEXT NOT NULL,   -- JSON array of action patterns
    resources   TEXT NOT NULL,   -- JSON array of resource globs
    intent      TEXT,
    expires_at  INTEGER,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0,
    granted_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS grants_by_principal ON grants (principal);

CREATE TABLE IF NOT EXISTS consent_requests (
    id              TEXT PRIMARY KEY,
    bundle_key      TEXT NOT NULL,
    principal       TEXT NOT NULL,
    principal_label TEXT NOT NULL,
    plan_id         TEXT,
    intent          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    decided_by      TEXT
) STRICT;
-- One pending request per plan (or per principal and intent): one prompt, not one per call.
CREATE UNIQUE INDEX IF NOT EXISTS consent_one_pending_per_bundle
    ON consent_requests (bundle_key) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS consent_calls (
    request_id     TEXT NOT NULL REFERENCES consent_requests (id),
    seq            INTEGER NOT NULL,
    action         TEXT NOT NULL,
    resource       TEXT NOT NULL,
    intent         TEXT NOT NULL,
    intent_source  TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
) STRICT;
";

/// The grants database failed; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn random_hex<const N: usize>() -> Result<String, String> {
    use std::fmt::Write;
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| format!("cannot draw random bytes: {e}"))?;
    Ok(buf.iter().fold(String::with_capacity(2 * N), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The open database: one connection, shared by [`GrantStore`] and [`crate::ConsentStore`].
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) path: PathBuf,
    conn: Mutex<Connection>,
}

impl Db {
    fn open(path: &Path) -> Result<Db, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // Create the file 0600 before SQLite does; its -wal and -shm files copy this mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(&e))?;
        // WAL for concurrent readers; FULL so an acknowledged grant, revocation or use
        // survives power loss, not only a crash of the daemon.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| err(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(err(&format!("cannot switch to WAL mode (got {mode})")));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| err(&e))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| err(&e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err(&e))?;
        if version > SCHEMA_VERSION {
            return Err(err(&format!(
                "database schema version {version} is newer than this gyrus understands ({SCHEMA_VERSION}); upgrade gyrus"
            )));
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| err(&e))?;
        Ok(Db {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

/// The grants in `user/grants.db`. SQLite is the truth; an index of live grants by principal
/// id sits in memory for fast decisions and is updated after every successful write, so a
/// revocation takes effect on the very next decision. Safe to share between threads.
#[derive(Debug)]
pub struct GrantStore {
    pub(crate) db: Db,
    /// Live grants (not revoked, possibly expired or exhausted) by principal id, oldest first.
    index: RwLock<HashMap<String, Vec<CompiledGrant>>>,
}

const GRANT_COLUMNS: &str = "id, principal, actions, resources, intent, expires_at, max_uses, uses, granted_by, created_at, revoked_at";

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    let json = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(Grant {
        id: row.get(0)?,
        principal: row.get(1)?,
        actions: json(2)?,
        resources: json(3)?,
        intent: row.get(4)?,
        expires_at: row.get(5)?,
        max_uses: row.get(6)?,
        uses: row.get(7)?,
        granted_by: row.get(8)?,
        created_at: row.get(9)?,
        revoked_at: row.get(10)?,
    })
}

impl GrantStore {
    /// Opens (creating if needed) the database at `path`, normally `user/grants.db`, and
    /// loads the live grants into memory. A grant row that no longer validates is an error,
    /// never silently dropped.
    pub fn open(path: &Path) -> Result<GrantStore, StoreError> {
        let db = Db::open(path)?;
        let mut index: HashMap<String, Vec<CompiledGrant>> = HashMap::new();
        {
            let conn = db.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_at IS NULL ORDER BY rowid"
                ))
                .map_err(|e| db.err(e))?;
            let rows = stmt.query_map([], grant_from_row).map_err(|e| db.err(e))?;
            for row in rows {
                let grant = row.map_err(|e| db.err(format!("corrupt grant row: {e}")))?;
                let id = grant.id.clone();
                let compiled = CompiledGrant::new(grant)
                    .map_err(|e| db.err(format!("grant {id} is invalid: {e}")))?;
                index
                    .entry(compiled.grant.principal.clone())
                    .or_default()
                    .push(compiled);
            }
        }
        Ok(GrantStore {
            db,
            index: RwLock::new(index),
        })
    }

    /// Checks `new` (every pattern and glob), stores it, and makes it live at once.
    pub fn add(&self, new: NewGrant, now: SystemTime) -> Result<Grant, GrantError> {
        let mut grants = self.add_many(vec![new], now)?;
        grants
            .pop()
            .ok_or_else(|| GrantError::Store(self.db.err("no grant was added")))
    }

    /// Adds several grants in one transaction: all or none.
    pub(crate) fn add_many(
        &self,
        news: Vec<NewGrant>,
        now: SystemTime,
    ) -> Result<Vec<Grant>, GrantError> {
        let conn = self.db.lock();
        let tx = conn.unchecked_transaction().map_err(|e| self.db.err(e))?;
        let compiled = insert_grants(&self.db, &tx, news, now)?;
        tx.commit().map_err(|e| self.db.err(e))?;
        Ok(self.index_added(compiled))
    }

    pub(crate) fn index_added(&self, compiled: Vec<CompiledGrant>) -> Vec<Grant> {
        let grants = compiled.iter().map(|c| c.grant.clone()).collect();
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for c in compiled {
            index.entry(c.grant.principal.clone()).or_default().push(c);
        }
        grants
    }

    /// Every grant ever made, revoked ones included, oldest first.
    pub fn list(&self) -> Result<Vec<Grant>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants ORDER BY rowid"
            ))
            .map_err(|e| self.db.err(e))?;
        let rows = stmt
            .query_map([], grant_from_row)
            .map_err(|e| self.db.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db.err(e))
    }

    /// The grant with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let conn = self.db.lock();
        get_grant(&conn, id).map_err(|e| self.db.err(e))
    }

    /// Revokes a grant. The next decision no longer sees it.
    pub fn revoke(&self, id: &str, now: SystemTime) -> Result<Grant, GrantError> {
        let now = unix(now);
        let conn = self.db.lock();
        let changed = conn
            .execute(
                "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(|e| self.db.err(e))?;
        let grant = get_grant(&conn, id).map_err(|e| self.db.err(e))?;
        drop(conn);
        match (changed, grant) {
            (_, None) => Err(GrantError::NotFound(id.to_string())),
            (0, Some(_)) => Err(GrantError::AlreadyRevoked(id.to_string())),
            (_, Some(grant)) => {
                self.unindex(&grant.principal, id);
                Ok(grant)
            }
        }
    }

    /// Undoes a revocation (`gyrus undo` of `sec.revoke`): the grant is live again, with the
    /// same id, scope, expiry and uses. Refused if it is not revoked.
    pub fn reinstate(&self, id: &str) -> Result<Grant, GrantError> {
        let conn = self.db.lock();
        let changed = conn
            .execute(
                "UPDATE grants SET revoked_at = NULL WHERE id = ?1 AND revoked_at IS NOT NULL",
                params![id],
            )
            .map_err(|e| self.db.err(e))?;
        let grant = get_grant(&conn, id).map_err(|e| self.db.err(e))?;
        drop(conn);
        match (changed, grant) {
            (_, None) => Err(GrantError::NotFound(id.to_string())),
            (0, Some(_)) => Err(GrantError::NotRevoked(id.to_string())),
            (_, Some(grant)) => {
                let compiled = CompiledGrant::new(grant.clone())?;
                self.index_added(vec![compiled]);
                Ok(grant)
            }
        }
    }

    /// Takes one use of a grant, atomically in SQLite, so concurrent callers (threads or
    /// processes) can never exceed `max_uses`. Returns `false` if the grant is unknown,
    /// revoked, expired or has no use left.
    pub fn consume(&self, id: &str, now: SystemTime) -> Result<bool, StoreError> {
        let now = unix(now);
        let conn = self.db.lock();
        let taken: Option<u32> = conn
            .prepare_cached(
                "UPDATE grants SET uses = uses + 1
                 WHERE id = ?1 AND revoked_at IS NULL
                   AND (max_uses IS NULL OR uses < max_uses)
                   AND (expires_at IS NULL OR expires_at > ?2)
                 RETURNING uses",
            )
            .and_then(|mut stmt| stmt.query_row(params![id, now], |r| r.get(0)).optional())
            .map_err(|e| self.db.err(e))?;
        match taken {
            Some(uses) => {
                drop(conn);
                self.set_uses(id, uses);
                Ok(true)
            }
            None => {
                // Another process may have changed it; bring the index up to date.
                let fresh = get_grant(&conn, id).map_err(|e| self.db.err(e))?;
                drop(conn);
                if let Some(g) = fresh {
                    if g.revoked_at.is_some() {
                        self.unindex(&g.principal, id);
                    } else {
                        self.set_uses(id, g.uses);
                    }
                }
                Ok(false)
            }
        }
    }

    /// The first live grant (oldest first) that covers `request` at `now`, or, if none does,
    /// the closest miss among the principal's grants with its grant id.
    pub fn first_match(
        &self,
        request: &ActionRequest,
        now: SystemTime,
    ) -> Result<Grant, Option<(String, GrantMismatch)>> {
        self.find(request, unix(now), |c| c.grant.clone())
    }

    /// The hot path: find a grant and return only what the caller needs from it.
    pub(crate) fn find<T>(
        &self,
        request: &ActionRequest,
        now: u64,
        pick: impl Fn(&CompiledGrant) -> T,
    ) -> Result<T, Option<(String, GrantMismatch)>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let Some(grants) = index.get(request.principal.id().as_str()) else {
            return Err(None);
        };
        let resource = std::cell::OnceCell::new();
        let mut closest: Option<(&str, GrantMismatch)> = None;
        for c in grants {
            match c.check_scope(request, &resource, now) {
                Ok(()) => return Ok(pick(c)),
                Err(why) => {
                    if closest.is_none_or(|(_, w)| why > w) {
                        closest = Some((&c.grant.id, why));
                    }
                }
            }
        }
        Err(closest.map(|(id, why)| (id.to_string(), why)))
    }

    fn set_uses(&self, id: &str, uses: u32) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for grants in index.values_mut() {
            if let Some(c) = grants.iter_mut().find(|c| c.grant.id == id) {
                c.grant.uses = uses;
                return;
            }
        }
    }

    fn unindex(&self, principal: &str, id: &str) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(grants) = index.get_mut(principal) {
            grants.retain(|c| c.grant.id != id);
            if grants.is_empty() {
                index.remove(principal);
            }
        }
    }
}

fn get_grant(conn: &Connection, id: &str) -> rusqlite::Result<Option<Grant>> {
    conn.prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))?
        .query_row([id], grant_from_row)
        .optional()
}

/// Validates and inserts grants inside the caller's transaction; returns them compiled, for
/// the index, once the caller has committed.
pub(crate) fn insert_grants(
    db: &Db,
    conn: &Connection,
    news: Vec<NewGrant>,
    now: SystemTime,
) -> Result<Vec<CompiledGrant>, GrantError> {
    let now = unix(now);
    let mut out = Vec::with_capacity(news.len());
    for new in news {
        grant::validate(&new)?;
        let id = format!("gr_{}", random_hex::<12>().map_err(|e| db.err(e))?);
        let grant = Grant {
            id,
            principal: new.principal,
            actions: new.actions,
            resources: new.resources,
            intent: new.intent,
            expires_at: new.valid_for.map(|d| now + d.as_secs()),
            max_uses: new.max_uses,
            uses: 0,
            granted_by: new.granted_by,
            created_at: now,
            revoked_at: None,
        };
        let json = |v: &Vec<String>| serde_json::to_string(v).map_err(|e| db.err(e));
        conn.prepare_cached(
            "INSERT INTO grants (id, principal, actions, resources, intent, expires_at, max_uses, uses, granted_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                grant.id,
                grant.principal,
                json(&grant.actions).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                json(&grant.resources).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                grant.intent,
                grant.expires_at,
                grant.max_uses,
                grant.granted_by,
                grant.created_at,
            ])
        })
        .map_err(|e| db.err(e))?;
        out.push(CompiledGrant::new(grant)?);
    }
    Ok(out)
}
