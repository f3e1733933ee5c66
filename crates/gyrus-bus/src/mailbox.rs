//! Durable per-agent mailboxes in one SQLite file (the daemon's is `memory/mailboxes.db`).
//!
//! Delivery is at-least-once. [`Mailboxes::fetch`] leases messages: a leased message is not
//! handed out again until its lease runs out, and then it is, with its attempt count raised,
//! until someone calls [`Mailboxes::ack`]. An acknowledged message is deleted and never
//! delivered again. A message at or past its deadline is deleted when a fetch comes across it,
//! and counted ([`Mailboxes::expired`]).
//!
//! Durability: the file is in WAL mode. With [`Durability::Process`] (the default,
//! `synchronous=NORMAL`) a message is in the operating system's hands when `enqueue` returns,
//! so it survives `kill -9` of the daemon, but a power loss or kernel crash may lose the last
//! few commits. [`Durability::PowerLoss`] (`synchronous=FULL`) syncs the log on every commit and
//! survives those too, at the cost of one `fsync` per enqueue.
//!
//! The calls block on SQLite; from async code run them under `spawn_blocking`. Only
//! [`Mailboxes::wait`] is async.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::envelope::{self, Envelope, EnvelopeError, now_ms};
use crate::subject::{self, Pattern};

/// The largest stored envelope (its JSON), in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mailbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT, -- the delivery id; never reused
    recipient    TEXT    NOT NULL,
    intent       TEXT    NOT NULL,
    deadline     INTEGER,                           -- unix ms, or NULL for none
    enqueued_at  INTEGER NOT NULL,                  -- unix ms
    attempts     INTEGER NOT NULL DEFAULT 0,        -- times handed out by fetch
    leased_until INTEGER NOT NULL DEFAULT 0,        -- unix ms; deliverable when <= now
    envelope     TEXT    NOT NULL                   -- the envelope as JSON
) STRICT;
CREATE INDEX IF NOT EXISTS mailbox_by_recipient ON mailbox (recipient, id);
CREATE INDEX IF NOT EXISTS mailbox_deadlines ON mailbox (recipient, deadline)
    WHERE deadline IS NOT NULL;
";

/// What went wrong with a mailbox.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// SQLite failed.
    #[error("mailbox database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file could not be created.
    #[error("cannot create mailbox database {path}: {source}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite would not put the file in WAL mode (some network file systems cannot).
    #[error(
        "mailbox database {path} cannot use WAL mode (journal mode is {mode}); put the home on a local disk"
    )]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file was written by a newer gyrus.
    #[error(
        "mailbox database {path} has schema version {found}; this gyrus knows {SCHEMA_VERSION}: upgrade gyrus"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The recipient is not a valid agent id.
    #[error("bad recipient: {0}")]
    Recipient(EnvelopeError),
    /// The envelope is not valid.
    #[error("bad envelope: {0}")]
    Envelope(EnvelopeError),
    /// The envelope could not be encoded as JSON.
    #[error("cannot encode the envelope: {0}")]
    Encode(serde_json::Error),
    /// The envelope is too large to store.
    #[error("the envelope is {bytes} bytes as JSON; a mailbox holds at most {MAX_ENVELOPE_BYTES}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A stored message could not be read back.
    #[error(
        "message {id} in {recipient}'s mailbox is unreadable ({reason}); acknowledge it to discard it"
    )]
    Corrupt {
        /// The recipient.
        recipient: String,
        /// The delivery id.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// How much a committed enqueue survives; see the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives the process being killed (`synchronous=NORMAL`).
    #[default]
    Process,
    /// Survives power loss too (`synchronous=FULL`).
    PowerLoss,
}

/// A message handed out by [`Mailboxes::fetch`], leased to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The delivery id, for [`Mailboxes::ack`].
    pub id: u64,
    /// The message.
    pub envelope: Envelope,
    /// How many times it has been handed out, this time included (1 the first time).
    pub attempts: u32,
}

/// Every agent's durable mailbox, in one SQLite file. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Mailboxes {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// One wake-up per recipient that has been written to or waited on.
    bells: Mutex<HashMap<String, Arc<Notify>>>,
    expired: AtomicU64,
}

impl Mailboxes {
    /// Opens (creating if needed, mode 0600) the mailbox database at `path`, with
    /// [`Durability::Process`].
    pub fn open(path: &Path) -> Result<Mailboxes, MailboxError> {
        Mailboxes::open_with(path, Durability::default())
    }

    /// Opens the mailbox database at `path` with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Mailboxes, MailboxError> {
        // Create the file ourselves so it is private; SQLite gives its -wal and -shm files the
        // database file's mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| MailboxError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let sql = |source| MailboxError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(MailboxError::NotWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(sql)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if found > SCHEMA_VERSION {
            return Err(MailboxError::NewerSchema {
                path: path.to_path_buf(),
                found,
            });
        }
        tx.execute_batch(SCHEMA).map_err(sql)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Mailboxes {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            bells: Mutex::new(HashMap::new()),
            expired: AtomicU64::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `envelope` in `recipient`'s mailbox and returns its delivery id. When this
    /// returns, the message is committed.
    pub fn enqueue(&self, recipient: &str, envelope: &Envelope) -> Result<u64, MailboxError> {
        let row = Row::new(recipient, envelope)?;
        let id = {
            let conn = self.lock();
            row.insert(&conn).map_err(|e| self.sql(e))?
        };
        self.ring(recipient);
        Ok(id)
    }

    /// Stores every `(recipient, envelope)` in one transaction: all of them or none. Returns
    /// the delivery ids in order.
    pub fn enqueue_batch<R: AsRef<str>>(
        &self,
        items: &[(R, Envelope)],
    ) -> Result<Vec<u64>, MailboxError> {
        let rows = items
            .iter()
            .map(|(recipient, envelope)| Row::new(recipient.as_ref(), envelope))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sql(e))?;
            let ids = rows
                .iter()
                .map(|row| row.insert(&tx))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.sql(e))?;
            tx.commit().map_err(|e| self.sql(e))?;
            ids
        };
        let mut rung: Vec<&str> = Vec::new();
        for (recipient, _) in items {
            let recipient = recipient.as_ref();
            if !rung.contains(&recipient) {
                self.ring(recipient);
                rung.push(recipient);
            }
        }
        Ok(ids)
    }

    /// Leases up to `max` deliverable messages from `recipient`'s mailbox, oldest first, whose
    /// intent matches `pattern` (all if `None`), for `lease`. Expired messages met on the way
    /// are deleted and counted.
    pub fn fetch(
        &self,
        recipient: &str,
        pattern: Option<&Pattern>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, MailboxError> {
        self.fetch_at(recipient, pattern, max, lease, now_ms())
    }

    fn fetch_at(
        &self,
        recipient: &str,
        pattern: Option<&Pattern>,
        max: usize,
        lease: Duration,
        now: u64,
    ) -> Result<Vec<Delivery>, MailboxError> {
        check_recipient(recipient)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let now_i = to_i64(now);
        let until =
            to_i64(now.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let expired = tx
            .prepare_cached(
                "DELETE FROM mailbox WHERE recipient = ?1 AND deadline IS NOT NULL AND deadline <= ?2",
            )
            .and_then(|mut s| s.execute(params![recipient, now_i]))
            .map_err(|e| self.sql(e))?;
        let mut picked: Vec<(u64, String, u32)> = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, intent, envelope, attempts FROM mailbox
                     WHERE recipient = ?1 AND leased_until <= ?2 ORDER BY id",
                )
                .map_err(|e| self.sql(e))?;
            let mut rows = stmt
                .query(params![recipient, now_i])
                .map_err(|e| self.sql(e))?;
            while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
                let id: i64 = row.get(0).map_err(|e| self.sql(e))?;
                if let Some(p) = pattern {
                    let intent = row
                        .get_ref(1)
                        .and_then(|v| Ok(v.as_str()?))
                        .map_err(|e| self.sql(e))?;
                    if !subject::matches(p.as_str(), intent) {
                        continue;
                    }
                }
                let json: String = row.get(2).map_err(|e| self.sql(e))?;
                let attempts: i64 = row.get(3).map_err(|e| self.sql(e))?;
                picked.push((
                    u64::try_from(id).unwrap_or(0),
                    json,
                    u32::try_from(attempts.saturating_add(1)).unwrap_or(u32::MAX),
                ));
                if picked.len() == max {
                    break;
                }
            }
        }
        let mut deliveries = Vec::with_capacity(picked.len());
        {
            let mut lease_stmt = tx
                .prepare_cached(
                    "UPDATE mailbox SET leased_until = ?2, attempts = attempts + 1 WHERE id = ?1",
                )
                .map_err(|e| self.sql(e))?;
            for (id, json, attempts) in picked {
                let envelope: Envelope =
                    serde_json::from_str(&json).map_err(|e| MailboxError::Corrupt {
                        recipient: recipient.to_string(),
                        id,
                        reason: e.to_string(),
                    })?;
                lease_stmt
                    .execute(params![to_i64(id), until])
                    .map_err(|e| self.sql(e))?;
                deliveries.push(Delivery {
                    id,
                    envelope,
                    attempts,
                });
            }
        }
        tx.commit().map_err(|e| self.sql(e))?;
        if expired > 0 {
            self.expired.fetch_add(expired as u64, Ordering::Relaxed);
        }
        Ok(deliveries)
    }

    /// Acknowledges delivery `id`: the message is deleted and never delivered again. Returns
    /// false if `recipient` has no such message (already acknowledged, purged, or never there).
    pub fn ack(&self, recipient: &str, id: u64) -> Result<bool, MailboxError> {
        check_recipient(recipient)?;
        let conn = self.lock();
        let n = conn
            .prepare_cached("DELETE FROM mailbox WHERE recipient = ?1 AND id = ?2")
            .and_then(|mut s| s.execute(params![recipient, to_i64(id)]))
            .map_err(|e| self.sql(e))?;
        Ok(n > 0)
    }

    /// Acknowledges several deliveries in one transaction; returns how many were there.
    pub fn ack_many(&self, recipient: &str, ids: &[u64]) -> Result<usize, MailboxError> {
        check_recipient(recipient)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM mailbox WHERE recipient = ?1 AND id = ?2")
                .map_err(|e| self.sql(e))?;
            for id in ids {
                n += stmt
                    .execute(params![recipient, to_i64(*id)])
                    .map_err(|e| self.sql(e))?;
            }
        }
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(n)
    }

    /// How many unacknowledged messages `recipient` has, leased ones included.
    pub fn pending(&self, recipient: &str) -> Result<usize, MailboxError> {
        check_recipient(recipient)?;
        let conn = self.lock();
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM mailbox WHERE recipient = ?1")
            .and_then(|mut s| s.query_row(params![recipient], |r| r.get(0)))
            .map_err(|e| self.sql(e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Deletes `recipient`'s whole mailbox (when the agent is removed) and wakes its waiters.
    /// Returns how many messages were deleted.
    pub fn purge(&self, recipient: &str) -> Result<usize, MailboxError> {
        check_recipient(recipient)?;
        let n = {
            let conn = self.lock();
            conn.execute(
                "DELETE FROM mailbox WHERE recipient = ?1",
                params![recipient],
            )
            .map_err(|e| self.sql(e))?
        };
        let bell = self
            .bells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(recipient);
        if let Some(bell) = bell {
            bell.notify_waiters();
        }
        Ok(n)
    }

    /// Waits until something is enqueued for `recipient`.
    ///
    /// Meant for one receiver per recipient, in a loop: fetch; if nothing came, wait; fetch
    /// again. A message enqueued between the fetch and the wait is not missed (the wake-up is
    /// kept), but a wake-up may be spurious, and an expiring lease rings no bell: to pick up
    /// redeliveries, wait under a timeout no longer than the leases you hand out.
    pub async fn wait(&self, recipient: &str) {
        let bell = self.bell(recipient);
        bell.notified().await;
    }

    /// How many messages have been dropped for passing their deadline since this was opened.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    fn bell(&self, recipient: &str) -> Arc<Notify> {
        let mut bells = self.bells.lock().unwrap_or_else(PoisonError::into_inner);
        match bells.get(recipient) {
            Some(bell) => bell.clone(),
            None => {
                let bell = Arc::new(Notify::new());
                bells.insert(recipient.to_string(), bell.clone());
                bell
            }
        }
    }

    fn ring(&self, recipient: &str) {
        // notify_one keeps a permit when nobody waits yet, so a receiver between its fetch and
        // its wait still wakes.
        self.bell(recipient).notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind (dropping a
        // transaction rolls it back), so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sql(&self, source: rusqlite::Error) -> MailboxError {
        MailboxError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

fn check_recipient(recipient: &str) -> Result<(), MailboxError> {
    envelope::check_field("recipient", recipient).map_err(MailboxError::Recipient)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One message ready to insert, checked and encoded before any transaction starts.
struct Row<'a> {
    recipient: &'a str,
    intent: &'a str,
    deadline: Option<i64>,
    json: String,
}

impl<'a> Row<'a> {
    fn new(recipient: &'a str, envelope: &'a Envelope) -> Result<Row<'a>, MailboxError> {
        check_recipient(recipient)?;
        // An Envelope's fields are public; check again what we are about to keep.
        envelope.validate().map_err(MailboxError::Envelope)?;
        let json = serde_json::to_string(envelope).map_err(MailboxError::Encode)?;
        if json.len() > MAX_ENVELOPE_BYTES {
            return Err(MailboxError::TooLarge { bytes: json.len() });
        }
        Ok(Row {
            recipient,
            intent: envelope.intent.as_str(),
            deadline: envelope.deadline.map(to_i64),
            json,
        })
    }

    fn insert(&self, conn: &Connection) -> Result<u64, rusqlite::Error> {
        conn.prepare_cached(
            "INSERT INTO mailbox (recipient, intent, deadline, enqueued_at, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            self.recipient,
            self.intent,
            self.deadline,
            to_i64(now_ms()),
            self.json
        ])?;
        Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::Subject;
    use pretty_assertions::assert_eq;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const MIN: Duration = Duration::from_secs(60);

    fn open() -> (tempfile::TempDir, Mailboxes) {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::open(&dir.path().join("mailboxes.db")).unwrap();
        (dir, boxes)
    }

    fn msg(intent: &str, n: i64) -> Envelope {
        Envelope::new(Subject::new(intent).unwrap(), "owner", json!({ "n": n })).unwrap()
    }

    fn numbers(deliveries: &[Delivery]) -> Vec<i64> {
        deliveries
            .iter()
            .map(|d| d.envelope.payload["n"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn fetch_hands_out_oldest_first_by_pattern_and_max() {
        let (_dir, boxes) = open();
        for (i, intent) in [
            "ops.disk.cleanup",
            "fs.read",
            "ops.net.up",
            "ops.disk.usage",
        ]
        .iter()
        .enumerate()
        {
            boxes.enqueue("agent:a", &msg(intent, i as i64)).unwrap();
        }
        boxes
            .enqueue("agent:b", &msg("ops.disk.cleanup", 99))
            .unwrap();
        let ops = Pattern::new("ops.>").unwrap();
        let got = boxes.fetch("agent:a", Some(&ops), 2, MIN).unwrap();
        assert_eq!(numbers(&got), vec![0, 2]);
        assert!(got.iter().all(|d| d.attempts == 1));
        let rest = boxes.fetch("agent:a", None, 10, MIN).unwrap();
        assert_eq!(
            numbers(&rest),
            vec![1, 3],
            "leased messages are not handed out again"
        );
        assert_eq!(boxes.pending("agent:a").unwrap(), 4);
        assert_eq!(boxes.pending("agent:b").unwrap(), 1);
        assert_eq!(boxes.fetch("agent:a", None, 0, MIN).unwrap(), vec![]);
    }

    #[test]
    fn an_expired_lease_is_delivered_again_until_acknowledged() {
        let (_dir, boxes) = open();
        let id = boxes.enqueue("agent:a", &msg("job", 1)).unwrap();
        let t = now_ms();
        let first = boxes
            .fetch_at("agent:a", None, 10, Duration::from_secs(30), t)
            .unwrap();
        assert_eq!((first[0].id, first[0].attempts), (id, 1));
        assert!(
            boxes
                .fetch_at("agent:a", None, 10, MIN, t + 29_999)
                .unwrap()
                .is_empty()
        );
        let second = boxes
            .fetch_at("agent:a", None, 10, MIN, t + 30_000)
            .unwrap();
        assert_eq!((second[0].id, second[0].attempts), (id, 2));
        assert_eq!(second[0].envelope, first[0].envelope);
        assert!(boxes.ack("agent:a", id).unwrap());
        assert!(
            !boxes.ack("agent:a", id).unwrap(),
            "a second ack finds nothing"
        );
        assert!(
            boxes
                .fetch_at("agent:a", None, 10, MIN, t + 999_999)
                .unwrap()
                .is_empty()
        );
        assert_eq!(boxes.pending("agent:a").unwrap(), 0);
    }

    #[test]
    fn ack_is_per_recipient_and_unknown_ids_are_false() {
        let (_dir, boxes) = open();
        let id = boxes.enqueue("agent:a", &msg("job", 1)).unwrap();
        assert!(!boxes.ack("agent:b", id).unwrap());
        assert!(!boxes.ack("agent:a", 12_345).unwrap());
        assert!(!boxes.ack("agent:a", u64::MAX).unwrap());
        let ids = boxes
            .enqueue_batch(&[("agent:a", msg("job", 2)), ("agent:a", msg("job", 3))])
            .unwrap();
        assert_eq!(
            boxes.ack_many("agent:a", &[ids[0], ids[1], 777]).unwrap(),
            2
        );
        assert_eq!(boxes.pending("agent:a").unwrap(), 1);
    }

    #[test]
    fn expired_messages_are_dropped_on_fetch_and_counted() {
        let (_dir, boxes) = open();
        let t = now_ms();
        let soon = Envelope::builder(Subject::new("job").unwrap(), "owner")
            .deadline(t + 1_000)
            .payload(json!({"n": 1}))
            .build()
            .unwrap();
        boxes.enqueue("agent:a", &soon).unwrap();
        boxes.enqueue("agent:a", &msg("job", 2)).unwrap();
        let got = boxes.fetch_at("agent:a", None, 10, MIN, t + 1_000).unwrap();
        assert_eq!(numbers(&got), vec![2]);
        assert_eq!(boxes.expired(), 1);
        assert_eq!(boxes.pending("agent:a").unwrap(), 1);
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let (_dir, boxes) = open();
        let bad =
            boxes.enqueue_batch(&[("agent:a", msg("job", 1)), ("bad recipient", msg("job", 2))]);
        assert!(matches!(bad, Err(MailboxError::Recipient(_))), "{bad:?}");
        assert_eq!(boxes.pending("agent:a").unwrap(), 0);
        let ids = boxes
            .enqueue_batch(&[("agent:a", msg("job", 1)), ("agent:b", msg("job", 2))])
            .unwrap();
        assert!(ids[0] < ids[1]);
        assert_eq!(
            (
                boxes.pending("agent:a").unwrap(),
                boxes.pending("agent:b").unwrap()
            ),
            (1, 1)
        );
    }

    #[test]
    fn purge_empties_one_mailbox() {
        let (_dir, boxes) = open();
        for n in 0..3 {
            boxes.enqueue("agent:a", &msg("job", n)).unwrap();
        }
        boxes.enqueue("agent:b", &msg("job", 9)).unwrap();
        assert_eq!(boxes.purge("agent:a").unwrap(), 3);
        assert_eq!(boxes.pending("agent:a").unwrap(), 0);
        assert_eq!(boxes.pending("agent:b").unwrap(), 1);
    }

    #[test]
    fn bad_input_is_an_error() {
        let (_dir, boxes) = open();
        assert!(matches!(boxes.pending(""), Err(MailboxError::Recipient(_))));
        let mut huge = msg("job", 1);
        huge.payload = json!("x".repeat(MAX_ENVELOPE_BYTES));
        assert!(matches!(
            boxes.enqueue("agent:a", &huge),
            Err(MailboxError::TooLarge { .. })
        ));
        let mut bad = msg("job", 1);
        bad.from = String::new();
        assert!(matches!(
            boxes.enqueue("agent:a", &bad),
            Err(MailboxError::Envelope(_))
        ));
    }

    #[test]
    fn the_file_is_private_wal_and_versioned() {
        let (dir, boxes) = open();
        boxes.enqueue("agent:a", &msg("job", 1)).unwrap();
        let path = dir.path().join("mailboxes.db");
        for file in [path.clone(), dir.path().join("mailboxes.db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        drop(boxes);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Mailboxes::open(&path).unwrap_err();
        assert!(
            matches!(err, MailboxError::NewerSchema { found: 99, .. }),
            "{err}"
        );
        let missing = Mailboxes::open(&dir.path().join("no/such/dir.db")).unwrap_err();
        assert!(matches!(missing, MailboxError::Io { .. }), "{missing}");
    }

    #[tokio::test]
    async fn wait_wakes_on_enqueue_and_keeps_an_early_wake_up() {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Arc::new(Mailboxes::open(&dir.path().join("m.db")).unwrap());
        // Enqueued before anyone waits: the wake-up is kept.
        boxes.enqueue("agent:a", &msg("job", 1)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), boxes.wait("agent:a"))
            .await
            .unwrap();
        // Nothing new: waiting blocks.
        let blocked = tokio::time::timeout(Duration::from_millis(50), boxes.wait("agent:a")).await;
        assert!(blocked.is_err());
        // A writer on another thread wakes a waiting receiver.
        let writer = boxes.clone();
        let waiter = tokio::spawn({
            let boxes = boxes.clone();
            async move { boxes.wait("agent:a").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::thread::spawn(move || writer.enqueue("agent:a", &msg("job", 2)).unwrap())
            .join()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        // Another recipient's mail wakes no one here.
        boxes.enqueue("agent:b", &msg("job", 3)).unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), boxes.wait("agent:a")).await;
        assert!(blocked.is_err());
    }
}
