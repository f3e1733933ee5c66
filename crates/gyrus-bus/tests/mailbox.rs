//! Durable mailboxes across restarts: a real SQLite file, closed and opened again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use gyrus_bus::{Envelope, Mailboxes, Pattern, Subject};
use pretty_assertions::assert_eq;
use serde_json::json;

const LONG: Duration = Duration::from_secs(600);

fn task(n: i64) -> Envelope {
    Envelope::builder(Subject::new("ops.disk.cleanup").unwrap(), "owner")
        .to("agent:ag_cleaner")
        .payload(json!({ "n": n }))
        .build()
        .unwrap()
}

fn open(path: &Path) -> Mailboxes {
    Mailboxes::open(path).unwrap()
}

#[test]
fn mail_for_a_stopped_agent_waits_until_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.db");
    let sent = {
        // The daemon runs; the agent is stopped: nobody fetches.
        let boxes = open(&path);
        let sent: Vec<Envelope> = (0..3).map(task).collect();
        for envelope in &sent {
            boxes.enqueue("agent:ag_cleaner", envelope).unwrap();
        }
        sent
    };
    // The daemon restarts; the agent starts and reads its mail.
    let boxes = open(&path);
    assert_eq!(boxes.pending("agent:ag_cleaner").unwrap(), 3);
    let got = boxes
        .fetch(
            "agent:ag_cleaner",
            Some(&Pattern::new("ops.>").unwrap()),
            10,
            LONG,
        )
        .unwrap();
    let envelopes: Vec<Envelope> = got.iter().map(|d| d.envelope.clone()).collect();
    assert_eq!(envelopes, sent, "whole envelopes come back, in order");
}

#[test]
fn an_acknowledged_message_is_never_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.db");
    {
        let boxes = open(&path);
        boxes.enqueue("agent:a", &task(1)).unwrap();
        boxes.enqueue("agent:a", &task(2)).unwrap();
        let got = boxes.fetch("agent:a", None, 1, Duration::ZERO).unwrap();
        assert_eq!(got[0].envelope.payload["n"], 1);
        assert!(boxes.ack("agent:a", got[0].id).unwrap());
        // Even with its lease long gone, it does not come back.
        std::thread::sleep(Duration::from_millis(5));
        let again = boxes.fetch("agent:a", None, 10, LONG).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].envelope.payload["n"], 2);
        assert!(boxes.ack("agent:a", again[0].id).unwrap());
    }
    let boxes = open(&path);
    assert!(boxes.fetch("agent:a", None, 10, LONG).unwrap().is_empty());
    assert_eq!(boxes.pending("agent:a").unwrap(), 0);
}

#[test]
fn an_unacknowledged_message_comes_back_after_its_lease_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.db");
    let id = {
        let boxes = open(&path);
        let id = boxes.enqueue("agent:a", &task(7)).unwrap();
        let first = boxes
            .fetch("agent:a", None, 10, Duration::from_millis(200))
            .unwrap();
        assert_eq!((first[0].id, first[0].attempts), (id, 1));
        // Leased: not handed out again yet.
        assert!(boxes.fetch("agent:a", None, 10, LONG).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(450));
        // The receiver died without acking: the lease ran out, so it comes back.
        let second = boxes
            .fetch("agent:a", None, 10, Duration::from_millis(100))
            .unwrap();
        assert_eq!((second[0].id, second[0].attempts), (id, 2));
        id
    };
    // After a restart, once the last lease is over, it comes back again.
    std::thread::sleep(Duration::from_millis(150));
    let boxes = open(&path);
    let third = boxes.fetch("agent:a", None, 10, LONG).unwrap();
    assert_eq!((third[0].id, third[0].attempts), (id, 3));
    assert_eq!(third[0].envelope.payload["n"], 7);
    assert!(boxes.ack("agent:a", id).unwrap());
}

#[test]
fn a_lease_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.db");
    {
        let boxes = open(&path);
        boxes.enqueue("agent:a", &task(1)).unwrap();
        assert_eq!(boxes.fetch("agent:a", None, 10, LONG).unwrap().len(), 1);
    }
    let boxes = open(&path);
    assert!(boxes.fetch("agent:a", None, 10, LONG).unwrap().is_empty());
    assert_eq!(boxes.pending("agent:a").unwrap(), 1);
}
