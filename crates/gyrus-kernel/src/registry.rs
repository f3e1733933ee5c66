//! The agent registry: every agent ever spawned, in `memory/kernel.db`.
//!
//! Ids are random and never reused; a name is unique only among agents not yet removed, so an
//! agent spawned under an old name gets a new id and inherits nothing (grants, mailbox and
//! tokens are all bound to the id). Rows are never deleted: a removed agent keeps its history.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::manifest::Manifest;

/// What an agent is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No process to run: the agent connects by itself with its token.
    Ready,
    /// Its process is running.
    Running,
    /// Its process failed; waiting to restart it.
    Backoff,
    /// Its process exited cleanly and is not restarted.
    Exited,
    /// Its process failed too often (the start limit) or could not start.
    Failed,
    /// Stopped by the owner; its mailbox keeps collecting messages.
    Stopped,
    /// Removed: its id is retired for good.
    Removed,
}

impl AgentState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Ready => "ready",
            AgentState::Running => "running",
            AgentState::Backoff => "backoff",
            AgentState::Exited => "exited",
            AgentState::Failed => "failed",
            AgentState::Stopped => "stopped",
            AgentState::Removed => "removed",
        }
    }

    fn parse(text: &str) -> AgentState {
        match text {
            "ready" => AgentState::Ready,
            "running" => AgentState::Running,
            "backoff" => AgentState::Backoff,
            "exited" => AgentState::Exited,
            "stopped" => AgentState::Stopped,
            "removed" => AgentState::Removed,
            // An unknown state (a newer version's) is treated as failed: never as running.
            _ => AgentState::Failed,
        }
    }
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    /// Never reused, e.g. `ag_3f9c0d1e2b4a5968`.
    pub id: String,
    /// Unique among agents not removed.
    pub name: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// What it is doing.
    pub state: AgentState,
    /// Whether the owner wants it up (false after `stop`).
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
}

/// Registry failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A live agent has the name.
    #[error(
        "an agent named {0:?} exists; stop and remove it first (`gyrus agent remove {0}`), or choose another name"
    )]
    NameTaken(String),
    /// No live agent has the name.
    #[error("no agent named {0:?}; `gyrus agent list` shows them")]
    NotFound(String),
    /// SQLite failed.
    #[error("agent registry: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored manifest no longer parses.
    #[error("agent registry: stored manifest of {id} is unreadable: {message}")]
    Corrupt {
        /// The agent.
        id: String,
        /// Why.
        message: String,
    },
    /// The OS random source failed.
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

/// The registry, with agent token hashes cached in memory for authentication.
#[derive(Debug)]
pub struct AgentRegistry {
    conn: Mutex<Connection>,
    /// Live agents' token hashes: id → (name, sha256).
    tokens: Mutex<HashMap<String, (String, [u8; 32])>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Random hex, `n` bytes.
pub(crate) fn random_hex(n: usize) -> Result<String, RegistryError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| RegistryError::Random(e.to_string()))?;
    Ok(hex(&buf))
}

const COLUMNS: &str =
    "id, name, manifest, state, enabled, pid, last_error, starts, created_at, updated_at";

impl AgentRegistry {
    /// Opens (creating if needed) the registry database.
    pub fn open(path: &Path) -> Result<AgentRegistry, RegistryError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS agents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                manifest TEXT NOT NULL,
                state TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                pid INTEGER,
                last_error TEXT,
                starts INTEGER NOT NULL DEFAULT 0,
                token_sha256 BLOB,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
            CREATE UNIQUE INDEX IF NOT EXISTS agents_live_name ON agents(name) WHERE state != 'removed';",
        )?;
        let mut tokens = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT id, name, token_sha256 FROM agents WHERE state != 'removed' AND token_sha256 IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            for row in rows {
                let (id, name, hash) = row?;
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    tokens.insert(id, (name, hash));
                }
            }
        }
        Ok(AgentRegistry {
            conn: Mutex::new(conn),
            tokens: Mutex::new(tokens),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock means a panic mid-call; SQLite's own transactions keep the data
        // consistent, so carry on with the connection.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AgentRecordRaw, String)> {
        Ok((
            AgentRecordRaw {
                id: r.get(0)?,
                name: r.get(1)?,
                state: r.get(3)?,
                enabled: r.get::<_, i64>(4)? != 0,
                pid: r
                    .get::<_, Option<i64>>(5)?
                    .and_then(|p| u32::try_from(p).ok()),
                last_error: r.get(6)?,
                starts: r.get::<_, i64>(7)?.try_into().unwrap_or(0),
                created_at: r.get::<_, i64>(8)?.try_into().unwrap_or(0),
                updated_at: r.get::<_, i64>(9)?.try_into().unwrap_or(0),
            },
            r.get(2)?,
        ))
    }

    fn finish((raw, manifest): (AgentRecordRaw, String)) -> Result<AgentRecord, RegistryError> {
        let manifest: Manifest =
            serde_json::from_str(&manifest).map_err(|e| RegistryError::Corrupt {
                id: raw.id.clone(),
                message: e.to_string(),
            })?;
        Ok(AgentRecord {
            id: raw.id,
            name: raw.name,
            manifest,
            state: AgentState::parse(&raw.state),
            enabled: raw.enabled,
            pid: raw.pid,
            last_error: raw.last_error,
            starts: raw.starts,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }

    /// Registers a new agent under a fresh id.
    pub fn register(&self, manifest: &Manifest, now: u64) -> Result<AgentRecord, RegistryError> {
        let id = format!("ag_{}", random_hex(8)?);
        let state = if manifest.command.is_some() {
            AgentState::Stopped
        } else {
            AgentState::Ready
        };
        let json = serde_json::to_string(manifest).map_err(|e| RegistryError::Corrupt {
            id: id.clone(),
            message: e.to_string(),
        })?;
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO agents (id, name, manifest, state, enabled, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
            params![id, manifest.name, json, state.as_str(), now as i64],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(RegistryError::NameTaken(manifest.name.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        drop(conn);
        self.get(&id)?
            .ok_or_else(|| RegistryError::NotFound(manifest.name.clone()))
    }

    /// The agent with this id, removed or not.
    pub fn get(&self, id: &str) -> Result<Option<AgentRecord>, RegistryError> {
        let raw = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"),
                [id],
                Self::row,
            )
            .optional()?;
        raw.map(Self::finish).transpose()
    }

    /// The live (not removed) agent with this name.
    pub fn by_name(&self, name: &str) -> Result<AgentRecord, RegistryError> {
        let raw = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM agents WHERE name = ?1 AND state != 'removed'"),
                [name],
                Self::row,
            )
            .optional()?;
        raw.map(Self::finish)
            .transpose()?
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Agents, oldest first; removed ones only if asked.
    pub fn list(&self, include_removed: bool) -> Result<Vec<AgentRecord>, RegistryError> {
        let sql = if include_removed {
            format!("SELECT {COLUMNS} FROM agents ORDER BY created_at, rowid")
        } else {
            format!(
                "SELECT {COLUMNS} FROM agents WHERE state != 'removed' ORDER BY created_at, rowid"
            )
        };
        let raws: Vec<_> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], Self::row)?;
            rows.collect::<Result<_, _>>()?
        };
        raws.into_iter().map(Self::finish).collect()
    }

    /// Records a state change (and the pid while running, and the error when failing).
    pub fn set_state(
        &self,
        id: &str,
        state: AgentState,
        pid: Option<u32>,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), RegistryError> {
        self.conn().execute(
            "UPDATE agents SET state = ?2, pid = ?3, last_error = COALESCE(?4, last_error), updated_at = ?5,
                starts = starts + (CASE WHEN ?2 = 'running' THEN 1 ELSE 0 END)
             WHERE id = ?1 AND state != 'removed'",
            params![id, state.as_str(), pid.map(i64::from), error, now as i64],
        )?;
        Ok(())
    }

    /// Whether the owner wants the agent up.
    pub fn set_enabled(&self, id: &str, enabled: bool, now: u64) -> Result<(), RegistryError> {
        self.conn().execute(
            "UPDATE agents SET enabled = ?2, updated_at = ?3 WHERE id = ?1 AND state != 'removed'",
            params![id, enabled as i64, now as i64],
        )?;
        Ok(())
    }

    /// Retires the agent: its name is free again, its id and token never work again.
    pub fn remove(&self, id: &str, now: u64) -> Result<(), RegistryError> {
        self.conn().execute(
            "UPDATE agents SET state = 'removed', enabled = 0, pid = NULL, token_sha256 = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now as i64],
        )?;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    /// Mints a fresh token for the agent, replacing any earlier one, and returns it (the only
    /// time it exists in plain text). Only its SHA-256 is kept.
    pub fn rotate_token(&self, id: &str) -> Result<String, RegistryError> {
        let secret = format!("gyrus_agent_{}", random_hex(32)?);
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let name: String = self.conn().query_row(
            "UPDATE agents SET token_sha256 = ?2 WHERE id = ?1 AND state != 'removed' RETURNING name",
            params![id, hash.to_vec()],
            |r| r.get(0),
        )?;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), (name, hash));
        Ok(secret)
    }

    /// The live agent whose current token this is: `(id, name)`. Every stored hash is
    /// compared, in constant time, whether or not an earlier one matched.
    pub fn authenticate(&self, presented: &str) -> Option<(String, String)> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (id, (name, stored)) in tokens.iter() {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some((id.clone(), name.clone()));
            }
        }
        found
    }
}

struct AgentRecordRaw {
    id: String,
    name: String,
    state: String,
    enabled: bool,
    pid: Option<u32>,
    last_error: Option<String>,
    starts: u64,
    created_at: u64,
    updated_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        Manifest::parse(&format!("name = \"{name}\"")).unwrap()
    }

    #[test]
    fn names_are_unique_among_live_agents_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let reg = AgentRegistry::open(&dir.path().join("kernel.db")).unwrap();
        let first = reg.register(&manifest("scout"), 1).unwrap();
        assert_eq!(first.state, AgentState::Ready);
        assert!(matches!(
            reg.register(&manifest("scout"), 2),
            Err(RegistryError::NameTaken(_))
        ));
        let token = reg.rotate_token(&first.id).unwrap();
        assert_eq!(
            reg.authenticate(&token),
            Some((first.id.clone(), "scout".into()))
        );

        reg.remove(&first.id, 3).unwrap();
        assert_eq!(
            reg.authenticate(&token),
            None,
            "a removed agent's token is dead"
        );
        let second = reg.register(&manifest("scout"), 4).unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(reg.by_name("scout").unwrap().id, second.id);
        assert_eq!(reg.list(false).unwrap().len(), 1);
        assert_eq!(reg.list(true).unwrap().len(), 2);
        assert_eq!(
            reg.get(&first.id).unwrap().unwrap().state,
            AgentState::Removed
        );
    }

    #[test]
    fn tokens_rotate_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.db");
        let reg = AgentRegistry::open(&path).unwrap();
        let agent = reg.register(&manifest("a"), 1).unwrap();
        let old = reg.rotate_token(&agent.id).unwrap();
        let new = reg.rotate_token(&agent.id).unwrap();
        assert_eq!(reg.authenticate(&old), None);
        assert!(reg.authenticate(&new).is_some());
        drop(reg);
        let reopened = AgentRegistry::open(&path).unwrap();
        assert!(reopened.authenticate(&new).is_some());
        assert_eq!(reopened.authenticate("gyrus_agent_nope"), None);
    }

    #[test]
    fn states_are_recorded_and_starts_counted() {
        let dir = tempfile::tempdir().unwrap();
        let reg = AgentRegistry::open(&dir.path().join("kernel.db")).unwrap();
        let agent = reg.register(&manifest("w"), 1).unwrap();
        reg.set_state(&agent.id, AgentState::Running, Some(42), None, 2)
            .unwrap();
        reg.set_state(
            &agent.id,
            AgentState::Backoff,
            None,
            Some("exit status 1"),
            3,
        )
        .unwrap();
        reg.set_state(&agent.id, AgentState::Running, Some(43), None, 4)
            .unwrap();
        let got = reg.get(&agent.id).unwrap().unwrap();
        assert_eq!(
            (got.state, got.pid, got.starts),
            (AgentState::Running, Some(43), 2)
        );
        assert_eq!(got.last_error.as_deref(), Some("exit status 1"));
    }
}
