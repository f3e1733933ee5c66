//! The tamper-evident audit trail: every policy decision and outcome, with the reason why.
//!
//! [`AuditLog`] keeps entries in an append-only SQLite table (normally `memory/audit.db`, WAL
//! mode). Three mechanisms, layered, make tampering evident:
//!
//! 1. **A hash chain.** Each entry's `entry_hash` is SHA-256 over the previous entry's hash and
//!    the canonical encoding of all its other fields (below). Editing a field breaks that
//!    entry's hash; deleting or reordering rows breaks the `seq` sequence or a `prev_hash`
//!    link. SQL triggers refuse `UPDATE` and `DELETE`, but an attacker with the file can drop
//!    them: the chain is what catches the edit. On its own it does not catch an attacker who
//!    rewrites an entry and recomputes every hash after it, nor one who cuts off the tail.
//! 2. **An RFC 6962 Merkle tree** over the entries (an entry's leaf data is its `entry_hash`).
//!    Its root summarises the whole log in 32 bytes. Inclusion proofs show that one entry is
//!    in the log; consistency proofs show that an older log is a prefix of the newer one, so a
//!    root kept from earlier pins everything before it. The [`merkle`] module is pure and is
//!    tested against Certificate Transparency's published vectors.
//! 3. **Signed checkpoints.** After every append the log signs its tree head (size, root,
//!    time) with an Ed25519 key kept outside the database and writes it atomically to a file
//!    outside the database. A truncated tail shows as a log shorter than its checkpoint; a
//!    rewritten and re-chained history shows as a root that does not match the signed one.
//!    Without the key, neither can be hidden by editing the checkpoint.
//!
//! What it cannot catch: someone holding the signing key can rewrite anything and re-sign;
//! entries appended by someone with write access to the database after the last checkpoint
//! look like entries committed just before a crash, and the next checkpoint covers them. Copy
//! tree heads elsewhere (a backup, another machine) to pin history against the key holder too.
//!
//! [`AuditLog::open`] checks the cheap things (chain links, the checkpoint against the stored
//! hashes, a full rehash of entries the checkpoint does not cover yet); [`AuditLog::verify`]
//! recomputes everything and names the first bad place.
//!
//! # Example
//!
//! ```
//! use gyrus_audit::{AuditLog, Decision, EntryKind, NewEntry};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let home = dir.path();
//! let log = AuditLog::open(
//!     &home.join("memory/audit.db"),
//!     &home.join("user/audit.key"),
//!     &home.join("memory/audit.sth.json"),
//! )?;
//! let entry = log.append(NewEntry {
//!     request_id: "req-1".into(),
//!     kind: EntryKind::Decision,
//!     principal: "owner".into(),
//!     action: "fs.write".into(),
//!     decision: Some(Decision::Allow),
//!     reason: "the owner's grant covers it".into(),
//!     ..NewEntry::default()
//! })?;
//! assert_eq!(entry.seq, 1);
//! assert_eq!(log.by_request("req-1")?, vec![entry]);
//! log.inclusion_proof(1, log.len())?.verify()?;
//! assert!(log.verify()?.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # Files and formats
//!
//! **`memory/audit.db`**: SQLite, WAL mode, schema version 1 (`PRAGMA user_version`). One
//! table, `entries`, with the columns of [`Entry`] (`seq` is the `INTEGER PRIMARY KEY`,
//! `time` is Unix milliseconds, `kind` and `decision` are their lower-case names with `''` for
//! no decision, `policies` a JSON array, `detail` a JSON object, the two hashes 32-byte
//! blobs) and an index on `(request_id, seq)`.
//!
//! **Canonical encoding** (format version 1) of an entry:
//!
//! ```text
//! entry_hash = SHA-256(prev_hash || body)
//! body       = 0x01                                   format version
//!           || u64be(seq) || i64be(time)
//!           || str(request_id) || str(kind) || str(principal) || str(action)
//!           || str(resource) || str(args_digest) || str(intent) || str(intent_source)
//!           || opt(grant_id) || str(policies) || str(decision) || str(reason)
//!           || opt(outcome) || opt(undo_ref) || opt(tier) || opt(cortex) || str(detail)
//! str(s)     = u64be(byte length of s) || the UTF-8 bytes of s
//! opt(None)  = 0x00
//! opt(s)     = 0x01 || str(s)
//! ```
//!
//! Each field is the exact text stored in its column (`policies` and `detail` as the JSON
//! text written at append time). `prev_hash` is 32 zero bytes for entry 1. The length
//! prefixes make the encoding injective. The Merkle leaf hash of an entry is
//! `SHA-256(0x00 || entry_hash)`.
//!
//! **`memory/audit.sth.json`**: the latest [`SignedTreeHead`] as JSON (`tree_size`,
//! `root_hash`, `timestamp` in Unix milliseconds, `public_key`, `signature`; hex), replaced
//! with `gyrus_home::write_atomic` (mode 0600) after every commit. The signature is Ed25519
//! over the 60 bytes `b"gyrus-sth-v1" || u64be(tree_size) || u64be(timestamp) || root`.
//!
//! **`user/audit.key`**: the 32-byte Ed25519 seed, raw or as 64 hex characters; created as
//! hex plus a newline, mode 0600. A key file other users can read is refused.

#![forbid(unsafe_code)]

mod db;
mod entry;
mod error;
pub mod hex;
mod key;
mod log;
pub mod merkle;
mod proof;
mod sth;
mod verify;

pub use entry::{Decision, Entry, EntryKind, NewEntry, args_digest, canonical_json};
pub use error::AuditError;
pub use log::{AuditLog, Durability};
pub use merkle::{Hash, ProofError, verify_consistency, verify_inclusion};
pub use proof::{ConsistencyProof, InclusionProof};
pub use sth::{STH_CONTEXT, SignedTreeHead, SthError};
pub use verify::{BadEntry, VerifyReport};
