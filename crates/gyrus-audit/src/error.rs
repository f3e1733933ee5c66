//! The audit log's error type.

use std::io;
use std::path::PathBuf;

use crate::merkle::ProofError;
use crate::verify::BadEntry;

/// Everything that can go wrong with the audit log. Each message says what is wrong and, where
/// there is something to do, what to do.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory could not be created, read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "create the directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// SQLite refused an operation on the audit database.
    #[error("audit database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The signing key file is missing, unreadable or malformed.
    #[error("audit key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The checkpoint file exists but cannot be read or parsed.
    #[error(
        "audit checkpoint {path}: {reason}; restore it from a backup, or move it aside \
         together with the database to start a new log"
    )]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Opening the log found that it was tampered with (or damaged).
    #[error(
        "the audit log {db} failed its integrity check: {bad}. Keep the files for \
         investigation (`gyrus audit verify` shows the details); to start a new log, move {db} \
         (with its -wal and -shm files) and {checkpoint} aside"
    )]
    Tampered {
        /// The database file.
        db: PathBuf,
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// The first problem found.
        bad: BadEntry,
    },
    /// Entries were committed, but the checkpoint that follows every append was not written.
    #[error(
        "entries {first} to {last} were committed to the audit log, but its checkpoint {path} \
         could not be written: {source}; the entries are safe and the next append or open \
         rewrites the checkpoint, but fix the disk problem"
    )]
    CheckpointWrite {
        /// The first committed entry.
        first: u64,
        /// The last committed entry.
        last: u64,
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process wrote to the database behind this one's back.
    #[error(
        "another process appended to the audit log {path}; only one gyrus daemon may use a home \
         at a time: stop the other one, then reopen the log"
    )]
    ConcurrentWriter {
        /// The database file.
        path: PathBuf,
    },
    /// A stored row cannot be turned back into an entry.
    #[error("entry {seq} of the audit log cannot be read: {reason}; run `gyrus audit verify`")]
    Corrupt {
        /// The entry.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer gyrus.
    #[error(
        "the audit log {path} has schema version {found}, but this gyrus knows only up to \
         {known}; upgrade gyrus"
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this code knows.
        known: i64,
    },
    /// A sequence number or tree size is outside the log.
    #[error("{0}")]
    OutOfRange(String),
    /// A hash, key or signature given as hex is malformed.
    #[error("{field} is not valid: expected {len} bytes of hex")]
    BadHex {
        /// Which value.
        field: &'static str,
        /// How many bytes it should hold.
        len: usize,
    },
    /// A Merkle proof could not be made or did not verify.
    #[error("Merkle proof: {0}")]
    Proof(#[from] ProofError),
    /// A thread panicked while holding the log; its in-memory state can no longer be trusted.
    #[error("the audit log is unusable after a panic in another thread; restart the daemon")]
    Poisoned,
}
