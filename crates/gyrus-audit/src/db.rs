//! The SQLite side of the log: the schema, opening the file, and reading rows back.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use crate::entry::{Decision, Entry, NewEntry};
use crate::error::AuditError;
use crate::log::Durability;
use crate::merkle::{self, Hash, MerkleTree};
use crate::verify::{self, BadEntry};

/// The schema version this code writes and reads (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 1;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    seq           INTEGER PRIMARY KEY,
    time          INTEGER NOT NULL,
    request_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    principal     TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource      TEXT NOT NULL,
    args_digest   TEXT NOT NULL,
    intent        TEXT NOT NULL,
    intent_source TEXT NOT NULL,
    grant_id      TEXT,
    policies      TEXT NOT NULL,
    decision      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    outcome       TEXT,
    undo_ref      TEXT,
    tier          TEXT,
    cortex        TEXT,
    detail        TEXT NOT NULL,
    prev_hash     BLOB NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash    BLOB NOT NULL CHECK (length(entry_hash) = 32)
);
CREATE INDEX IF NOT EXISTS entries_by_request ON entries (request_id, seq);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
";

/// Inserts one entry; the parameters are in [`verify::COLUMNS`] order.
pub(crate) const INSERT: &str = "INSERT INTO entries (seq, time, request_id, kind, principal, action, \
    resource, args_digest, intent, intent_source, grant_id, policies, decision, reason, outcome, \
    undo_ref, tier, cortex, detail, prev_hash, entry_hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
    ?19, ?20, ?21)";

/// Wraps a SQLite error with the database path.
pub(crate) fn database_error(path: &Path, source: rusqlite::Error) -> AuditError {
    AuditError::Database {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the parent directory of `path` (mode 0700) if it is missing.
pub(crate) fn ensure_parent(path: &Path) -> Result<(), AuditError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| AuditError::Io {
                action: "create the directory",
                path: dir.to_path_buf(),
                source,
            }),
        _ => Ok(()),
    }
}

/// Opens (creating if needed, mode 0600) the database, switches it to WAL and creates the
/// schema.
pub(crate) fn open_database(path: &Path, durability: Durability) -> Result<Connection, AuditError> {
    // Create the file ourselves so that it gets mode 0600; SQLite gives its -wal and -shm
    // files the database file's mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(AuditError::Io {
                action: "create the audit database",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let db_err = |e| database_error(path, e);
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Io {
            action: "switch to write-ahead logging",
            path: path.to_path_buf(),
            source: io::Error::other(format!(
                "SQLite kept journal mode {mode:?}; put the home on a local file system"
            )),
        });
    }
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(db_err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(AuditError::Schema {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    // Also recreates the append-only triggers if someone dropped them.
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(db_err)?;
    Ok(conn)
}

/// Loads the stored hashes, checking sequence numbers and `prev_hash` links (not contents).
/// Returns the Merkle tree and the last entry hash, or the first broken place.
#[allow(clippy::type_complexity)]
pub(crate) fn load_chain(
    conn: &Connection,
) -> rusqlite::Result<Result<(MerkleTree, Hash), BadEntry>> {
    let count: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM entries", [], |row| {
        row.get(0)
    })?;
    let mut tree = MerkleTree::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut stmt = conn.prepare("SELECT seq, prev_hash, entry_hash FROM entries ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut prev: Hash = [0; 32];
    while let Some(row) = rows.next()? {
        let expected = tree.len() + 1;
        let seq = row.get::<_, i64>(0)?;
        if seq != i64::try_from(expected).unwrap_or(i64::MAX) {
            return Ok(Err(verify::missing_entry(expected, seq)));
        }
        let stored_prev = blob_hash(row, 1);
        if stored_prev != Some(prev) {
            return Ok(Err(verify::broken_link(expected)));
        }
        let Some(hash) = blob_hash(row, 2) else {
            return Ok(Err(BadEntry {
                seq: Some(expected),
                reason: format!("entry {expected}: entry_hash is not a 32-byte blob"),
            }));
        };
        tree.push(merkle::leaf_hash(&hash));
        prev = hash;
    }
    Ok(Ok((tree, prev)))
}

fn blob_hash(row: &Row<'_>, index: usize) -> Option<Hash> {
    match row.get_ref(index) {
        Ok(ValueRef::Blob(bytes)) => bytes.try_into().ok(),
        _ => None,
    }
}

/// The stored `entry_hash` of entry `seq`; zeros for seq 0.
pub(crate) fn stored_entry_hash(conn: &Connection, seq: u64) -> rusqlite::Result<Hash> {
    if seq == 0 {
        return Ok([0; 32]);
    }
    let bytes: Vec<u8> = conn.query_row(
        "SELECT entry_hash FROM entries WHERE seq = ?1",
        [i64::try_from(seq).unwrap_or(i64::MAX)],
        |row| row.get(0),
    )?;
    Ok(bytes.try_into().unwrap_or([0; 32]))
}

/// Turns a row selected with [`COLUMNS`] back into an [`Entry`].
pub(crate) fn entry_from_row(row: &Row<'_>) -> Result<Entry, AuditError> {
    let seq_sql: i64 = row.get(0).map_err(|e| AuditError::Corrupt {
        seq: 0,
        reason: format!("seq: {e}"),
    })?;
    let seq = u64::try_from(seq_sql).unwrap_or(0);
    let corrupt = |reason: String| AuditError::Corrupt { seq, reason };
    let text = |i: usize| -> Result<String, AuditError> {
        row.get::<_, String>(i)
            .map_err(|e| corrupt(format!("column {}: {e}", verify::COLUMN_NAMES[i])))
    };
    let optional = |i: usize| -> Result<Option<String>, AuditError> {
        row.get::<_, Option<String>>(i)
            .map_err(|e| corrupt(format!("column {}: {e}", verify::COLUMN_NAMES[i])))
    };
    let hash = |i: usize| -> Result<Hash, AuditError> {
        row.get::<_, Vec<u8>>(i)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| corrupt(format!("{} is not 32 bytes", verify::COLUMN_NAMES[i])))
    };
    Ok(Entry {
        seq,
        time: row
            .get(1)
            .map_err(|e| corrupt(format!("column time: {e}")))?,
        record: NewEntry {
            request_id: text(2)?,
            kind: text(3)?.parse().map_err(corrupt)?,
            principal: text(4)?,
            action: text(5)?,
            resource: text(6)?,
            args_digest: text(7)?,
            intent: text(8)?,
            intent_source: text(9)?,
            grant_id: optional(10)?,
            policies: serde_json::from_str(&text(11)?)
                .map_err(|e| corrupt(format!("policies are not a JSON array of strings: {e}")))?,
            decision: Decision::parse_column(&text(12)?).map_err(corrupt)?,
            reason: text(13)?,
            outcome: optional(14)?,
            undo_ref: optional(15)?,
            tier: optional(16)?,
            cortex: optional(17)?,
            detail: serde_json::from_str(&text(18)?)
                .map_err(|e| corrupt(format!("detail is not a JSON object: {e}")))?,
        },
        prev_hash: hash(19)?,
        entry_hash: hash(20)?,
    })
}
