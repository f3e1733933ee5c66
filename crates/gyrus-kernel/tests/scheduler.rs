//! The model-call scheduler through its public interface, on a real tokio runtime. Timing logic
//! runs on tokio's paused clock, so it is exact and does not depend on the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gyrus_kernel::scheduler::{Class, ClassStats, Policy, Scheduler, SchedulerError};
use pretty_assertions::assert_eq;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

const CORTEX: &str = "local";

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn scheduler(max: usize) -> Scheduler {
    let s = Scheduler::new(Policy { aging: ms(2_000) });
    s.set_cortex(CORTEX, max);
    s
}

fn queued(s: &Scheduler) -> usize {
    s.snapshot().cortexes.get(CORTEX).map_or(0, |c| c.queued)
}

fn running(s: &Scheduler) -> usize {
    s.snapshot().cortexes.get(CORTEX).map_or(0, |c| c.running)
}

/// Lets spawned tasks run until `n` calls wait.
async fn until_queued(s: &Scheduler, n: usize) {
    while queued(s) != n {
        tokio::task::yield_now().await;
    }
}

/// A call that, once it has its slot, notes its name in `log` and holds the slot for `hold`.
fn call(
    s: &Scheduler,
    agent: &str,
    class: Class,
    hold: Duration,
    log: &Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    let (s, agent, log) = (s.clone(), agent.to_owned(), log.clone());
    tokio::spawn(async move {
        let permit = s.acquire(CORTEX, &agent, class).await.unwrap();
        log.lock().unwrap().push(agent);
        sleep(hold).await;
        drop(permit);
    })
}

async fn join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_maximum_under_200_callers() {
    let s = scheduler(4);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let high = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200u64)
        .map(|i| {
            let (s, in_flight, high) = (s.clone(), in_flight.clone(), high.clone());
            tokio::spawn(async move {
                let class = if i % 3 == 0 {
                    Class::Interactive
                } else {
                    Class::Background
                };
                let permit = s
                    .acquire(CORTEX, &format!("agent-{}", i % 7), class)
                    .await
                    .unwrap();
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                high.fetch_max(now, Ordering::SeqCst);
                sleep(ms(1 + i % 5)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            })
        })
        .collect();
    join(handles).await;
    assert_eq!(
        high.load(Ordering::SeqCst),
        4,
        "all four slots used, never a fifth"
    );
    let stats = s.snapshot().cortexes[CORTEX].clone();
    assert_eq!((stats.running, stats.queued), (0, 0));
    let (i, b) = (&stats.interactive, &stats.background);
    assert_eq!(
        (i.admitted + b.admitted, i.completed + b.completed),
        (200, 200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_never_exceeds_the_maximum_across_threads() {
    let s = scheduler(3);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let high = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200usize)
        .map(|i| {
            let (s, in_flight, high) = (s.clone(), in_flight.clone(), high.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let class = if i % 4 == 0 {
                        Class::Interactive
                    } else {
                        Class::Background
                    };
                    let permit = s
                        .acquire(CORTEX, &format!("a{}", i % 9), class)
                        .await
                        .unwrap();
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    high.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    join(handles).await;
    assert!(high.load(Ordering::SeqCst) <= 3);
    assert_eq!((running(&s), queued(&s)), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn background_calls_complete_under_an_endless_interactive_flood() {
    let s = scheduler(1);
    let stop = Arc::new(AtomicBool::new(false));
    // Three interactive agents with no think time: one runs, two always wait.
    let flood: Vec<_> = (0..3)
        .map(|i| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let p = s
                        .acquire(CORTEX, &format!("ui-{i}"), Class::Interactive)
                        .await;
                    sleep(ms(10)).await;
                    drop(p);
                }
            })
        })
        .collect();
    until_queued(&s, 2).await;
    let started = tokio::time::Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let background: Vec<_> = (0..20)
        .map(|i| {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    let p = s
                        .acquire(CORTEX, &format!("bg-{i}"), Class::Background)
                        .await;
                    sleep(ms(10)).await;
                    drop(p.unwrap());
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // On the paused clock; were aging broken, this would fail instead of hanging.
    timeout(ms(60_000), join(background))
        .await
        .expect("background calls starved");
    let took = started.elapsed();
    assert_eq!(done.load(Ordering::SeqCst), 60);
    // Each agent's flow ages 2 s after it was last served; the twenty aged flows then take
    // 10 ms each. Three calls per agent: three rounds.
    assert!(took <= 3 * (ms(2_000) + 20 * ms(10)), "took {took:?}");
    let stats = s.snapshot().cortexes[CORTEX].clone();
    assert_eq!(
        stats.background.aged, 60,
        "every background call got in by aging"
    );
    assert!(stats.interactive.completed > 400, "{:?}", stats.interactive);
    stop.store(true, Ordering::SeqCst);
    join(flood).await;
}

#[tokio::test(start_paused = true)]
async fn one_agents_flood_does_not_starve_another_agent() {
    let s = scheduler(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let blocker = s.acquire(CORTEX, "x", Class::Background).await.unwrap();
    let flood: Vec<_> = (0..1000)
        .map(|_| call(&s, "flood", Class::Background, ms(1), &log))
        .collect();
    until_queued(&s, 1000).await;
    let single = call(&s, "single", Class::Background, ms(1), &log);
    until_queued(&s, 1001).await;
    drop(blocker);
    single.await.unwrap();
    let at = log.lock().unwrap().iter().position(|a| a == "single");
    assert_eq!(at, Some(1), "behind one flood call, not a thousand");
    join(flood).await;
    assert_eq!(log.lock().unwrap().len(), 1001);
}

#[tokio::test(start_paused = true)]
async fn interactive_calls_go_before_waiting_background_calls() {
    let s = scheduler(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let blocker = s.acquire(CORTEX, "x", Class::Background).await.unwrap();
    let mut handles: Vec<_> = (0..5)
        .map(|i| call(&s, &format!("bg-{i}"), Class::Background, ms(1), &log))
        .collect();
    until_queued(&s, 5).await;
    handles.push(call(&s, "ui-0", Class::Interactive, ms(1), &log));
    handles.push(call(&s, "ui-1", Class::Interactive, ms(1), &log));
    until_queued(&s, 7).await;
    drop(blocker);
    join(handles).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(log[..2], ["ui-0", "ui-1"]);
    assert_eq!(log[2..], ["bg-0", "bg-1", "bg-2", "bg-3", "bg-4"]);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_leave_the_queue_and_leak_no_slot() {
    let s = scheduler(2);
    let a = s.acquire(CORTEX, "x", Class::Interactive).await.unwrap();
    let b = s.acquire(CORTEX, "x", Class::Background).await.unwrap();
    let aborted: Vec<_> = (0..25)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.acquire(CORTEX, &format!("a{i}"), Class::Background).await },
            )
        })
        .collect();
    until_queued(&s, 25).await;
    for h in &aborted {
        h.abort();
    }
    for h in aborted {
        assert!(h.await.unwrap_err().is_cancelled());
    }
    for i in 0..25 {
        let waited = timeout(
            ms(5),
            s.acquire(CORTEX, &format!("t{i}"), Class::Interactive),
        )
        .await;
        assert!(waited.is_err(), "no slot is free");
    }
    let stats = s.snapshot().cortexes[CORTEX].clone();
    assert_eq!((stats.queued, stats.running), (0, 2));
    assert_eq!(stats.interactive.cancelled + stats.background.cancelled, 50);
    drop((a, b));
    let c = s.acquire(CORTEX, "y", Class::Background).await.unwrap();
    let d = s.acquire(CORTEX, "y", Class::Background).await.unwrap();
    assert_eq!(running(&s), 2, "both slots are free again");
    assert!(
        timeout(ms(5), s.acquire(CORTEX, "y", Class::Background))
            .await
            .is_err()
    );
    drop((c, d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_cancelled_as_slots_free_leak_nothing() {
    let s = scheduler(3);
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                for j in 0..30u64 {
                    let patience = Duration::from_micros((i * 7 + j * 13) % 3 * 500);
                    let class = if (i + j) % 3 == 0 {
                        Class::Interactive
                    } else {
                        Class::Background
                    };
                    let agent = format!("a{}", i % 10);
                    let call = s.acquire(CORTEX, &agent, class);
                    if let Ok(permit) = timeout(patience, call).await {
                        tokio::task::yield_now().await;
                        drop(permit.unwrap());
                    }
                }
            })
        })
        .collect();
    join(handles).await;
    let stats = s.snapshot().cortexes[CORTEX].clone();
    assert_eq!((stats.queued, stats.running), (0, 0));
    let (i, b) = (&stats.interactive, &stats.background);
    assert_eq!(i.admitted + b.admitted + i.cancelled + b.cancelled, 3_000);
    assert_eq!(i.completed + b.completed, i.admitted + b.admitted);
    let mut permits = Vec::new();
    for _ in 0..3 {
        let p = timeout(ms(1_000), s.acquire(CORTEX, "z", Class::Background)).await;
        permits.push(p.unwrap().unwrap());
    }
    assert_eq!(running(&s), 3, "all three slots were free");
}

#[tokio::test(start_paused = true)]
async fn raising_the_maximum_wakes_waiters_and_lowering_it_waits_for_calls_to_finish() {
    let s = scheduler(1);
    let held = s.acquire(CORTEX, "x", Class::Background).await.unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.acquire(CORTEX, &format!("w{i}"), Class::Background).await },
            )
        })
        .collect();
    until_queued(&s, 3).await;
    s.set_cortex(CORTEX, 4);
    let mut permits = Vec::new();
    for w in waiters {
        permits.push(w.await.unwrap().unwrap());
    }
    assert_eq!((running(&s), queued(&s)), (4, 0));
    s.set_cortex(CORTEX, 2);
    drop(held);
    drop(permits.pop());
    let late = timeout(ms(10), s.acquire(CORTEX, "y", Class::Interactive)).await;
    assert!(late.is_err(), "two calls still run, the new maximum");
    drop(permits.pop());
    let p = timeout(ms(10), s.acquire(CORTEX, "y", Class::Interactive)).await;
    assert!(p.is_ok(), "one finished, so a slot is free");
}

#[tokio::test(start_paused = true)]
async fn removing_a_cortex_fails_its_waiters() {
    let s = scheduler(1);
    let held = s.acquire(CORTEX, "x", Class::Background).await.unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.acquire(CORTEX, "w", Class::Interactive).await })
    };
    until_queued(&s, 1).await;
    assert!(s.remove_cortex(CORTEX));
    let err = waiter.await.unwrap().unwrap_err();
    assert_eq!(
        err,
        SchedulerError::CortexRemoved {
            cortex: CORTEX.into()
        }
    );
    assert_eq!(
        err.to_string(),
        "cortex \"local\" was removed while the call waited for a slot"
    );
    let unknown = s
        .acquire(CORTEX, "w", Class::Interactive)
        .await
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no cortex named \"local\" is known to the scheduler"
    );
    assert!(!s.remove_cortex(CORTEX));

    // A new cortex of the same name starts afresh; the old permit frees none of its slots.
    s.set_cortex(CORTEX, 1);
    let fresh = s.acquire(CORTEX, "y", Class::Background).await.unwrap();
    drop(held);
    assert_eq!(running(&s), 1);
    drop(fresh);
    assert_eq!(running(&s), 0);
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_counts_calls_and_measures_wait_and_turnaround() {
    let s = scheduler(1);
    let first = s.acquire(CORTEX, "a", Class::Interactive).await.unwrap();
    assert_eq!(first.waited(), Duration::ZERO);
    assert_eq!(
        (first.cortex(), first.class()),
        (CORTEX, Class::Interactive)
    );
    let second = {
        let s = s.clone();
        tokio::spawn(async move {
            let p = s.acquire(CORTEX, "b", Class::Interactive).await.unwrap();
            let waited = p.waited();
            sleep(ms(50)).await;
            drop(p);
            waited
        })
    };
    until_queued(&s, 1).await;
    let stats = s.snapshot().cortexes[CORTEX].clone();
    assert_eq!(
        (stats.max_concurrency, stats.running, stats.queued),
        (1, 1, 1)
    );
    assert_eq!(
        (stats.interactive.queued, stats.interactive.running),
        (1, 1)
    );
    sleep(ms(100)).await;
    drop(first);
    let waited = second.await.unwrap();
    assert!(waited >= ms(100) && waited < ms(102), "{waited:?}");

    let stats = s.snapshot().cortexes[CORTEX].clone();
    let i = stats.interactive;
    assert_eq!(stats.background, ClassStats::default());
    assert_eq!((i.admitted, i.completed, i.cancelled, i.aged), (2, 2, 0, 0));
    assert_eq!((i.wait.count, i.turnaround.count), (2, 2));
    let near = |got: u64, want: u64| got >= want && got <= want + want / 8 + 2_000;
    assert!(near(i.wait.max_us, 100_000), "{:?}", i.wait);
    assert!(near(i.wait.p99_us, 100_000), "{:?}", i.wait);
    assert_eq!(i.wait.p50_us, 0, "half the calls did not wait");
    assert!(near(i.turnaround.max_us, 150_000), "{:?}", i.turnaround);
    assert!(near(i.turnaround.p50_us, 100_000), "{:?}", i.turnaround);

    let json = serde_json::to_value(s.snapshot()).unwrap();
    assert_eq!(json["cortexes"][CORTEX]["interactive"]["admitted"], 2);
    assert!(json["cortexes"][CORTEX]["interactive"]["wait"]["p95_us"].is_u64());
}
