//! Throughput of the in-process bus, request/reply and the durable mailboxes.
//!
//! `cargo bench -p gyrus-bus --bench bus` measures; without `--bench` (as `cargo test
//! --benches` runs it) it does a tiny run to prove it works. No timing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gyrus_bus::{Bus, Durability, Envelope, Mailboxes, Pattern, Subject};
use serde_json::json;

/// In-process messages per second the bus must sustain (1 publisher, 1 subscriber, both tasks
/// on the runtime as in the daemon, a fresh envelope per message).
const TARGET_IN_PROCESS: f64 = 500_000.0;

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn report(what: &str, per_sec: f64, unit: &str, target: Option<f64>) {
    let verdict = match target {
        Some(t) if per_sec >= t => format!("   target >= {t:.0}/s: met"),
        Some(t) => format!("   target >= {t:.0}/s: MISSED"),
        None => String::new(),
    };
    println!("{what:<68} {per_sec:>12.0} {unit}/s{verdict}");
}

/// How the publisher runs.
#[derive(Clone, Copy, PartialEq)]
enum Publisher {
    /// A task on the runtime, like the daemon's request handlers; builds a fresh envelope per
    /// message.
    Task,
    /// A plain thread outside the runtime; builds a fresh envelope per message.
    Thread,
    /// A plain thread publishing one shared envelope again and again: the bus alone.
    ThreadShared,
}

/// One publisher, `subs` subscriber tasks; returns messages published per second, with the
/// clock stopped when every subscriber has received every message.
fn pubsub(rt: &tokio::runtime::Runtime, subs: usize, n: usize, publisher: Publisher) -> f64 {
    let bus = Bus::new();
    let receivers: Vec<_> = (0..subs)
        .map(|_| bus.subscribe(Pattern::new("bench.pubsub.literal").unwrap(), None, n))
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|mut sub| {
            rt.spawn(async move {
                let mut got = 0;
                while got < n {
                    sub.recv().await.unwrap();
                    got += 1;
                }
            })
        })
        .collect();
    let publish = move || {
        let intent = Subject::new("bench.pubsub.literal").unwrap();
        let shared =
            Arc::new(Envelope::new(intent.clone(), "agent:bench", json!({"n": 0})).unwrap());
        let mut dropped = 0;
        for i in 0..n {
            let d = if publisher == Publisher::ThreadShared {
                bus.publish_arc(shared.clone())
            } else {
                let e = Envelope::new(intent.clone(), "agent:bench", json!({ "n": i })).unwrap();
                bus.publish_arc(Arc::new(e))
            };
            dropped += d.dropped;
        }
        dropped
    };
    let dropped = match publisher {
        Publisher::Task => rt.block_on(rt.spawn(async move { publish() })).unwrap(),
        Publisher::Thread | Publisher::ThreadShared => publish(),
    };
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(dropped, 0);
    rate(n, elapsed)
}

/// Envelopes built (and dropped) per second, with no bus: the floor under "fresh envelope each".
fn build_only(n: usize) -> f64 {
    let intent = Subject::new("bench.pubsub.literal").unwrap();
    let started = Instant::now();
    for i in 0..n {
        let e = Envelope::new(intent.clone(), "agent:bench", json!({ "n": i })).unwrap();
        std::hint::black_box(e);
    }
    rate(n, started.elapsed())
}

/// Round trips per second with `concurrency` requesters and one responder.
fn request_reply(rt: &tokio::runtime::Runtime, n: usize, concurrency: usize) -> f64 {
    let bus = Bus::new();
    let mut handler = bus.subscribe(
        Pattern::new("bench.echo").unwrap(),
        Some("echo".into()),
        1024,
    );
    let responder = bus.clone();
    let serve = rt.spawn(async move {
        while let Some(req) = handler.recv().await {
            responder
                .respond(&req, req.payload.clone(), "agent:echo")
                .unwrap();
        }
    });
    let started = Instant::now();
    rt.block_on(async {
        let per = n / concurrency;
        let clients: Vec<_> = (0..concurrency)
            .map(|_| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    let intent = Subject::new("bench.echo").unwrap();
                    for i in 0..per {
                        let req = Envelope::new(intent.clone(), "agent:bench", json!({ "n": i }))
                            .unwrap();
                        bus.request(req, Duration::from_secs(10)).await.unwrap();
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    serve.abort();
    rate(n / concurrency * concurrency, elapsed)
}

fn message(n: usize) -> Envelope {
    Envelope::builder(Subject::new("ops.disk.cleanup").unwrap(), "owner")
        .to("agent:ag_bench")
        .payload(json!({ "n": n, "path": "/var/tmp", "older_than_days": 7 }))
        .build()
        .unwrap()
}

fn enqueue_single(durability: Durability, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open_with(&dir.path().join("mailboxes.db"), durability).unwrap();
    let messages: Vec<Envelope> = (0..n).map(message).collect();
    let started = Instant::now();
    for m in &messages {
        boxes.enqueue("agent:ag_bench", m).unwrap();
    }
    rate(n, started.elapsed())
}

fn enqueue_batches(durability: Durability, batches: usize, size: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open_with(&dir.path().join("mailboxes.db"), durability).unwrap();
    let batch: Vec<(&str, Envelope)> = (0..size).map(|i| ("agent:ag_bench", message(i))).collect();
    let started = Instant::now();
    for _ in 0..batches {
        boxes.enqueue_batch(&batch).unwrap();
    }
    rate(batches * size, started.elapsed())
}

/// Messages fetched and acknowledged per second, `page` at a time.
fn fetch_ack(n: usize, page: usize, ack_many: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(&dir.path().join("mailboxes.db")).unwrap();
    let batch: Vec<(&str, Envelope)> = (0..n).map(|i| ("agent:ag_bench", message(i))).collect();
    boxes.enqueue_batch(&batch).unwrap();
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let got = boxes
            .fetch("agent:ag_bench", None, page, Duration::from_secs(60))
            .unwrap();
        assert!(!got.is_empty());
        if ack_many {
            let ids: Vec<u64> = got.iter().map(|d| d.id).collect();
            assert_eq!(boxes.ack_many("agent:ag_bench", &ids).unwrap(), ids.len());
        } else {
            for d in &got {
                assert!(boxes.ack("agent:ag_bench", d.id).unwrap());
            }
        }
        done += got.len();
    }
    rate(n, started.elapsed())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // (in-process messages, round trips, single enqueues, FULL enqueues, batches, fetch+ack)
    let (msgs, trips, singles, full_singles, batches, fetched) = if full {
        (1_000_000, 100_000, 20_000, 1_000, 50, 20_000)
    } else {
        (1_000, 100, 50, 10, 1, 200)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "gyrus-bus bench ({}; {} CPUs)",
        if full { "full" } else { "quick" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Warm up the allocator and the runtime.
    pubsub(&rt, 1, msgs / 10, Publisher::Task);

    let target = Some(TARGET_IN_PROCESS);
    let one = "in-process 1 pub/1 sub, literal";
    report(
        &format!("{one}, publisher task, fresh envelopes"),
        pubsub(&rt, 1, msgs, Publisher::Task),
        "msg",
        target,
    );
    report(
        &format!("{one}, publisher thread, fresh envelopes"),
        pubsub(&rt, 1, msgs, Publisher::Thread),
        "msg",
        None,
    );
    report(
        &format!("{one}, publisher thread, shared envelope"),
        pubsub(&rt, 1, msgs, Publisher::ThreadShared),
        "msg",
        None,
    );
    let four = "in-process 1 pub/4 subs, literal";
    report(
        &format!("{four}, publisher task, fresh envelopes"),
        pubsub(&rt, 4, msgs / 4, Publisher::Task),
        "msg",
        None,
    );
    report(
        "envelope build alone (no bus)",
        build_only(msgs),
        "msg",
        None,
    );
    report(
        "request/reply, 1 requester, 1 responder",
        request_reply(&rt, trips / 5, 1),
        "round trip",
        None,
    );
    report(
        "request/reply, 16 requesters, 1 responder",
        request_reply(&rt, trips, 16),
        "round trip",
        None,
    );
    report(
        "mailbox enqueue, single, synchronous=NORMAL",
        enqueue_single(Durability::Process, singles),
        "msg",
        None,
    );
    report(
        "mailbox enqueue, single, synchronous=FULL",
        enqueue_single(Durability::PowerLoss, full_singles),
        "msg",
        None,
    );
    report(
        "mailbox enqueue, batches of 1000, synchronous=NORMAL",
        enqueue_batches(Durability::Process, batches, 1000),
        "msg",
        None,
    );
    report(
        "mailbox enqueue, batches of 1000, synchronous=FULL",
        enqueue_batches(Durability::PowerLoss, batches / 5 + 1, 1000),
        "msg",
        None,
    );
    report(
        "mailbox fetch 100 + ack each",
        fetch_ack(fetched, 100, false),
        "msg",
        None,
    );
    report(
        "mailbox fetch 100 + ack_many",
        fetch_ack(fetched, 100, true),
        "msg",
        None,
    );
}
