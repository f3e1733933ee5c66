//! What `enqueue` acknowledged survives `kill -9`.
//!
//! The test re-runs this test binary as a child (`child_writer`, which does nothing unless
//! `GYRUS_BUS_CHILD` names a database). The child enqueues as fast as it can and prints
//! `acked N` after each commit; the parent kills it mid-stream with SIGKILL, reopens the file
//! and checks every acknowledged message is there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gyrus_bus::{Envelope, Mailboxes, Subject};
use serde_json::json;

const CHILD_ENV: &str = "GYRUS_BUS_CHILD";
const RECIPIENT: &str = "agent:ag_durable";

fn envelope(n: u64) -> Envelope {
    Envelope::new(
        Subject::new("test.durability").unwrap(),
        "owner",
        json!({ "n": n, "pad": "x".repeat(200) }),
    )
    .unwrap()
}

/// The child: writes until killed. A no-op in an ordinary test run.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let boxes = Mailboxes::open(Path::new(&path)).unwrap();
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        if n.is_multiple_of(10) {
            // Every tenth round, a batch of five in one transaction.
            let batch: Vec<(&str, Envelope)> =
                (n..n + 5).map(|i| (RECIPIENT, envelope(i))).collect();
            boxes.enqueue_batch(&batch).unwrap();
            for i in n..n + 5 {
                writeln!(out, "acked {i}").unwrap();
            }
            n += 5;
        } else {
            boxes.enqueue(RECIPIENT, &envelope(n)).unwrap();
            writeln!(out, "acked {n}").unwrap();
            n += 1;
        }
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_enqueues_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = HashSet::new();
    let started = Instant::now();
    // Let it get going, then kill it mid-stream.
    while acked.len() < 2_000 {
        let line = lines
            .next()
            .expect("the child stopped before writing enough")
            .unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked.insert(n.parse::<u64>().unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child is too slow"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines it printed before it died are acknowledgements too.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            acked.insert(n.parse::<u64>().unwrap());
        }
    }

    let boxes = Mailboxes::open(&path).unwrap();
    let stored: HashSet<u64> = boxes
        .fetch(RECIPIENT, None, usize::MAX, Duration::from_secs(60))
        .unwrap()
        .iter()
        .map(|d| d.envelope.payload["n"].as_u64().unwrap())
        .collect();
    eprintln!("acknowledged {}, stored {}", acked.len(), stored.len());
    let lost: Vec<u64> = acked.difference(&stored).copied().collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() >= acked.len());
    // Anything committed but not yet announced is whole, and nothing was invented.
    assert!(stored.iter().all(|n| *n < acked.len() as u64 + 5));
}
