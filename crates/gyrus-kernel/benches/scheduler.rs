//! The model-call scheduler against a plain FIFO (a tokio `Semaphore`, which is fair FIFO) on the
//! same workload: a cortex that runs two calls at once, 50 background agents calling in a loop,
//! and 5 interactive agents calling with think time between calls. Each call holds its slot for
//! a simulated 2 ms of service, on the real clock. Rounds alternate between the two so drift on
//! the machine hits both alike. Also times the pure queue's push and pop.
//!
//! `cargo bench -p gyrus-kernel --bench scheduler`; under `cargo test --benches` it only smoke-runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gyrus_kernel::scheduler::{Class, Policy, Queue, Scheduler};
use tokio::sync::Semaphore;

const CORTEX: &str = "local";
const SLOTS: usize = 2;
const BACKGROUND_AGENTS: usize = 50;
const INTERACTIVE_AGENTS: usize = 5;
const SERVICE: Duration = Duration::from_millis(2);
const THINK: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ours,
    Fifo,
}

#[derive(Clone)]
enum Gate {
    Ours(Scheduler),
    Fifo(Arc<Semaphore>),
}

enum Held {
    Ours(#[allow(dead_code)] gyrus_kernel::scheduler::Permit),
    Fifo(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
}

impl Gate {
    fn new(kind: Kind) -> Gate {
        match kind {
            Kind::Ours => {
                let s = Scheduler::new(Policy::default());
                s.set_cortex(CORTEX, SLOTS);
                Gate::Ours(s)
            }
            Kind::Fifo => Gate::Fifo(Arc::new(Semaphore::new(SLOTS))),
        }
    }

    async fn acquire(&self, agent: &str, class: Class) -> Held {
        match self {
            Gate::Ours(s) => Held::Ours(s.acquire(CORTEX, agent, class).await.unwrap()),
            Gate::Fifo(s) => Held::Fifo(s.clone().acquire_owned().await.unwrap()),
        }
    }
}

#[derive(Default)]
struct Outcome {
    interactive_waits: Vec<Duration>,
    background_calls: u64,
    elapsed: Duration,
}

async fn round(kind: Kind, length: Duration) -> Outcome {
    let gate = Gate::new(kind);
    let start = Instant::now();
    let end = start + length;
    let background = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..BACKGROUND_AGENTS {
        let (gate, background) = (gate.clone(), background.clone());
        tasks.push(tokio::spawn(async move {
            let agent = format!("bg-{i}");
            while Instant::now() < end {
                let held = gate.acquire(&agent, Class::Background).await;
                tokio::time::sleep(SERVICE).await;
                drop(held);
                background.fetch_add(1, Ordering::Relaxed);
            }
            Vec::new()
        }));
    }
    for i in 0..INTERACTIVE_AGENTS {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let agent = format!("ui-{i}");
            let mut waits = Vec::new();
            // Spread the agents' first calls over one think time.
            tokio::time::sleep(THINK * u32::try_from(i).unwrap() / 5).await;
            while Instant::now() < end {
                tokio::time::sleep(THINK).await;
                let asked = Instant::now();
                let held = gate.acquire(&agent, Class::Interactive).await;
                waits.push(asked.elapsed());
                tokio::time::sleep(SERVICE).await;
                drop(held);
            }
            waits
        }));
    }
    let mut outcome = Outcome::default();
    for t in tasks {
        outcome.interactive_waits.extend(t.await.unwrap());
    }
    outcome.elapsed = start.elapsed();
    outcome.background_calls = background.load(Ordering::Relaxed);
    outcome
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Pushes and pops through the pure queue with `agents` flows backlogged; nanoseconds per
/// push-and-pop pair.
fn queue_cost(agents: usize, pairs: usize) -> f64 {
    let mut q = Queue::new(Policy::default());
    let names: Vec<String> = (0..agents).map(|i| format!("agent-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let class = if i % 10 == 0 {
            Class::Interactive
        } else {
            Class::Background
        };
        q.push(name, class, 1, Duration::ZERO);
    }
    let start = Instant::now();
    for i in 0..pairs {
        let now = Duration::from_micros(i as u64);
        let picked = q.pop(now).unwrap();
        q.push(&picked.agent, picked.class, 1, now);
    }
    start.elapsed().as_secs_f64() * 1e9 / pairs as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, length, pairs) = if full {
        (3, Duration::from_secs(3), 1_000_000)
    } else {
        (1, Duration::from_millis(100), 10_000)
    };

    for agents in [10, 100, 1_000] {
        println!(
            "queue: push+pop with {agents} agents backlogged: {:.0} ns",
            queue_cost(agents, pairs)
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results = [Outcome::default(), Outcome::default()];
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [Kind::Ours, Kind::Fifo]
        } else {
            [Kind::Fifo, Kind::Ours]
        };
        for kind in order {
            let o = rt.block_on(round(kind, length));
            let acc = &mut results[usize::from(kind == Kind::Fifo)];
            acc.interactive_waits.extend(o.interactive_waits);
            acc.background_calls += o.background_calls;
            acc.elapsed += o.elapsed;
        }
    }

    println!(
        "workload: {SLOTS} slots, {BACKGROUND_AGENTS} background agents in a loop, \
         {INTERACTIVE_AGENTS} interactive agents with {} ms think time, {} ms service, \
         {rounds} x {} s per scheduler",
        THINK.as_millis(),
        SERVICE.as_millis(),
        length.as_secs_f64()
    );
    let mut p95 = [0.0; 2];
    for (i, kind) in [Kind::Ours, Kind::Fifo].into_iter().enumerate() {
        let o = &mut results[i];
        o.interactive_waits.sort();
        let w = &o.interactive_waits;
        p95[i] = ms(percentile(w, 0.95));
        let secs = o.elapsed.as_secs_f64();
        println!(
            "{:<5} interactive wait ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  ({} calls); \
             throughput calls/s: background {:.0}, all {:.0}",
            format!("{kind:?}").to_lowercase(),
            ms(percentile(w, 0.50)),
            p95[i],
            ms(percentile(w, 0.99)),
            w.len(),
            o.background_calls as f64 / secs,
            (o.background_calls + w.len() as u64) as f64 / secs,
        );
    }
    let ratio = if p95[1] > 0.0 { p95[0] / p95[1] } else { 0.0 };
    println!(
        "interactive p95 wait ours/fifo: {ratio:.3} (target <= 0.2: {})",
        if ratio <= 0.2 { "met" } else { "missed" }
    );
}
