//! The scheduler for model calls. Every call to a cortex (a model endpoint) first takes one of
//! its slots, of which there are as many as the cortex runs at once; when none is free the call
//! waits in the cortex's [`Queue`], which decides who goes next (priority class, fair share
//! across agents, aging; see [`queue`]). The slot comes as a [`Permit`]; dropping it frees the
//! slot for the next waiter.
//!
//! The decisions are in [`queue`], pure and tested alone; this module is the plumbing around
//! them: a lock held only for the bookkeeping, never across an await, and a one-shot channel per
//! waiter that carries its permit.

pub mod queue;
pub mod stats;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

pub use queue::{Class, Picked, Policy, Queue, Ticket};
pub use stats::{ClassStats, CortexStats, SchedulerStats, Summary};

use stats::Tally;

/// Why a call got no slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// No cortex of that name was set up with [`Scheduler::set_cortex`].
    #[error("no cortex named {cortex:?} is known to the scheduler")]
    UnknownCortex {
        /// The name asked for.
        cortex: String,
    },
    /// The cortex was removed while the call waited.
    #[error("cortex {cortex:?} was removed while the call waited for a slot")]
    CortexRemoved {
        /// The cortex.
        cortex: String,
    },
}

/// Queues model calls per cortex and hands out slots. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new(Policy::default())
    }
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    /// Times passed to the queues are measured from here, on tokio's clock (which tests pause).
    origin: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cortexes: HashMap<Arc<str>, Cortex>,
    /// Tells a cortex from an earlier one of the same name, so that a permit of a removed
    /// cortex does not free a slot of its successor.
    next_id: u64,
}

type Reply = oneshot::Sender<Result<Permit, SchedulerError>>;

#[derive(Debug)]
struct Cortex {
    name: Arc<str>,
    id: u64,
    max: usize,
    running: usize,
    queue: Queue,
    waiters: HashMap<Ticket, Reply>,
    tallies: [Tally; 2],
}

/// A slot given to a waiter, to be turned into its permit once the lock is released.
#[derive(Debug)]
struct Grant {
    reply: Reply,
    class: Class,
    asked_at: Duration,
    waited: Duration,
}

/// Slots given to waiters of one cortex.
#[derive(Debug)]
struct Grants {
    cortex: Arc<str>,
    id: u64,
    grants: Vec<Grant>,
}

impl Cortex {
    fn tally(&mut self, class: Class) -> &mut Tally {
        &mut self.tallies[class.index()]
    }

    fn admit(&mut self, class: Class, waited: Duration, aged: bool) {
        self.running += 1;
        let tally = self.tally(class);
        tally.running += 1;
        tally.admitted += 1;
        tally.aged += u64::from(aged);
        tally.wait.record(waited);
    }

    /// Gives free slots to waiters, in the queue's order.
    fn dispatch(&mut self, now: Duration) -> Grants {
        let mut grants = Vec::new();
        while self.running < self.max {
            let Some(picked) = self.queue.pop(now) else {
                break;
            };
            // Every queued ticket has a waiter; the two are added and removed together.
            let Some(reply) = self.waiters.remove(&picked.ticket) else {
                continue;
            };
            let waited = now.saturating_sub(picked.enqueued_at);
            self.admit(picked.class, waited, picked.aged);
            grants.push(Grant {
                reply,
                class: picked.class,
                asked_at: picked.enqueued_at,
                waited,
            });
        }
        Grants {
            cortex: self.name.clone(),
            id: self.id,
            grants,
        }
    }

    fn stats(&self) -> CortexStats {
        let class = |c: Class| self.tallies[c.index()].stats(self.queue.len_of(c));
        CortexStats {
            max_concurrency: self.max,
            running: self.running,
            queued: self.queue.len(),
            interactive: class(Class::Interactive),
            background: class(Class::Background),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The bookkeeping under the lock does not panic midway; a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Hands slots to their waiters. Called with the lock released: a waiter that has gone away
/// drops its permit here, which takes the lock to pass the slot on.
fn deliver(inner: &Arc<Inner>, grants: Grants) {
    for grant in grants.grants {
        let permit = Permit {
            inner: inner.clone(),
            cortex: grants.cortex.clone(),
            cortex_id: grants.id,
            class: grant.class,
            asked_at: grant.asked_at,
            waited: grant.waited,
        };
        // If the waiter is gone, the permit comes back in the error and is dropped, which frees
        // its slot for the next waiter.
        drop(grant.reply.send(Ok(permit)));
    }
}

impl Scheduler {
    /// A scheduler with no cortexes, whose queues follow `policy`.
    pub fn new(policy: Policy) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                policy,
                origin: Instant::now(),
                state: Mutex::default(),
            }),
        }
    }

    /// The policy of every queue.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// Adds a cortex that runs at most `max_concurrency` calls at once, or changes the maximum
    /// of an existing one. Raising it gives the new slots to waiters at once; lowering it takes
    /// effect as running calls finish (none is interrupted). At 0 every call waits.
    pub fn set_cortex(&self, name: &str, max_concurrency: usize) {
        let grants = {
            let mut state = self.inner.lock();
            let now = self.inner.now();
            let next_id = state.next_id;
            let policy = self.inner.policy;
            let cortex = state
                .cortexes
                .entry(Arc::from(name))
                .or_insert_with_key(|name| Cortex {
                    name: name.clone(),
                    id: next_id,
                    max: 0,
                    running: 0,
                    queue: Queue::new(policy),
                    waiters: HashMap::new(),
                    tallies: Default::default(),
                });
            cortex.max = max_concurrency;
            let grants = cortex.dispatch(now);
            state.next_id += 1;
            grants
        };
        deliver(&self.inner, grants);
    }

    /// Removes a cortex: its waiters fail with [`SchedulerError::CortexRemoved`], and permits
    /// still held free nothing when dropped. Returns whether it existed.
    pub fn remove_cortex(&self, name: &str) -> bool {
        let Some(cortex) = self.inner.lock().cortexes.remove(name) else {
            return false;
        };
        for reply in cortex.waiters.into_values() {
            drop(reply.send(Err(SchedulerError::CortexRemoved {
                cortex: name.to_owned(),
            })));
        }
        true
    }

    /// Waits for a slot of `cortex` for a call from `agent`; see [`Scheduler::acquire_with_cost`].
    pub async fn acquire(
        &self,
        cortex: &str,
        agent: &str,
        class: Class,
    ) -> Result<Permit, SchedulerError> {
        self.acquire_with_cost(cortex, agent, class, 1).await
    }

    /// Waits for a slot of `cortex` for a call from `agent` whose relative size is `cost` (for
    /// fair share: an agent of costly calls gets fewer of them; one unit for all callers of a
    /// cortex, 1 when unknown). Dropping the future before it finishes withdraws the call.
    pub async fn acquire_with_cost(
        &self,
        cortex: &str,
        agent: &str,
        class: Class,
        cost: u32,
    ) -> Result<Permit, SchedulerError> {
        let (name, id, ticket, reply) = {
            let mut state = self.inner.lock();
            let now = self.inner.now();
            let Some(c) = state.cortexes.get_mut(cortex) else {
                return Err(SchedulerError::UnknownCortex {
                    cortex: cortex.to_owned(),
                });
            };
            if c.running < c.max && c.queue.is_empty() {
                c.admit(class, Duration::ZERO, false);
                return Ok(Permit {
                    inner: self.inner.clone(),
                    cortex: c.name.clone(),
                    cortex_id: c.id,
                    class,
                    asked_at: now,
                    waited: Duration::ZERO,
                });
            }
            let ticket = c.queue.push(agent, class, cost, now);
            let (tx, rx) = oneshot::channel();
            c.waiters.insert(ticket, tx);
            (c.name.clone(), c.id, ticket, rx)
        };
        let mut waiting = Waiting {
            inner: &self.inner,
            cortex: &name,
            id,
            ticket,
            class,
            done: false,
        };
        let reply = reply.await;
        waiting.done = true;
        // A closed channel without a reply means the cortex went away with the waiter in it.
        reply.unwrap_or_else(|_| {
            Err(SchedulerError::CortexRemoved {
                cortex: name.to_string(),
            })
        })
    }

    /// Counts and distributions of every cortex.
    pub fn snapshot(&self) -> SchedulerStats {
        let state = self.inner.lock();
        SchedulerStats {
            cortexes: state
                .cortexes
                .iter()
                .map(|(name, c)| (name.to_string(), c.stats()))
                .collect(),
        }
    }
}

/// Withdraws a call from its queue if its caller stops waiting before the slot comes.
struct Waiting<'a> {
    inner: &'a Inner,
    cortex: &'a Arc<str>,
    id: u64,
    ticket: Ticket,
    class: Class,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.inner.lock();
        if let Some(c) = state
            .cortexes
            .get_mut(self.cortex)
            .filter(|c| c.id == self.id)
            && c.queue.remove(self.ticket)
        {
            c.waiters.remove(&self.ticket);
            c.tally(self.class).cancelled += 1;
        }
        // Otherwise the slot was already given: the permit is in the channel, and is dropped
        // with it, which frees the slot.
    }
}

/// A slot of a cortex, held until dropped.
pub struct Permit {
    inner: Arc<Inner>,
    cortex: Arc<str>,
    cortex_id: u64,
    class: Class,
    asked_at: Duration,
    waited: Duration,
}

impl Permit {
    /// The cortex.
    pub fn cortex(&self) -> &str {
        &self.cortex
    }

    /// The class the call was queued in.
    pub fn class(&self) -> Class {
        self.class
    }

    /// How long the call waited for its slot.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("cortex", &self.cortex)
            .field("class", &self.class)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let grants = {
            let mut state = self.inner.lock();
            let now = self.inner.now();
            let Some(c) = state
                .cortexes
                .get_mut(&self.cortex)
                .filter(|c| c.id == self.cortex_id)
            else {
                return;
            };
            c.running = c.running.saturating_sub(1);
            let tally = c.tally(self.class);
            tally.running = tally.running.saturating_sub(1);
            tally.completed += 1;
            tally.turnaround.record(now.saturating_sub(self.asked_at));
            c.dispatch(now)
        };
        deliver(&self.inner, grants);
    }
}
