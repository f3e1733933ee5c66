//! The route log: every routing decision and its outcome, in `memory/routes.db`.
//!
//! One row per request the frontal lobe routed: the decision ([`RouteRecord`]), the request's
//! text and embedding (so the predictor can learn from past outcomes after a restart), and,
//! once known, the outcome, tokens, cost and latency.
//!
//! Writes are off the request path: [`RouteLog::insert`] hands out the row's id at once and a
//! writer thread commits queued rows in batches (WAL, `synchronous=FULL`); reads flush the
//! queue first, so they see every row handed out before them. A `kill -9` can lose the rows
//! still queued (milliseconds' worth); [`RouteLog::flush`] at shutdown loses none.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, mpsc};

use gyrus_cortex::route::{RouteRecord, Tier};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// The most past requests read back to warm the predictor at open.
pub const WARM_ROWS: usize = 5000;

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
#[error("route log {path}: {message}")]
pub struct LogError {
    path: String,
    message: String,
}

/// One logged decision, as `gyrus route log` and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRoute {
    /// The row id.
    pub id: i64,
    /// The decision and its outcome.
    #[serde(flatten)]
    pub record: RouteRecord,
}

/// A past request with a known outcome, for the predictor.
#[derive(Debug, Clone, PartialEq)]
pub struct PastOutcome {
    /// The request's text.
    pub text: String,
    /// Its embedding.
    pub embedding: Vec<f32>,
    /// The tier that answered.
    pub tier: Tier,
    /// Whether the answer passed validation.
    pub success: bool,
}

/// The most queued writes one transaction commits.
const BATCH: usize = 256;

/// A queued write.
enum Op {
    Insert {
        id: i64,
        record: RouteRecord,
        text: String,
        embedding: Option<Vec<f32>>,
    },
    Finish {
        id: i64,
        record: RouteRecord,
    },
    /// Answered once every earlier write is committed.
    Flush(mpsc::SyncSender<()>),
}

/// The route log on one SQLite file.
#[derive(Debug)]
pub struct RouteLog {
    path: String,
    /// For reads.
    conn: Mutex<Connection>,
    next_id: AtomicI64,
    writer: mpsc::Sender<Op>,
}

impl RouteLog {
    /// Opens (creating) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let shown = path.display().to_string();
        let fail = |e: rusqlite::Error| LogError {
            path: shown.clone(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(LogError {
                path: shown,
                message: format!(
                    "schema version {version} is newer than this gyrus knows ({SCHEMA_VERSION}): \
                     upgrade gyrus"
                ),
            });
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS routes (
                     id INTEGER PRIMARY KEY,
                     at INTEGER NOT NULL,
                     agent TEXT NOT NULL,
                     text TEXT NOT NULL,
                     text_hash TEXT NOT NULL,
                     embedding BLOB,
                     kind TEXT NOT NULL,
                     tier TEXT,
                     target TEXT,
                     reason TEXT NOT NULL,
                     predicted TEXT NOT NULL,
                     outcome INTEGER,
                     tokens INTEGER NOT NULL DEFAULT 0,
                     cost REAL NOT NULL DEFAULT 0,
                     latency_ms INTEGER NOT NULL DEFAULT 0
                 );
                 CREATE INDEX IF NOT EXISTS routes_at ON routes(at);
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))
            .map_err(fail)?;
        }
        let next: i64 = conn
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM routes", [], |r| {
                r.get(0)
            })
            .map_err(fail)?;
        let writer_conn = Connection::open(path).map_err(fail)?;
        writer_conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .map_err(fail)?;
        let (tx, rx) = mpsc::channel();
        let thread_path = shown.clone();
        std::thread::Builder::new()
            .name("route-log".into())
            .spawn(move || write_loop(writer_conn, &rx, &thread_path))
            .map_err(|e| LogError {
                path: shown.clone(),
                message: format!("cannot start its writer: {e}"),
            })?;
        Ok(Self {
            path: shown,
            conn: Mutex::new(conn),
            next_id: AtomicI64::new(next),
            writer: tx,
        })
    }

    /// Waits until every write queued so far is committed.
    pub fn flush(&self) -> Result<(), LogError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Op::Flush(tx))?;
        rx.recv().map_err(|_| self.stopped())
    }

    fn send(&self, op: Op) -> Result<(), LogError> {
        self.writer.send(op).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> LogError {
        LogError {
            path: self.path.clone(),
            message: "its writer stopped".into(),
        }
    }

    fn fail(&self, e: rusqlite::Error) -> LogError {
        LogError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a decision (outcome unknown yet); returns its id at once.
    pub fn insert(
        &self,
        record: &RouteRecord,
        text: &str,
        embedding: Option<&[f32]>,
    ) -> Result<i64, LogError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(Op::Insert {
            id,
            record: record.clone(),
            text: text.to_owned(),
            embedding: embedding.map(<[f32]>::to_vec),
        })?;
        Ok(id)
    }

    /// Queues the outcome of decision `id`: the tier and target that finally answered (after
    /// escalation), success, tokens, cost and latency.
    pub fn finish(&self, id: i64, finished: &RouteRecord) -> Result<(), LogError> {
        self.send(Op::Finish {
            id,
            record: finished.clone(),
        })
    }

    /// The decision `id`.
    pub fn get(&self, id: i64) -> Result<Option<LoggedRoute>, LogError> {
        self.flush()?;
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM routes WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// The newest `limit` decisions, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<LoggedRoute>, LogError> {
        self.flush()?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM routes ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(|e| self.fail(e))?;
        stmt.query_map([limit as i64], row)
            .map_err(|e| self.fail(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))
    }

    /// The newest `limit` requests answered by a model whose outcome is known, oldest first.
    pub fn outcomes(&self, limit: usize) -> Result<Vec<PastOutcome>, LogError> {
        self.flush()?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT text, embedding, tier, outcome FROM routes
                 WHERE outcome IS NOT NULL AND embedding IS NOT NULL AND kind = 'cortex'
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.fail(e))?;
        let mut past: Vec<PastOutcome> = stmt
            .query_map([limit as i64], |r| {
                let tier: Option<String> = r.get(2)?;
                let blob: Vec<u8> = r.get(1)?;
                Ok((r.get::<_, String>(0)?, blob, tier, r.get::<_, bool>(3)?))
            })
            .map_err(|e| self.fail(e))?
            .filter_map(Result::ok)
            .filter_map(|(text, blob, tier, success)| {
                Some(PastOutcome {
                    text,
                    embedding: from_blob(&blob)?,
                    tier: tier?.parse().ok()?,
                    success,
                })
            })
            .collect();
        past.reverse();
        Ok(past)
    }
}

impl Drop for RouteLog {
    /// Commits what is queued before the log goes.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The writer: waits for a write, takes what else is queued (up to [`BATCH`]), commits them
/// in one transaction, then answers the flushes among them. Ends when the log is dropped.
fn write_loop(mut conn: Connection, rx: &mpsc::Receiver<Op>, path: &str) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let committed = conn.transaction().and_then(|tx| {
            for op in ops {
                match op {
                    Op::Insert {
                        id,
                        record,
                        text,
                        embedding,
                    } => insert_row(&tx, id, &record, &text, embedding.as_deref())?,
                    Op::Finish { id, record } => finish_row(&tx, id, &record)?,
                    Op::Flush(done) => flushes.push(done),
                }
            }
            tx.commit()
        });
        if let Err(e) = committed {
            tracing::warn!(error = %e, log = path, "cannot write routing decisions");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn insert_row(
    conn: &Connection,
    id: i64,
    record: &RouteRecord,
    text: &str,
    embedding: Option<&[f32]>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO routes (id, at, agent, text, text_hash, embedding, kind, tier, target, reason,
                             predicted, outcome, tokens, cost, latency_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            id,
            record.at as i64,
            record.agent,
            text,
            record.text_hash,
            embedding.map(to_blob),
            record.kind,
            record.tier.map(|t| t.as_str()),
            record.cortex,
            record.reason,
            serde_json::to_string(&record.predicted).unwrap_or_else(|_| "[]".into()),
            record.actual_outcome,
            record.tokens as i64,
            record.cost,
            record.latency_ms as i64,
        ],
    )
    .map(|_| ())
}

fn finish_row(conn: &Connection, id: i64, record: &RouteRecord) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE routes SET tier = ?2, target = ?3, reason = ?4, outcome = ?5, tokens = ?6,
                cost = ?7, latency_ms = ?8 WHERE id = ?1",
        params![
            id,
            record.tier.map(|t| t.as_str()),
            record.cortex,
            record.reason,
            record.actual_outcome,
            record.tokens as i64,
            record.cost,
            record.latency_ms as i64,
        ],
    )
    .map(|_| ())
}

const COLUMNS: &str = "id, at, agent, text_hash, kind, tier, target, reason, predicted, outcome, tokens, cost, \
     latency_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedRoute> {
    let tier: Option<String> = r.get(5)?;
    let predicted: String = r.get(8)?;
    Ok(LoggedRoute {
        id: r.get(0)?,
        record: RouteRecord {
            at: r.get::<_, i64>(1)?.max(0) as u64,
            agent: r.get(2)?,
            text_hash: r.get(3)?,
            kind: r.get(4)?,
            tier: tier.and_then(|t| t.parse().ok()),
            cortex: r.get(6)?,
            reason: r.get(7)?,
            predicted: serde_json::from_str(&predicted).unwrap_or_default(),
            actual_outcome: r.get(9)?,
            tokens: r.get::<_, i64>(10)?.max(0) as u64,
            cost: r.get(11)?,
            latency_ms: r.get::<_, i64>(12)?.max(0) as u64,
        },
    })
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Option<Vec<f32>> {
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use gyrus_cortex::route::Decision;

    #[test]
    fn a_decision_and_its_outcome_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.db");
        let decision = Decision::Exhausted {
            tier: Tier::Operational,
            reason: "nothing above".into(),
        };
        let record = RouteRecord::new(1000, "owner", "what is 2+2", &decision);
        let id = {
            let log = RouteLog::open(&path).unwrap();
            let id = log
                .insert(&record, "what is 2+2", Some(&[0.5, -1.0]))
                .unwrap();
            let mut done = record.clone().finished(true, 42, 0.001, 17);
            done.kind = "cortex".into();
            log.finish(id, &done).unwrap();
            id
        };
        let log = RouteLog::open(&path).unwrap();
        let got = log.get(id).unwrap().unwrap();
        assert_eq!(got.record.actual_outcome, Some(true));
        assert_eq!(got.record.tokens, 42);
        assert_eq!(got.record.latency_ms, 17);
        assert_eq!(got.record.text_hash, record.text_hash);
        assert_eq!(log.recent(10).unwrap().len(), 1);
        // Logged as `exhausted`, so not a model's outcome for the predictor.
        assert!(log.outcomes(10).unwrap().is_empty());
    }

    #[test]
    fn embeddings_round_trip() {
        let v = vec![0.25f32, -3.5, 1e-7];
        assert_eq!(from_blob(&to_blob(&v)), Some(v));
        assert_eq!(from_blob(&[1, 2, 3]), None);
    }
}
