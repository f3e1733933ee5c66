//! Full verification of a log: recompute every hash, walk the chain, check the checkpoint.
//!
//! Verification streams the table in `seq` order and keeps only an O(log n) Merkle frontier,
//! so it never holds more than one row at a time.

use std::fmt;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};

use crate::entry::Columns;
use crate::hex;
use crate::merkle::{self, Frontier, Hash};
use crate::sth::SignedTreeHead;

/// The first problem verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadEntry {
    /// The first entry that cannot be trusted; `None` when the problem is not tied to one entry
    /// (a missing or forged checkpoint, or a rewritten history that only the root reveals).
    pub seq: Option<u64>,
    /// What is wrong, as a sentence.
    pub reason: String,
}

impl BadEntry {
    fn at(seq: u64, reason: impl Into<String>) -> Self {
        Self {
            seq: Some(seq),
            reason: reason.into(),
        }
    }

    fn log(reason: impl Into<String>) -> Self {
        Self {
            seq: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The result of [`crate::AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How many entries were checked and found good, from entry 1 on.
    pub entries: u64,
    /// The root of those entries, recomputed from their content, hex.
    pub root_hash: String,
    /// The checkpoint the log was checked against, if there is one.
    pub checkpoint: Option<SignedTreeHead>,
    /// The first problem found; `None` if the log is intact.
    pub first_bad: Option<BadEntry>,
}

impl VerifyReport {
    /// Whether the log passed every check.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Every column, in the order [`check_row`] and `entry_from_row` read them.
pub(crate) const COLUMNS: &str = "seq, time, request_id, kind, principal, action, resource, \
    args_digest, intent, intent_source, grant_id, policies, decision, reason, outcome, \
    undo_ref, tier, cortex, detail, prev_hash, entry_hash";

pub(crate) const COLUMN_NAMES: [&str; 21] = [
    "seq",
    "time",
    "request_id",
    "kind",
    "principal",
    "action",
    "resource",
    "args_digest",
    "intent",
    "intent_source",
    "grant_id",
    "policies",
    "decision",
    "reason",
    "outcome",
    "undo_ref",
    "tier",
    "cortex",
    "detail",
    "prev_hash",
    "entry_hash",
];

/// The result of scanning entries in order.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The last entry found good.
    pub last_seq: u64,
    /// Its hash (the `prev_hash` the next entry must carry).
    pub last_hash: Hash,
    /// The first problem, if any; scanning stops there.
    pub first_bad: Option<BadEntry>,
}

/// Scans the entries after `after_seq` in order, checking that `seq`s are contiguous, that each
/// `prev_hash` is the previous entry's hash (`prev_hash` for the first), and that each stored
/// `entry_hash` matches the entry's content. Calls `on_entry` with each good entry's hash.
pub(crate) fn scan(
    conn: &Connection,
    after_seq: u64,
    prev_hash: Hash,
    mut on_entry: impl FnMut(&Hash),
) -> rusqlite::Result<Scan> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM entries WHERE seq > ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([i64::try_from(after_seq).unwrap_or(i64::MAX)])?;
    let mut scan = Scan {
        last_seq: after_seq,
        last_hash: prev_hash,
        first_bad: None,
    };
    while let Some(row) = rows.next()? {
        match check_row(row, scan.last_seq + 1, &scan.last_hash) {
            Ok(hash) => {
                on_entry(&hash);
                scan.last_seq += 1;
                scan.last_hash = hash;
            }
            Err(bad) => {
                scan.first_bad = Some(bad);
                break;
            }
        }
    }
    Ok(scan)
}

fn text<'a>(row: &'a Row<'_>, seq: u64, index: usize) -> Result<&'a str, BadEntry> {
    let name = COLUMN_NAMES[index];
    match row.get_ref(index) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map_err(|_| BadEntry::at(seq, format!("entry {seq}: column {name} is not UTF-8"))),
        Ok(other) => Err(BadEntry::at(
            seq,
            format!(
                "entry {seq}: column {name} holds {:?}, not text",
                other.data_type()
            ),
        )),
        Err(err) => Err(BadEntry::at(
            seq,
            format!("entry {seq}: column {name}: {err}"),
        )),
    }
}

fn optional_text<'a>(
    row: &'a Row<'_>,
    seq: u64,
    index: usize,
) -> Result<Option<&'a str>, BadEntry> {
    match row.get_ref(index) {
        Ok(ValueRef::Null) => Ok(None),
        _ => text(row, seq, index).map(Some),
    }
}

fn hash_column(row: &Row<'_>, seq: u64, index: usize) -> Result<Hash, BadEntry> {
    let name = COLUMN_NAMES[index];
    match row.get_ref(index) {
        Ok(ValueRef::Blob(bytes)) => bytes.try_into().map_err(|_| {
            BadEntry::at(
                seq,
                format!("entry {seq}: {name} is {} bytes, not 32", bytes.len()),
            )
        }),
        _ => Err(BadEntry::at(
            seq,
            format!("entry {seq}: {name} is not a 32-byte blob"),
        )),
    }
}

/// Checks one row that should be entry `expected`, following an entry whose hash is `prev`;
/// returns the entry's hash, recomputed from its content.
fn check_row(row: &Row<'_>, expected: u64, prev: &Hash) -> Result<Hash, BadEntry> {
    let seq = match row.get_ref(0) {
        Ok(ValueRef::Integer(seq)) => seq,
        _ => {
            return Err(BadEntry::at(
                expected,
                format!("entry {expected}: seq is not an integer"),
            ));
        }
    };
    if seq != i64::try_from(expected).unwrap_or(i64::MAX) {
        return Err(missing_entry(expected, seq));
    }
    let seq = expected;
    if hash_column(row, seq, 19)? != *prev {
        return Err(broken_link(seq));
    }
    let time = match row.get_ref(1) {
        Ok(ValueRef::Integer(time)) => time,
        _ => {
            return Err(BadEntry::at(
                seq,
                format!("entry {seq}: time is not an integer"),
            ));
        }
    };
    let columns = Columns {
        seq,
        time,
        request_id: text(row, seq, 2)?,
        kind: text(row, seq, 3)?,
        principal: text(row, seq, 4)?,
        action: text(row, seq, 5)?,
        resource: text(row, seq, 6)?,
        args_digest: text(row, seq, 7)?,
        intent: text(row, seq, 8)?,
        intent_source: text(row, seq, 9)?,
        grant_id: optional_text(row, seq, 10)?,
        policies: text(row, seq, 11)?,
        decision: text(row, seq, 12)?,
        reason: text(row, seq, 13)?,
        outcome: optional_text(row, seq, 14)?,
        undo_ref: optional_text(row, seq, 15)?,
        tier: optional_text(row, seq, 16)?,
        cortex: optional_text(row, seq, 17)?,
        detail: text(row, seq, 18)?,
    };
    let hash = columns.hash(prev);
    if hash_column(row, seq, 20)? != hash {
        return Err(BadEntry::at(
            seq,
            format!("entry {seq}: stored hash does not match its content: a field was edited"),
        ));
    }
    Ok(hash)
}

/// Entry `expected` is not where it should be: the row found there has `seq`.
pub(crate) fn missing_entry(expected: u64, seq: i64) -> BadEntry {
    let reason = if seq < 1 {
        format!("a row has seq {seq}: sequence numbers start at 1")
    } else if expected == 1 {
        format!("entry 1 is missing (the log starts at seq {seq})")
    } else {
        format!(
            "entry {expected} is missing (seq jumps from {} to {seq})",
            expected - 1
        )
    };
    BadEntry::at(expected, reason)
}

/// Entry `seq`'s `prev_hash` is not the previous entry's hash.
pub(crate) fn broken_link(seq: u64) -> BadEntry {
    let reason = if seq == 1 {
        "entry 1: its prev_hash is not 32 zero bytes: entries were inserted before it or \
         rewritten"
            .to_owned()
    } else {
        format!(
            "entry {seq}: its prev_hash is not the hash of entry {}: entries were reordered, \
             replaced or rewritten",
            seq - 1
        )
    };
    BadEntry::at(seq, reason)
}

/// How the checkpoint file looked when verification started.
#[derive(Debug)]
pub(crate) enum CheckpointState {
    /// There is no checkpoint file.
    Missing,
    /// The file exists but cannot be read or parsed.
    Unreadable(String),
    /// The file holds a tree head.
    Present(SignedTreeHead),
}

/// Verifies every entry of `conn` and the checkpoint, which the caller must have read *before*
/// calling (appends write the checkpoint after committing, so a checkpoint read first never
/// covers more entries than the database then holds, unless entries were removed).
pub(crate) fn verify_database(
    conn: &Connection,
    checkpoint: CheckpointState,
    checkpoint_name: &str,
    public_key: &str,
) -> rusqlite::Result<VerifyReport> {
    let target = match &checkpoint {
        CheckpointState::Present(sth) => Some(sth.tree_size),
        _ => None,
    };
    let mut frontier = Frontier::new();
    let mut root_at_checkpoint = (target == Some(0)).then(merkle::empty_root);
    let scan = scan(conn, 0, [0; 32], |hash| {
        frontier.push(merkle::leaf_hash(hash));
        if Some(frontier.size()) == target {
            root_at_checkpoint = Some(frontier.root());
        }
    })?;
    let entries = scan.last_seq;
    let first_bad = scan.first_bad.or_else(|| match &checkpoint {
        CheckpointState::Missing if entries > 0 => Some(BadEntry::log(format!(
            "the signed checkpoint {checkpoint_name} is missing but the log has {entries} \
             entries: it was deleted"
        ))),
        CheckpointState::Missing => None,
        CheckpointState::Unreadable(reason) => Some(BadEntry::log(format!(
            "the signed checkpoint {checkpoint_name} is unusable: {reason}"
        ))),
        CheckpointState::Present(sth) => {
            check_checkpoint(sth, entries, root_at_checkpoint, public_key)
        }
    });
    let checkpoint = match checkpoint {
        CheckpointState::Present(sth) => Some(sth),
        _ => None,
    };
    Ok(VerifyReport {
        entries,
        root_hash: hex::encode(&frontier.root()),
        checkpoint,
        first_bad,
    })
}

/// Checks a tree head against a log of `entries` good entries whose first `sth.tree_size`
/// entries have root `root_at_size` (`None` if the log is shorter than that).
pub(crate) fn check_checkpoint(
    sth: &SignedTreeHead,
    entries: u64,
    root_at_size: Option<Hash>,
    public_key: &str,
) -> Option<BadEntry> {
    if let Err(err) = sth.verify(public_key) {
        return Some(BadEntry::log(format!(
            "the signed checkpoint is not valid: {err}; it was forged or replaced"
        )));
    }
    if sth.tree_size > entries {
        return Some(BadEntry::at(
            entries + 1,
            format!(
                "the log has {entries} entries but the signed checkpoint covers {}: the tail was \
                 truncated",
                sth.tree_size
            ),
        ));
    }
    let matches = match (sth.root(), root_at_size) {
        (Ok(expected), Some(actual)) => expected == actual,
        _ => false,
    };
    if !matches {
        return Some(BadEntry::log(format!(
            "the first {} entries do not match the root hash of the signed checkpoint: entries \
             up to {} were rewritten",
            sth.tree_size, sth.tree_size
        )));
    }
    None
}
