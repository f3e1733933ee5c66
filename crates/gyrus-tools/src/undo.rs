//! The undo journal: what each reversible call needs to be put back, in `runtime/undo/`.
//!
//! A record is tool-specific JSON keyed by the call's action id; file contents it refers to
//! are content-addressed blobs beside the database. Records are kept for a retention period
//! and up to a byte budget, oldest dropped first; an undone record cannot be undone again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::spec::ToolError;

/// One stored record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UndoRecord {
    /// The call's action id.
    pub action_id: String,
    /// The tool that made it.
    pub tool: String,
    /// Who made the call.
    pub principal: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The tool's undo data.
    pub data: serde_json::Value,
    /// The action id of the undo, once undone.
    pub undone_by: Option<String>,
}

/// The journal.
#[derive(Debug)]
pub struct UndoJournal {
    db: Mutex<Connection>,
    blobs: PathBuf,
    retention: Duration,
    max_bytes: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn db_err(e: rusqlite::Error) -> ToolError {
    ToolError::Internal(format!("undo journal: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl UndoJournal {
    /// Opens (or creates) the journal in `dir` (`runtime/undo/`).
    pub fn open(dir: &Path, retention: Duration, max_bytes: u64) -> Result<UndoJournal, ToolError> {
        let blobs = dir.join("blobs");
        for d in [dir, blobs.as_path()] {
            std::fs::create_dir_all(d)
                .map_err(|e| ToolError::Internal(format!("cannot create {}: {e}", d.display())))?;
            set_mode(d, 0o700)?;
        }
        let db = Connection::open(dir.join("journal.db")).map_err(db_err)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS undo (
                action_id TEXT PRIMARY KEY,
                tool TEXT NOT NULL,
                principal TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                data TEXT NOT NULL,
                blobs TEXT NOT NULL,
                bytes INTEGER NOT NULL,
                undone_by TEXT
             );
             CREATE INDEX IF NOT EXISTS undo_created ON undo(created_at);",
        )
        .map_err(db_err)?;
        set_mode(&dir.join("journal.db"), 0o600)?;
        Ok(UndoJournal {
            db: Mutex::new(db),
            blobs,
            retention,
            max_bytes,
        })
    }

    /// Keeps `bytes` as a blob and returns its hash (the same bytes are kept once). Written
    /// and synced before it returns, so a record never refers to a blob that is not there.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, ToolError> {
        let hash = sha256_hex(bytes);
        let path = self.blobs.join(&hash);
        if !path.exists() {
            gyrus_home::write_atomic(&path, bytes, 0o600)
                .map_err(|e| ToolError::Internal(format!("cannot keep an undo snapshot: {e}")))?;
        }
        Ok(hash)
    }

    /// The blob with this hash, checked against it.
    pub fn blob(&self, hash: &str) -> Result<Vec<u8>, ToolError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ToolError::Internal(format!("bad blob hash {hash:?}")));
        }
        let bytes = std::fs::read(self.blobs.join(hash)).map_err(|e| {
            ToolError::Conflict(format!(
                "the snapshot this undo needs is gone ({e}); it may have passed the undo retention"
            ))
        })?;
        if sha256_hex(&bytes) != hash {
            return Err(ToolError::Conflict(
                "the snapshot this undo needs was changed on disk; refusing to restore it".into(),
            ));
        }
        Ok(bytes)
    }

    /// Stores the record of a call; `blobs` are the hashes its data refers to.
    pub fn record(
        &self,
        action_id: &str,
        tool: &str,
        principal: &str,
        data: &serde_json::Value,
        blobs: &[String],
    ) -> Result<(), ToolError> {
        let mut bytes = 0u64;
        for b in blobs {
            bytes += std::fs::metadata(self.blobs.join(b)).map_or(0, |m| m.len());
        }
        let data_text = data.to_string();
        bytes += data_text.len() as u64;
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.execute(
            "INSERT INTO undo (action_id, tool, principal, created_at, data, blobs, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                action_id,
                tool,
                principal,
                now(),
                data_text,
                serde_json::to_string(blobs).map_err(ToolError::internal)?,
                bytes
            ],
        )
        .map_err(db_err)?;
        self.prune(&db)
    }

    /// The record of an action, if it is still kept.
    pub fn get(&self, action_id: &str) -> Result<Option<UndoRecord>, ToolError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let row = db
            .query_row(
                "SELECT action_id, tool, principal, created_at, data, undone_by FROM undo
                 WHERE action_id = ?1",
                params![action_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some((action_id, tool, principal, created_at, data, undone_by)) = row else {
            return Ok(None);
        };
        if created_at + self.retention.as_secs() < now() {
            return Ok(None);
        }
        Ok(Some(UndoRecord {
            action_id,
            tool,
            principal,
            created_at,
            data: serde_json::from_str(&data).map_err(ToolError::internal)?,
            undone_by,
        }))
    }

    /// Marks a record undone by `undo_id`; false if it already was (a race lost).
    pub fn mark_undone(&self, action_id: &str, undo_id: &str) -> Result<bool, ToolError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let n = db
            .execute(
                "UPDATE undo SET undone_by = ?2 WHERE action_id = ?1 AND undone_by IS NULL",
                params![action_id, undo_id],
            )
            .map_err(db_err)?;
        Ok(n == 1)
    }

    /// Clears the undone mark (an undo that failed), so it can be tried again.
    pub fn clear_undone(&self, action_id: &str) -> Result<(), ToolError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.execute(
            "UPDATE undo SET undone_by = NULL WHERE action_id = ?1",
            params![action_id],
        )
        .map_err(db_err)?;
        Ok(())
    }

    /// Drops records past the retention or beyond the byte budget (oldest first), then blobs
    /// no record refers to.
    fn prune(&self, db: &Connection) -> Result<(), ToolError> {
        let cutoff = now().saturating_sub(self.retention.as_secs());
        let mut dropped = db
            .execute("DELETE FROM undo WHERE created_at < ?1", params![cutoff])
            .map_err(db_err)?;
        let total: u64 = db
            .query_row("SELECT COALESCE(SUM(bytes), 0) FROM undo", [], |r| r.get(0))
            .map_err(db_err)?;
        if total > self.max_bytes {
            let mut over = total - self.max_bytes;
            let mut stmt = db
                .prepare("SELECT action_id, bytes FROM undo ORDER BY created_at, rowid")
                .map_err(db_err)?;
            let rows: Vec<(String, u64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for (id, bytes) in rows {
                if over == 0 {
                    break;
                }
                db.execute("DELETE FROM undo WHERE action_id = ?1", params![id])
                    .map_err(db_err)?;
                dropped += 1;
                over = over.saturating_sub(bytes);
            }
        }
        if dropped > 0 {
            self.collect_blobs(db)?;
        }
        Ok(())
    }

    fn collect_blobs(&self, db: &Connection) -> Result<(), ToolError> {
        let mut stmt = db.prepare("SELECT blobs FROM undo").map_err(db_err)?;
        let mut keep = std::collections::HashSet::new();
        let lists = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        for list in lists {
            let list = list.map_err(db_err)?;
            let hashes: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
            keep.extend(hashes);
        }
        let Ok(dir) = std::fs::read_dir(&self.blobs) else {
            return Ok(());
        };
        // A blob younger than an hour may belong to a call still running.
        let young = SystemTime::now() - Duration::from_secs(3600);
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let recent = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > young);
            if !keep.contains(&name) && !recent {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ToolError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ToolError::Internal(format!("cannot set the mode of {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_undo_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = UndoJournal::open(dir.path(), Duration::from_secs(3600), 1 << 20).unwrap();
        let h = j.put_blob(b"hello").unwrap();
        assert_eq!(j.blob(&h).unwrap(), b"hello");
        let data = serde_json::json!({"path": "/x", "blob": h});
        j.record(
            "req_1",
            "fs.write",
            "owner",
            &data,
            std::slice::from_ref(&h),
        )
        .unwrap();
        let r = j.get("req_1").unwrap().unwrap();
        assert_eq!(r.data, data);
        assert_eq!(r.undone_by, None);
        assert!(j.mark_undone("req_1", "req_2").unwrap());
        assert!(!j.mark_undone("req_1", "req_3").unwrap());
        assert_eq!(
            j.get("req_1").unwrap().unwrap().undone_by.as_deref(),
            Some("req_2")
        );
        assert!(j.get("req_nope").unwrap().is_none());
    }

    #[test]
    fn a_changed_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = UndoJournal::open(dir.path(), Duration::from_secs(3600), 1 << 20).unwrap();
        let h = j.put_blob(b"hello").unwrap();
        std::fs::write(dir.path().join("blobs").join(&h), b"HELLO").unwrap();
        assert!(matches!(j.blob(&h), Err(ToolError::Conflict(_))));
    }

    #[test]
    fn the_byte_budget_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let j = UndoJournal::open(dir.path(), Duration::from_secs(3600), 3000).unwrap();
        for i in 0..5 {
            let h = j.put_blob(&vec![i as u8; 1000]).unwrap();
            j.record(
                &format!("req_{i}"),
                "fs.write",
                "owner",
                &serde_json::json!({}),
                &[h],
            )
            .unwrap();
        }
        assert!(j.get("req_0").unwrap().is_none());
        assert!(j.get("req_4").unwrap().is_some());
    }
}
