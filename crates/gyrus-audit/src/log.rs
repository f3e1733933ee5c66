//! [`AuditLog`]: the append-only log in a SQLite file, with its Merkle tree kept in memory.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};

use crate::db::{
    INSERT, database_error, ensure_parent, entry_from_row, load_chain, open_database,
    stored_entry_hash,
};
use crate::entry::{Entry, NewEntry, Prepared};
use crate::error::AuditError;
use crate::merkle::{Hash, MerkleTree};
use crate::proof::{ConsistencyProof, InclusionProof};
use crate::sth::{self, SignedTreeHead};
use crate::verify::{self, BadEntry, COLUMNS, CheckpointState, VerifyReport};
use crate::{hex, key};

/// How hard a commit works to reach the disk before an append returns.
///
/// Either way an acknowledged append survives the process being killed (`kill -9`): SQLite has
/// handed the WAL frames to the kernel before the commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `PRAGMA synchronous = FULL`: the WAL is fsynced at every commit, so an acknowledged
    /// append also survives power loss or a kernel crash, and the checkpoint (fsynced after the
    /// commit) never covers an entry the database lost.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL`: the WAL is fsynced only when SQLite checkpoints it. An
    /// acknowledged append survives `kill -9` but may be lost on power loss; the signed
    /// checkpoint may then cover entries the database no longer has, and `verify` reports the
    /// tail as truncated.
    Normal,
}

/// The tamper-evident audit log: an append-only SQLite table whose entries are hash-chained,
/// the leaves of an RFC 6962 Merkle tree, and covered by a signed checkpoint rewritten after
/// every append.
///
/// `AuditLog` is `Send + Sync`: one mutex guards the connection and the in-memory Merkle
/// tree, so appends are serialised. All methods block on SQLite and the disk; call them from
/// async code through `spawn_blocking`.
pub struct AuditLog {
    db_path: PathBuf,
    checkpoint_path: PathBuf,
    key: SigningKey,
    public_key: String,
    len: AtomicU64,
    inner: Mutex<Inner>,
}

/// What the mutex guards.
struct Inner {
    conn: Connection,
    /// The leaf hashes of every entry, with cached interior nodes.
    tree: MerkleTree,
    /// The `entry_hash` of the last entry; zeros for an empty log.
    last_hash: Hash,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signing key stays out of logs.
        f.debug_struct("AuditLog")
            .field("db_path", &self.db_path)
            .field("checkpoint_path", &self.checkpoint_path)
            .field("public_key", &self.public_key)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log at `db` (normally `memory/audit.db`), signing with the Ed25519 key in
    /// `key` (normally `user/audit.key`) and keeping the signed checkpoint in `checkpoint`
    /// (normally `memory/audit.sth.json`), with [`Durability::Full`].
    ///
    /// Missing files are created (a new key only when there is no checkpoint and no entry to
    /// vouch for). Opening checks, without rehashing every entry, that sequence numbers are
    /// contiguous, that every `prev_hash` links to the previous entry's hash, that the
    /// checkpoint is signed by `key`, covers no more entries than the log has and matches
    /// their Merkle root, and it fully rehashes the entries the checkpoint does not yet cover.
    /// A failure is [`AuditError::Tampered`]; [`AuditLog::verify`] checks everything.
    pub fn open(db: &Path, key: &Path, checkpoint: &Path) -> Result<Self, AuditError> {
        Self::open_with(db, key, checkpoint, Durability::default())
    }

    /// Like [`AuditLog::open`], with a chosen [`Durability`].
    pub fn open_with(
        db: &Path,
        key: &Path,
        checkpoint: &Path,
        durability: Durability,
    ) -> Result<Self, AuditError> {
        for path in [db, key, checkpoint] {
            ensure_parent(path)?;
        }
        let conn = open_database(db, durability)?;
        let (tree, last_hash) = load_chain(&conn)
            .map_err(|err| database_error(db, err))?
            .map_err(|bad| tampered(db, checkpoint, bad))?;
        let sth = sth::read_checkpoint(checkpoint).map_err(|reason| AuditError::Checkpoint {
            path: checkpoint.to_path_buf(),
            reason,
        })?;
        let signing_key = match key::load(key)? {
            Some(signing_key) => signing_key,
            None if sth.is_some() => {
                return Err(AuditError::Key {
                    path: key.to_path_buf(),
                    reason: format!(
                        "it is missing, but the checkpoint {} was signed with it; restore the \
                         key from a backup",
                        checkpoint.display()
                    ),
                });
            }
            None if !tree.is_empty() => {
                return Err(tampered(
                    db,
                    checkpoint,
                    missing_checkpoint(checkpoint, tree.len()),
                ));
            }
            None => key::create(key)?,
        };
        let public_key = hex::encode(signing_key.verifying_key().as_bytes());
        let log = Self {
            db_path: db.to_path_buf(),
            checkpoint_path: checkpoint.to_path_buf(),
            key: signing_key,
            public_key,
            len: AtomicU64::new(tree.len()),
            inner: Mutex::new(Inner {
                conn,
                tree,
                last_hash,
            }),
        };
        log.check_checkpoint_on_open(sth)?;
        Ok(log)
    }

    /// The cheap part of the integrity check: the checkpoint against the stored hashes, and a
    /// full rehash of the entries it does not cover yet (a crash between a commit and the
    /// checkpoint write leaves those).
    fn check_checkpoint_on_open(&self, sth: Option<SignedTreeHead>) -> Result<(), AuditError> {
        let inner = self.lock()?;
        let len = inner.tree.len();
        let Some(sth) = sth else {
            if len > 0 {
                return Err(self.tampered(missing_checkpoint(&self.checkpoint_path, len)));
            }
            return self.write_checkpoint_on_open(&inner);
        };
        let root = inner.tree.root_at(sth.tree_size).ok();
        if let Some(bad) = verify::check_checkpoint(&sth, len, root, &self.public_key) {
            return Err(self.tampered(bad));
        }
        if sth.tree_size == len {
            return Ok(());
        }
        let prev = stored_entry_hash(&inner.conn, sth.tree_size).map_err(|e| self.db_error(e))?;
        let scan =
            verify::scan(&inner.conn, sth.tree_size, prev, |_| {}).map_err(|e| self.db_error(e))?;
        if let Some(bad) = scan.first_bad {
            return Err(self.tampered(bad));
        }
        if scan.last_seq != len || scan.last_hash != inner.last_hash {
            return Err(AuditError::ConcurrentWriter {
                path: self.db_path.clone(),
            });
        }
        self.write_checkpoint_on_open(&inner)
    }

    fn write_checkpoint_on_open(&self, inner: &Inner) -> Result<(), AuditError> {
        sth::write_checkpoint(&self.checkpoint_path, &self.sign(&inner.tree)).map_err(|source| {
            AuditError::Io {
                action: "write the audit checkpoint",
                path: self.checkpoint_path.clone(),
                source,
            }
        })
    }

    /// Appends one entry and returns it as stored. It returns only after the entry is
    /// committed (see [`Durability`]) and the checkpoint is rewritten.
    pub fn append(&self, entry: NewEntry) -> Result<Entry, AuditError> {
        let (first, _) = self.commit(entry, std::iter::empty())?;
        Ok(first)
    }

    /// Appends several entries in one transaction: all of them or none. Much faster per entry
    /// than [`AuditLog::append`]: one commit and one checkpoint for the whole batch.
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, AuditError> {
        let mut entries = entries.into_iter();
        let Some(first) = entries.next() else {
            return Ok(Vec::new());
        };
        let (first, rest) = self.commit(first, entries)?;
        let mut all = Vec::with_capacity(rest.len() + 1);
        all.push(first);
        all.extend(rest);
        Ok(all)
    }

    fn commit(
        &self,
        first: NewEntry,
        rest: impl Iterator<Item = NewEntry>,
    ) -> Result<(Entry, Vec<Entry>), AuditError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let time = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let start = inner.tree.len();
        let mut prev = inner.last_hash;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let (first, rest) = {
            let mut stmt = tx.prepare_cached(INSERT).map_err(|e| self.db_error(e))?;
            let mut seq = start;
            let mut insert = |entry: NewEntry| -> Result<Entry, AuditError> {
                seq += 1;
                let prepared = Prepared::new(entry);
                let c = prepared.columns(seq, time);
                let hash = c.hash(&prev);
                let seq_sql = i64::try_from(seq)
                    .map_err(|_| AuditError::OutOfRange(format!("the log is full at {seq}")))?;
                stmt.execute(params![
                    seq_sql,
                    c.time,
                    c.request_id,
                    c.kind,
                    c.principal,
                    c.action,
                    c.resource,
                    c.args_digest,
                    c.intent,
                    c.intent_source,
                    c.grant_id,
                    c.policies,
                    c.decision,
                    c.reason,
                    c.outcome,
                    c.undo_ref,
                    c.tier,
                    c.cortex,
                    c.detail,
                    &prev[..],
                    &hash[..],
                ])
                .map_err(|e| self.insert_error(e))?;
                let entry = prepared.into_entry(seq, time, prev, hash);
                prev = hash;
                Ok(entry)
            };
            let first = insert(first)?;
            let rest = rest.map(&mut insert).collect::<Result<Vec<_>, _>>()?;
            (first, rest)
        };
        tx.commit().map_err(|e| self.db_error(e))?;
        // Committed: the in-memory state follows the database from here on.
        inner.tree.push(first.leaf_hash());
        for entry in &rest {
            inner.tree.push(entry.leaf_hash());
        }
        inner.last_hash = prev;
        self.len.store(inner.tree.len(), Ordering::Release);
        let sth = self.sign(&inner.tree);
        sth::write_checkpoint(&self.checkpoint_path, &sth).map_err(|source| {
            AuditError::CheckpointWrite {
                first: start + 1,
                last: inner.tree.len(),
                path: self.checkpoint_path.clone(),
                source,
            }
        })?;
        Ok((first, rest))
    }

    fn sign(&self, tree: &MerkleTree) -> SignedTreeHead {
        SignedTreeHead::sign(&self.key, tree.len(), &tree.root(), now_ms())
    }

    /// How many entries the log holds.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The log's Ed25519 public key, hex: the key every checkpoint must be signed with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> &Path {
        &self.checkpoint_path
    }

    /// The current tree head, signed now. (The checkpoint file holds the one signed at the
    /// last append.)
    pub fn tree_head(&self) -> Result<SignedTreeHead, AuditError> {
        let inner = self.lock()?;
        Ok(self.sign(&inner.tree))
    }

    /// The Merkle root of the first `tree_size` entries, hex.
    pub fn root_hash(&self, tree_size: u64) -> Result<String, AuditError> {
        let inner = self.lock()?;
        check_size(tree_size, inner.tree.len())?;
        Ok(hex::encode(&inner.tree.root_at(tree_size)?))
    }

    /// Entry `seq`, or `None` if the log has no such entry.
    pub fn get(&self, seq: u64) -> Result<Option<Entry>, AuditError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let mut entries = self.query("WHERE seq = ?1", [seq])?;
        Ok(entries.pop())
    }

    /// The last `n` entries (fewer if the log is shorter), oldest first.
    pub fn tail(&self, n: u64) -> Result<Vec<Entry>, AuditError> {
        let from = self.len().saturating_sub(n).saturating_add(1);
        self.range(from..=u64::MAX)
    }

    /// The entries whose `seq` lies in `seqs` (both ends included), oldest first.
    pub fn range(&self, seqs: RangeInclusive<u64>) -> Result<Vec<Entry>, AuditError> {
        let clamp = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
        self.query(
            "WHERE seq BETWEEN ?1 AND ?2",
            [clamp(*seqs.start()), clamp(*seqs.end())],
        )
    }

    /// Every entry of one request (its decision, its outcome, …), oldest first: the answer to
    /// `gyrus audit why`.
    pub fn by_request(&self, request_id: &str) -> Result<Vec<Entry>, AuditError> {
        self.query("WHERE request_id = ?1", [request_id])
    }

    fn query(&self, filter: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>, AuditError> {
        let inner = self.lock()?;
        let mut stmt = inner
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM entries {filter} ORDER BY seq"
            ))
            .map_err(|e| self.db_error(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.db_error(e))?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.db_error(e))? {
            entries.push(entry_from_row(row)?);
        }
        Ok(entries)
    }

    /// Proof that entry `seq` is in the log of the first `tree_size` entries.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof, AuditError> {
        let inner = self.lock()?;
        check_size(tree_size, inner.tree.len())?;
        if seq == 0 || seq > tree_size {
            return Err(AuditError::OutOfRange(format!(
                "entry {seq} is not in a tree of {tree_size} entries (entries are numbered from 1)"
            )));
        }
        let index = seq - 1;
        let leaf = usize::try_from(index)
            .ok()
            .and_then(|i| inner.tree.leaves().get(i))
            .copied()
            .ok_or_else(|| AuditError::OutOfRange(format!("entry {seq} does not exist")))?;
        let path = inner.tree.inclusion_proof(index, tree_size)?;
        Ok(InclusionProof {
            seq,
            tree_size,
            leaf_hash: hex::encode(&leaf),
            root_hash: hex::encode(&inner.tree.root_at(tree_size)?),
            path: path.iter().map(|node| hex::encode(node)).collect(),
        })
    }

    /// Proof that the log of the first `old_size` entries is a prefix of the log of the first
    /// `new_size` entries.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        let inner = self.lock()?;
        check_size(new_size, inner.tree.len())?;
        if old_size > new_size {
            return Err(AuditError::OutOfRange(format!(
                "the old size {old_size} is larger than the new size {new_size}"
            )));
        }
        let path = inner.tree.consistency_proof(old_size, new_size)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            old_root: hex::encode(&inner.tree.root_at(old_size)?),
            new_root: hex::encode(&inner.tree.root_at(new_size)?),
            path: path.iter().map(|node| hex::encode(node)).collect(),
        })
    }

    /// Checks the whole log from the files: recomputes every entry's hash from its content,
    /// walks the hash chain and the sequence numbers, and checks the checkpoint's signature,
    /// that it covers no more entries than the log holds, and that its root is the root of
    /// the entries it covers. Reports the first problem in [`VerifyReport::first_bad`].
    ///
    /// It reads through its own read-only connection, so appends go on meanwhile; it keeps
    /// O(log n) hashes in memory. An `Err` means verification itself could not run.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify_paths(&self.db_path, &self.checkpoint_path, &self.public_key)
    }

    /// [`AuditLog::verify`] for a log that is not open, e.g. one copied off a machine. Creates
    /// nothing; the key file must exist.
    pub fn verify_files(
        db: &Path,
        key: &Path,
        checkpoint: &Path,
    ) -> Result<VerifyReport, AuditError> {
        let signing_key = key::load(key)?.ok_or_else(|| AuditError::Key {
            path: key.to_path_buf(),
            reason: "it does not exist; verification needs the key the log was signed with"
                .to_owned(),
        })?;
        let public_key = hex::encode(signing_key.verifying_key().as_bytes());
        verify_paths(db, checkpoint, &public_key)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, AuditError> {
        self.inner.lock().map_err(|_| AuditError::Poisoned)
    }

    fn db_error(&self, source: rusqlite::Error) -> AuditError {
        database_error(&self.db_path, source)
    }

    fn insert_error(&self, source: rusqlite::Error) -> AuditError {
        match source.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => AuditError::ConcurrentWriter {
                path: self.db_path.clone(),
            },
            _ => self.db_error(source),
        }
    }

    fn tampered(&self, bad: BadEntry) -> AuditError {
        tampered(&self.db_path, &self.checkpoint_path, bad)
    }
}

fn verify_paths(
    db: &Path,
    checkpoint: &Path,
    public_key: &str,
) -> Result<VerifyReport, AuditError> {
    // Read the checkpoint before the database: appends write it after committing, so the
    // snapshot read next holds at least the entries it covers, unless some were removed.
    let state = match sth::read_checkpoint(checkpoint) {
        Ok(Some(sth)) => CheckpointState::Present(sth),
        Ok(None) => CheckpointState::Missing,
        Err(reason) => CheckpointState::Unreadable(reason),
    };
    if !db.exists() {
        return Err(AuditError::Io {
            action: "open the audit database",
            path: db.to_path_buf(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| database_error(db, e))?;
    let name = checkpoint.display().to_string();
    verify::verify_database(&conn, state, &name, public_key).map_err(|e| database_error(db, e))
}

fn check_size(tree_size: u64, len: u64) -> Result<(), AuditError> {
    if tree_size > len {
        return Err(AuditError::OutOfRange(format!(
            "tree size {tree_size} is larger than the log, which has {len} entries"
        )));
    }
    Ok(())
}

fn tampered(db: &Path, checkpoint: &Path, bad: BadEntry) -> AuditError {
    AuditError::Tampered {
        db: db.to_path_buf(),
        checkpoint: checkpoint.to_path_buf(),
        bad,
    }
}

fn missing_checkpoint(checkpoint: &Path, len: u64) -> BadEntry {
    BadEntry {
        seq: None,
        reason: format!(
            "the signed checkpoint {} is missing but the log has {len} entries: it was deleted",
            checkpoint.display()
        ),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_log_can_be_shared_between_threads() {
        assert_send_sync::<AuditLog>();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        {
            let conn = Connection::open(&db).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let err =
            AuditLog::open(&db, &dir.path().join("k"), &dir.path().join("c.json")).unwrap_err();
        assert!(matches!(err, AuditError::Schema { found: 2, .. }), "{err}");
        assert!(err.to_string().contains("upgrade gyrus"));
    }
}
