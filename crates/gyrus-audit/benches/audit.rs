//! Audit log throughput and verification time.
//!
//! `cargo bench -p gyrus-audit --bench audit` runs the full version: 2,000 single appends (with
//! each durability), 200,000 appends in batches of 1,000, and `verify` of a 1,000,000-entry log.
//! Without `--bench` (as `cargo test --benches` runs it) it runs a tiny version. It reports
//! numbers against the targets and asserts nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use gyrus_audit::{AuditLog, Decision, Durability, EntryKind, NewEntry, args_digest};
use serde_json::json;

struct Sizes {
    singles: u64,
    batched: u64,
    batch: u64,
    verify: u64,
}

const FULL: Sizes = Sizes {
    singles: 2_000,
    batched: 200_000,
    batch: 1_000,
    verify: 1_000_000,
};

const QUICK: Sizes = Sizes {
    singles: 20,
    batched: 2_000,
    batch: 1_000,
    verify: 5_000,
};

const BATCHED_TARGET: f64 = 20_000.0;
const VERIFY_TARGET: Duration = Duration::from_secs(5);

fn entry(i: u64) -> NewEntry {
    NewEntry {
        request_id: format!("0190a6b2-7c1e-7d3a-9f2e-{i:012x}"),
        kind: if i.is_multiple_of(2) {
            EntryKind::Decision
        } else {
            EntryKind::Outcome
        },
        principal: "token:laptop".into(),
        action: "fs.write".into(),
        resource: format!("/home/me/notes/{i}.md"),
        args_digest: args_digest(&json!({ "path": i, "mode": "append" })),
        intent: "keep today's notes".into(),
        intent_source: "owner".into(),
        grant_id: Some("grant-42".into()),
        policies: vec!["default-deny".into(), "owner-files".into()],
        decision: i.is_multiple_of(2).then_some(Decision::Allow),
        reason: "grant-42 allows fs.write under /home/me/notes".into(),
        outcome: (!i.is_multiple_of(2)).then(|| "ok: 812 bytes written".to_owned()),
        undo_ref: None,
        tier: None,
        cortex: None,
        detail: json!({ "bytes": 812 }).as_object().cloned().unwrap(),
    }
}

fn open(dir: &Path, durability: Durability) -> AuditLog {
    AuditLog::open_with(
        &dir.join("memory/audit.db"),
        &dir.join("user/audit.key"),
        &dir.join("memory/audit.sth.json"),
        durability,
    )
    .unwrap()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn singles(sizes: &Sizes, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), durability);
    let start = Instant::now();
    for i in 0..sizes.singles {
        log.append(entry(i)).unwrap();
    }
    let took = start.elapsed();
    println!(
        "single append, synchronous={:<6}  {:>9} entries in {:>7.3} s = {:>9.0} /s ({:.0} us each)",
        format!("{durability:?}").to_uppercase(),
        sizes.singles,
        took.as_secs_f64(),
        sizes.singles as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / sizes.singles as f64,
    );
}

fn checkpoint_alone(sizes: &Sizes) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Full);
    log.append(entry(0)).unwrap();
    let path = dir.path().join("memory/bench.sth.json");
    let start = Instant::now();
    for _ in 0..sizes.singles {
        let sth = log.tree_head().unwrap();
        gyrus_home::write_atomic(&path, &serde_json::to_vec_pretty(&sth).unwrap(), 0o600).unwrap();
    }
    let took = start.elapsed();
    println!(
        "checkpoint alone (sign + atomic write) {:>5} times in {:>7.3} s = {:>9.0} us each",
        sizes.singles,
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / sizes.singles as f64,
    );
}

/// Appends `total` entries in batches; returns the time taken.
fn fill(log: &AuditLog, total: u64, batch: u64) -> Duration {
    let start = Instant::now();
    let mut next = log.len();
    while next < total {
        let end = (next + batch).min(total);
        log.append_batch((next..end).map(entry).collect()).unwrap();
        next = end;
    }
    start.elapsed()
}

fn batched(sizes: &Sizes) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Full);
    let took = fill(&log, sizes.batched, sizes.batch);
    let rate = sizes.batched as f64 / took.as_secs_f64();
    println!(
        "batched append ({} per batch)     {:>9} entries in {:>7.3} s = {:>9.0} /s   target >= {:.0}/s: {}",
        sizes.batch,
        sizes.batched,
        took.as_secs_f64(),
        rate,
        BATCHED_TARGET,
        verdict(rate >= BATCHED_TARGET),
    );
}

fn verify(sizes: &Sizes) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Full);
    let built = fill(&log, sizes.verify, sizes.batch);
    println!(
        "build log (batches of {})         {:>9} entries in {:>7.3} s = {:>9.0} /s",
        sizes.batch,
        sizes.verify,
        built.as_secs_f64(),
        sizes.verify as f64 / built.as_secs_f64(),
    );
    drop(log);
    let db_bytes = std::fs::metadata(dir.path().join("memory/audit.db"))
        .map(|m| m.len())
        .unwrap_or(0);

    let start = Instant::now();
    let log = open(dir.path(), Durability::Full);
    println!(
        "open (load hashes, check chain links and checkpoint) {:>7.3} s  (database {:.0} MB)",
        start.elapsed().as_secs_f64(),
        db_bytes as f64 / 1e6,
    );

    let start = Instant::now();
    let report = log.verify().unwrap();
    let took = start.elapsed();
    assert!(report.is_ok(), "{report:?}");
    println!(
        "verify                          {:>9} entries in {:>7.3} s = {:>9.0} /s   target <= {} s: {}",
        report.entries,
        took.as_secs_f64(),
        report.entries as f64 / took.as_secs_f64(),
        VERIFY_TARGET.as_secs(),
        verdict(took <= VERIFY_TARGET),
    );

    let start = Instant::now();
    let n = log.len();
    for seq in (1..=n).step_by((n / 100).max(1) as usize) {
        log.inclusion_proof(seq, n).unwrap().verify().unwrap();
    }
    println!(
        "inclusion proof + verify at size {n}: {:.0} us each",
        start.elapsed().as_secs_f64() * 1e6 / 100.0
    );
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let sizes = if full { FULL } else { QUICK };
    println!(
        "gyrus-audit bench ({})",
        if full {
            "full"
        } else {
            "quick: run `cargo bench -p gyrus-audit --bench audit` for real numbers"
        }
    );
    singles(&sizes, Durability::Full);
    singles(&sizes, Durability::Normal);
    checkpoint_alone(&sizes);
    batched(&sizes);
    verify(&sizes);
}
