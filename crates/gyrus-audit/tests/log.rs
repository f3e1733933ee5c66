//! The audit log through its public interface, on real SQLite files in a temporary home;
//! tampering is done the way an attacker would: a second SQLite connection that drops the
//! append-only triggers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gyrus_audit::{
    AuditError, AuditLog, Decision, EntryKind, NewEntry, SignedTreeHead, args_digest,
};
use pretty_assertions::assert_eq;
use rusqlite::Connection;
use serde_json::json;

struct Home {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PathBuf,
    checkpoint: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Self {
            _dir: dir,
            db: root.join("memory/audit.db"),
            key: root.join("user/audit.key"),
            checkpoint: root.join("memory/audit.sth.json"),
        }
    }

    fn open(&self) -> Result<AuditLog, AuditError> {
        AuditLog::open(&self.db, &self.key, &self.checkpoint)
    }

    /// A connection of the attacker's, with the append-only triggers dropped.
    fn attacker(&self) -> Connection {
        let conn = Connection::open(&self.db).unwrap();
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS entries_no_update; DROP TRIGGER IF EXISTS entries_no_delete;",
        )
        .unwrap();
        conn
    }

    fn checkpoint(&self) -> SignedTreeHead {
        serde_json::from_slice(&fs::read(&self.checkpoint).unwrap()).unwrap()
    }
}

fn decision(i: u64) -> NewEntry {
    NewEntry {
        request_id: format!("req-{}", i / 2),
        kind: if i.is_multiple_of(2) {
            EntryKind::Decision
        } else {
            EntryKind::Outcome
        },
        principal: "owner".into(),
        action: "fs.write".into(),
        resource: format!("/home/me/notes/{i}.md"),
        args_digest: args_digest(&json!({ "path": i })),
        intent: "keep my notes".into(),
        intent_source: "owner".into(),
        grant_id: Some("grant-1".into()),
        policies: vec!["default-deny".into(), "owner-files".into()],
        decision: i.is_multiple_of(2).then_some(Decision::Allow),
        reason: "the owner's grant covers notes".into(),
        outcome: (i % 2 == 1).then(|| "written".to_owned()),
        undo_ref: None,
        tier: None,
        cortex: None,
        detail: json!({ "n": i }).as_object().cloned().unwrap(),
    }
}

fn filled(n: u64) -> (Home, AuditLog) {
    let home = Home::new();
    let log = home.open().unwrap();
    log.append_batch((0..n).map(decision).collect()).unwrap();
    (home, log)
}

fn first_bad(log: &AuditLog) -> (Option<u64>, String) {
    let report = log.verify().unwrap();
    let bad = report
        .first_bad
        .expect("verify should have found a problem");
    (bad.seq, bad.reason)
}

#[test]
fn appends_read_back_and_chain() {
    let home = Home::new();
    let log = home.open().unwrap();
    assert!(log.is_empty());
    assert_eq!(
        home.checkpoint().tree_size,
        0,
        "a new log gets a checkpoint"
    );

    let first = log.append(decision(0)).unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev_hash, [0; 32]);
    let batch = log.append_batch((1..6).map(decision).collect()).unwrap();
    assert_eq!(
        batch.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(batch[0].prev_hash, first.entry_hash);
    for pair in batch.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].entry_hash);
    }
    assert!(log.append_batch(Vec::new()).unwrap().is_empty());
    assert_eq!(log.len(), 6);

    assert_eq!(log.get(1).unwrap().unwrap(), first);
    assert_eq!(log.get(4).unwrap().unwrap(), batch[2]);
    assert_eq!(log.get(0).unwrap(), None);
    assert_eq!(log.get(7).unwrap(), None);
    let tail = log.tail(2).unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(log.tail(100).unwrap().len(), 6);
    assert_eq!(log.range(2..=3).unwrap(), batch[..2].to_vec());
    let why = log.by_request("req-1").unwrap();
    assert_eq!(why.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(why[0].record.decision, Some(Decision::Allow));
    assert_eq!(why[1].record.outcome.as_deref(), Some("written"));
    assert_eq!(why[1].record.detail["n"], json!(3));

    let sth = home.checkpoint();
    assert_eq!(sth.tree_size, 6);
    sth.verify(log.public_key()).unwrap();
    assert_eq!(sth.root_hash, log.root_hash(6).unwrap());
    let head = log.tree_head().unwrap();
    assert_eq!((head.tree_size, &head.root_hash), (6, &sth.root_hash));

    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 6);
    assert_eq!(report.root_hash, sth.root_hash);
}

#[test]
fn files_get_private_modes() {
    let (home, _log) = filled(1);
    for path in [&home.db, &home.key, &home.checkpoint] {
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let key = fs::read_to_string(&home.key).unwrap();
    assert_eq!(key.trim().len(), 64, "the key is stored as hex");
}

#[test]
fn reopening_keeps_the_log_and_continues_the_chain() {
    let (home, log) = filled(5);
    let root = log.root_hash(5).unwrap();
    let last = log.get(5).unwrap().unwrap();
    drop(log);
    let log = home.open().unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log.root_hash(5).unwrap(), root);
    let next = log.append(decision(5)).unwrap();
    assert_eq!(next.seq, 6);
    assert_eq!(next.prev_hash, last.entry_hash);
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn triggers_refuse_updates_and_deletes() {
    let (home, _log) = filled(3);
    let conn = Connection::open(&home.db).unwrap();
    for sql in [
        "UPDATE entries SET reason = 'nothing to see' WHERE seq = 2",
        "DELETE FROM entries WHERE seq = 3",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(
            err.to_string().contains("audit entries are append-only"),
            "{sql}: {err}"
        );
    }
}

#[test]
fn an_edited_field_is_named() {
    let (home, log) = filled(30);
    home.attacker()
        .execute(
            "UPDATE entries SET reason = 'the owner asked' WHERE seq = 17",
            [],
        )
        .unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, Some(17));
    assert_eq!(
        reason,
        "entry 17: stored hash does not match its content: a field was edited"
    );
    // Opening checks only the stored hashes, so this edit needs the full verify.
    drop(log);
    let log = home.open().unwrap();
    assert_eq!(first_bad(&log).0, Some(17));
}

#[test]
fn an_edit_of_a_nullable_field_is_named() {
    let (home, log) = filled(10);
    home.attacker()
        .execute("UPDATE entries SET grant_id = NULL WHERE seq = 4", [])
        .unwrap();
    assert_eq!(first_bad(&log).0, Some(4));
}

#[test]
fn a_deleted_row_is_named() {
    let (home, log) = filled(30);
    home.attacker()
        .execute("DELETE FROM entries WHERE seq = 17", [])
        .unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, Some(17));
    assert_eq!(reason, "entry 17 is missing (seq jumps from 16 to 18)");
    drop(log);
    let err = home.open().unwrap_err();
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("entry 17 is missing"), "{err}");
}

#[test]
fn swapped_rows_are_named() {
    let (home, log) = filled(30);
    // Swap entries 5 and 6 together with their seqs: 6's content now sits at seq 5.
    home.attacker()
        .execute_batch(
            "UPDATE entries SET seq = -6 WHERE seq = 6;
             UPDATE entries SET seq = 6 WHERE seq = 5;
             UPDATE entries SET seq = 5 WHERE seq = -6;",
        )
        .unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, Some(5));
    assert_eq!(
        reason,
        "entry 5: its prev_hash is not the hash of entry 4: entries were reordered, replaced or \
         rewritten"
    );
}

#[test]
fn a_truncated_tail_is_named() {
    let (home, log) = filled(100);
    home.attacker()
        .execute("DELETE FROM entries WHERE seq > 90", [])
        .unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, Some(91));
    assert_eq!(
        reason,
        "the log has 90 entries but the signed checkpoint covers 100: the tail was truncated"
    );
    drop(log);
    let err = home.open().unwrap_err();
    assert!(
        err.to_string()
            .contains("the log has 90 entries but the signed checkpoint covers 100"),
        "{err}"
    );
    // The offline check says the same.
    let report = AuditLog::verify_files(&home.db, &home.key, &home.checkpoint).unwrap();
    assert_eq!(report.first_bad.unwrap().seq, Some(91));
}

#[test]
fn a_rewritten_and_rechained_history_is_caught_by_the_checkpoint() {
    let (home, log) = filled(20);
    drop(log);
    // The attacker builds a consistent log of their own, with entry 3 changed, under their own
    // key, and puts its database in place of ours; they cannot re-sign our checkpoint.
    let forged = Home::new();
    let forger = forged.open().unwrap();
    let mut entries: Vec<NewEntry> = (0..20).map(decision).collect();
    entries[2].reason = "nothing happened".into();
    forger.append_batch(entries).unwrap();
    drop(forger);
    fs::copy(&forged.db, &home.db).unwrap();
    let _ = fs::remove_file(home.db.with_extension("db-wal"));
    let _ = fs::remove_file(home.db.with_extension("db-shm"));

    let report = AuditLog::verify_files(&home.db, &home.key, &home.checkpoint).unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.seq, None);
    assert_eq!(
        bad.reason,
        "the first 20 entries do not match the root hash of the signed checkpoint: entries up \
         to 20 were rewritten"
    );
    assert!(matches!(home.open(), Err(AuditError::Tampered { .. })));
}

#[test]
fn a_forged_or_deleted_checkpoint_is_named() {
    let (home, log) = filled(10);
    // Signed by someone else.
    let forged = Home::new();
    forged.open().unwrap().append(decision(0)).unwrap();
    fs::copy(&forged.checkpoint, &home.checkpoint).unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, None);
    assert!(
        reason.contains("the signed checkpoint is not valid: it was signed by key"),
        "{reason}"
    );

    // Our key, but the size edited.
    let mut sth = log.tree_head().unwrap();
    sth.tree_size = 5;
    fs::write(&home.checkpoint, serde_json::to_vec(&sth).unwrap()).unwrap();
    let (_, reason) = first_bad(&log);
    assert!(
        reason.contains("its signature does not match its content"),
        "{reason}"
    );

    fs::remove_file(&home.checkpoint).unwrap();
    let (seq, reason) = first_bad(&log);
    assert_eq!(seq, None);
    assert!(
        reason.contains("is missing but the log has 10 entries"),
        "{reason}"
    );
    drop(log);
    assert!(matches!(home.open(), Err(AuditError::Tampered { .. })));
}

#[test]
fn a_crash_between_commit_and_checkpoint_is_recovered_on_open() {
    let (home, log) = filled(5);
    let old = fs::read(&home.checkpoint).unwrap();
    log.append_batch((5..8).map(decision).collect()).unwrap();
    drop(log);
    // As if the process died after the commit, before the checkpoint was replaced.
    fs::write(&home.checkpoint, &old).unwrap();
    let log = home.open().unwrap();
    assert_eq!(
        home.checkpoint().tree_size,
        8,
        "open re-signs the uncovered tail"
    );
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn an_edit_in_the_uncovered_tail_is_caught_on_open() {
    let (home, log) = filled(5);
    let old = fs::read(&home.checkpoint).unwrap();
    log.append_batch((5..8).map(decision).collect()).unwrap();
    drop(log);
    fs::write(&home.checkpoint, &old).unwrap();
    home.attacker()
        .execute("UPDATE entries SET principal = 'agent' WHERE seq = 7", [])
        .unwrap();
    let err = home.open().unwrap_err();
    assert!(
        err.to_string()
            .contains("entry 7: stored hash does not match its content"),
        "{err}"
    );
}

#[test]
fn a_missing_key_is_not_silently_replaced() {
    let (home, log) = filled(2);
    drop(log);
    fs::remove_file(&home.key).unwrap();
    let err = home.open().unwrap_err();
    assert!(matches!(err, AuditError::Key { .. }), "{err}");
    assert!(
        err.to_string().contains("restore the key from a backup"),
        "{err}"
    );
    assert!(!home.key.exists());
}

#[test]
fn a_garbled_checkpoint_is_a_clear_error() {
    let (home, log) = filled(2);
    drop(log);
    fs::write(&home.checkpoint, "{").unwrap();
    let err = home.open().unwrap_err();
    assert!(matches!(err, AuditError::Checkpoint { .. }), "{err}");
}

#[test]
fn proofs_verify_against_the_signed_root() {
    let (home, log) = filled(21);
    let sth = home.checkpoint();
    for seq in 1..=21 {
        let proof = log.inclusion_proof(seq, 21).unwrap();
        assert_eq!(proof.root_hash, sth.root_hash);
        assert_eq!(
            proof.leaf_hash,
            gyrus_audit::hex::encode(&log.get(seq).unwrap().unwrap().leaf_hash())
        );
        proof.verify().unwrap();
        let mut wrong = proof.clone();
        wrong.seq = if seq == 21 { 1 } else { seq + 1 };
        assert!(wrong.verify().is_err());
    }
    for old in 0..=21 {
        let proof = log.consistency_proof(old, 21).unwrap();
        assert_eq!(proof.new_root, sth.root_hash);
        proof.verify().unwrap();
    }
    let mut proof = log.consistency_proof(7, 21).unwrap();
    proof.old_root = log.root_hash(8).unwrap();
    assert!(proof.verify().is_err());

    assert!(matches!(
        log.inclusion_proof(0, 21),
        Err(AuditError::OutOfRange(_))
    ));
    assert!(log.inclusion_proof(5, 22).is_err());
    assert!(log.consistency_proof(8, 7).is_err());
}

#[test]
fn concurrent_appends_stay_contiguous() {
    let (home, log) = filled(0);
    let log = Arc::new(log);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append(decision(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(log.len(), 100);
    assert!(log.verify().unwrap().is_ok());
    assert_eq!(home.checkpoint().tree_size, 100);
}

const CHILD_DIR: &str = "GYRUS_AUDIT_KILL_TEST_DIR";

/// Not a test on its own: the child process of `acknowledged_appends_survive_kill_9`. It
/// appends until it is killed, printing each acknowledged `seq`.
#[test]
fn kill_9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let log = AuditLog::open(
        &dir.join("audit.db"),
        &dir.join("audit.key"),
        &dir.join("audit.sth.json"),
    )
    .unwrap();
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let entry = log.append(decision(i)).unwrap();
        writeln!(out, "acked {}", entry.seq).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(seq) = line.strip_prefix("acked ") {
            acked = seq.parse().unwrap();
            if acked >= 50 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked >= 50, "the child stopped early");

    let log = AuditLog::open(
        &dir.path().join("audit.db"),
        &dir.path().join("audit.key"),
        &dir.path().join("audit.sth.json"),
    )
    .unwrap();
    assert!(
        log.len() >= acked,
        "lost acknowledged entries: {} < {acked}",
        log.len()
    );
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn entries_serialise_for_the_api() {
    let (_home, log) = filled(1);
    let entry = log.get(1).unwrap().unwrap();
    let value = serde_json::to_value(&entry).unwrap();
    assert_eq!(value["seq"], 1);
    assert_eq!(value["kind"], "decision");
    assert_eq!(value["policies"], json!(["default-deny", "owner-files"]));
    assert_eq!(value["entry_hash"].as_str().unwrap().len(), 64);
    let report = serde_json::to_value(log.verify().unwrap()).unwrap();
    assert_eq!(report["first_bad"], json!(null));
    let _: &Path = log.db_path();
}
