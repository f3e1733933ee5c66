//! The in-process bus: publish/subscribe by intent pattern, handler groups, request/reply.
//!
//! Delivery is at-most-once. Each subscription has a bounded queue; a publish never waits, and
//! a subscriber whose queue is full misses that message (counted in [`Delivered::dropped`]).
//! Messages that must not be lost go through the durable mailboxes instead.
//!
//! Envelopes travel as `Arc<Envelope>`, so fan-out to many subscribers never copies a payload.
//! Literal patterns are found by one hash lookup; only wildcard patterns are matched one by one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::{Envelope, EnvelopeError, now_ms};
use crate::subject::{self, Pattern};

/// Why a request got no reply, or a reply could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Nobody subscribes to the request's intent.
    #[error("no one handles {intent:?}: no subscriber matches it")]
    NoResponders {
        /// The request's intent.
        intent: String,
    },
    /// Every matching subscriber's queue was full.
    #[error("every handler of {intent:?} is busy (its queue is full); try again later")]
    Busy {
        /// The request's intent.
        intent: String,
    },
    /// No reply came in time.
    #[error("no reply to {intent:?} within {after:?}")]
    Timeout {
        /// The request's intent.
        intent: String,
        /// How long the request waited.
        after: Duration,
    },
    /// The request's deadline had already passed.
    #[error("the request's deadline has passed; it was not sent")]
    Expired,
    /// The envelope given as a request has a correlation, which marks a reply.
    #[error("a request cannot carry a correlation (that marks a reply); clear it")]
    CorrelatedRequest,
    /// A request with the same id is already waiting.
    #[error("a request with id {0:?} is already waiting for its reply; use a fresh id")]
    DuplicateId(String),
    /// The reply envelope was not valid.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// What one publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Subscriptions (or waiting requests) that received the message.
    pub subscribers: usize,
    /// Subscriptions, or whole handler groups, that matched but whose queues were full.
    pub dropped: usize,
    /// The message was at or past its deadline and went to no one.
    pub expired: bool,
}

/// Totals since the bus was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Calls to publish (requests and replies included).
    pub published: u64,
    /// Messages handed to a subscriber or a waiting request.
    pub delivered: u64,
    /// Deliveries lost to a full queue.
    pub dropped: u64,
    /// Messages not delivered because their deadline had passed.
    pub expired: u64,
    /// Replies whose request was no longer waiting.
    pub unclaimed_replies: u64,
}

/// The in-process bus. Cheap to clone; every clone is the same bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner {
    table: RwLock<Table>,
    /// Requests waiting for a reply, by request id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Arc<Envelope>>>>,
    next_id: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
    unclaimed: AtomicU64,
}

type Sender = mpsc::Sender<Arc<Envelope>>;

/// Subscriptions, by pattern: literal patterns in a map, wildcard patterns in a list.
#[derive(Default)]
struct Table {
    literal: HashMap<String, Route>,
    wild: Vec<Route>,
}

/// Every subscription with one pattern.
struct Route {
    pattern: Pattern,
    direct: Vec<(u64, Sender)>,
    groups: Vec<Group>,
}

/// A handler group: each message goes to one member, round-robin.
struct Group {
    name: String,
    members: Vec<(u64, Sender)>,
    next: AtomicUsize,
}

impl Route {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.groups.is_empty()
    }

    fn deliver(&self, message: &mut Shared<'_>, out: &mut Delivered) {
        for (_, tx) in &self.direct {
            match tx.try_send(message.get()) {
                Ok(()) => out.subscribers += 1,
                Err(mpsc::error::TrySendError::Full(_)) => out.dropped += 1,
                // The subscription is being dropped; it is about to leave the table.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for group in &self.groups {
            let n = group.members.len();
            let start = group.next.fetch_add(1, Ordering::Relaxed);
            let mut taken = false;
            // Start at the next member in turn; if its queue is full, the next one with room
            // takes the message.
            for k in 0..n {
                let (_, tx) = &group.members[(start.wrapping_add(k)) % n];
                if tx.try_send(message.get()).is_ok() {
                    taken = true;
                    break;
                }
            }
            if taken {
                out.subscribers += 1;
            } else {
                out.dropped += 1;
            }
        }
    }
}

/// The message being published, and the shared handle subscribers get, made on first need.
struct Shared<'a> {
    envelope: &'a Envelope,
    arc: Option<Arc<Envelope>>,
}

impl Shared<'_> {
    fn get(&mut self) -> Arc<Envelope> {
        let envelope = self.envelope;
        self.arc
            .get_or_insert_with(|| Arc::new(envelope.clone()))
            .clone()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        Bus {
            inner: Arc::new(Inner {
                table: RwLock::new(Table::default()),
                waiting: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                unclaimed: AtomicU64::new(0),
            }),
        }
    }

    /// Subscribes to every intent `pattern` matches, with a queue of `capacity` messages
    /// (at least 1).
    ///
    /// With `group: None` the subscription gets every matching message. Subscriptions that
    /// share a pattern and a group name form a handler group: each message goes to exactly one
    /// of them, in turn. Dropping the subscription unsubscribes.
    pub fn subscribe(
        &self,
        pattern: Pattern,
        group: Option<String>,
        capacity: usize,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = self
                .inner
                .table
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let route = table.route_mut(&pattern);
            match &group {
                None => route.direct.push((id, tx)),
                Some(name) => match route.groups.iter_mut().find(|g| &g.name == name) {
                    Some(g) => g.members.push((id, tx)),
                    None => route.groups.push(Group {
                        name: name.clone(),
                        members: vec![(id, tx)],
                        next: AtomicUsize::new(0),
                    }),
                },
            }
        }
        Subscription {
            id,
            pattern,
            group,
            rx,
            bus: Arc::downgrade(&self.inner),
        }
    }

    /// Publishes a message. See [`Bus::publish_arc`]; this copies the envelope once, and only
    /// if some subscriber takes it.
    pub fn publish(&self, envelope: &Envelope) -> Delivered {
        self.inner.publish(Shared {
            envelope,
            arc: None,
        })
    }

    /// Publishes a shared message without copying it.
    ///
    /// A message at or past its deadline goes to no one. A reply (an envelope with a
    /// correlation) goes only to the request waiting for it, or to no one if it stopped
    /// waiting. Any other message goes to every matching subscription outside a group and to
    /// one member of each matching handler group.
    pub fn publish_arc(&self, envelope: Arc<Envelope>) -> Delivered {
        self.inner.publish(Shared {
            envelope: &envelope,
            arc: Some(envelope.clone()),
        })
    }

    /// Sends a request and waits up to `timeout` (or until the request's deadline, if sooner)
    /// for the reply whose correlation is the request's id.
    ///
    /// Fails at once with [`BusError::NoResponders`] if nobody subscribes to the intent.
    pub async fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BusError> {
        if envelope.is_reply() {
            return Err(BusError::CorrelatedRequest);
        }
        let now = now_ms();
        if envelope.is_expired_at(now) {
            self.inner.published.fetch_add(1, Ordering::Relaxed);
            self.inner.expired.fetch_add(1, Ordering::Relaxed);
            return Err(BusError::Expired);
        }
        let wait = match envelope.deadline {
            Some(deadline) => timeout.min(Duration::from_millis(deadline - now)),
            None => timeout,
        };
        let intent = envelope.intent.to_string();
        let (tx, rx) = oneshot::channel();
        let _waiting = self.inner.wait_for(envelope.id.clone(), tx)?;
        let delivered = self.publish_arc(Arc::new(envelope));
        if delivered.subscribers == 0 {
            return Err(if delivered.dropped > 0 {
                BusError::Busy { intent }
            } else {
                BusError::NoResponders { intent }
            });
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => Ok(Arc::try_unwrap(reply).unwrap_or_else(|shared| (*shared).clone())),
            // The sender is only dropped unanswered when the waiting entry is removed, which
            // only this call does; treat it as no reply.
            Ok(Err(_)) | Err(_) => Err(BusError::Timeout {
                intent,
                after: wait,
            }),
        }
    }

    /// Builds the reply to `request` (see [`Envelope::reply`]) and publishes it.
    pub fn respond(
        &self,
        request: &Envelope,
        payload: Value,
        from: &str,
    ) -> Result<Delivered, BusError> {
        let reply = request.reply(payload, from)?;
        Ok(self.publish_arc(Arc::new(reply)))
    }

    /// Registers a wait for the reply to `request_id`, for a request delivered some other way
    /// than [`Bus::publish`] (an agent's durable mailbox). Register before delivering, so a
    /// quick reply is not missed; a reply is any published envelope whose `correlation` is the
    /// request id. Dropping the [`ReplyWait`] cancels the wait.
    pub fn expect_reply(&self, request_id: &str) -> Result<ReplyWait, BusError> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self
            .inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match waiting.entry(request_id.to_string()) {
            Entry::Occupied(_) => Err(BusError::DuplicateId(request_id.to_string())),
            Entry::Vacant(slot) => {
                slot.insert(tx);
                Ok(ReplyWait {
                    inner: Arc::clone(&self.inner),
                    id: request_id.to_string(),
                    rx: Some(rx),
                })
            }
        }
    }

    /// Totals since the bus was created.
    pub fn stats(&self) -> BusStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BusStats {
            published: load(&self.inner.published),
            delivered: load(&self.inner.delivered),
            dropped: load(&self.inner.dropped),
            expired: load(&self.inner.expired),
            unclaimed_replies: load(&self.inner.unclaimed),
        }
    }

    /// How many subscriptions are live.
    pub fn subscriptions(&self) -> usize {
        let table = self
            .inner
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        table
            .literal
            .values()
            .chain(table.wild.iter())
            .map(|r| r.direct.len() + r.groups.iter().map(|g| g.members.len()).sum::<usize>())
            .sum()
    }
}

impl Table {
    fn route_mut(&mut self, pattern: &Pattern) -> &mut Route {
        let fresh = || Route {
            pattern: pattern.clone(),
            direct: Vec::new(),
            groups: Vec::new(),
        };
        if pattern.is_literal() {
            return self
                .literal
                .entry(pattern.as_str().to_string())
                .or_insert_with(fresh);
        }
        let at = match self.wild.iter().position(|r| &r.pattern == pattern) {
            Some(at) => at,
            None => {
                self.wild.push(fresh());
                self.wild.len() - 1
            }
        };
        &mut self.wild[at]
    }

    fn remove(&mut self, id: u64, pattern: &Pattern, group: Option<&str>) {
        let strip = |route: &mut Route| match group {
            None => route.direct.retain(|(m, _)| *m != id),
            Some(name) => {
                for g in route.groups.iter_mut().filter(|g| g.name == name) {
                    g.members.retain(|(m, _)| *m != id);
                }
                route.groups.retain(|g| !g.members.is_empty());
            }
        };
        if pattern.is_literal() {
            if let Entry::Occupied(mut e) = self.literal.entry(pattern.as_str().to_string()) {
                strip(e.get_mut());
                if e.get().is_empty() {
                    e.remove();
                }
            }
        } else if let Some(at) = self.wild.iter().position(|r| &r.pattern == pattern) {
            strip(&mut self.wild[at]);
            if self.wild[at].is_empty() {
                self.wild.remove(at);
            }
        }
    }
}

/// Removes a waiting request's entry when the request ends, however it ends.
/// A registered wait for one reply; see [`Bus::expect_reply`].
pub struct ReplyWait {
    inner: Arc<Inner>,
    id: String,
    rx: Option<oneshot::Receiver<Arc<Envelope>>>,
}

impl std::fmt::Debug for ReplyWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyWait")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ReplyWait {
    /// Waits up to `timeout` for the reply.
    pub async fn wait(mut self, timeout: Duration, intent: &str) -> Result<Envelope, BusError> {
        let Some(rx) = self.rx.take() else {
            return Err(BusError::Timeout {
                intent: intent.to_string(),
                after: Duration::ZERO,
            });
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(Arc::try_unwrap(reply).unwrap_or_else(|shared| (*shared).clone())),
            Ok(Err(_)) | Err(_) => Err(BusError::Timeout {
                intent: intent.to_string(),
                after: timeout,
            }),
        }
    }
}

impl Drop for ReplyWait {
    fn drop(&mut self) {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

struct Waiting<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Inner {
    fn wait_for(
        &self,
        id: String,
        tx: oneshot::Sender<Arc<Envelope>>,
    ) -> Result<Waiting<'_>, BusError> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.entry(id.clone()) {
            Entry::Occupied(_) => Err(BusError::DuplicateId(id)),
            Entry::Vacant(slot) => {
                slot.insert(tx);
                Ok(Waiting { inner: self, id })
            }
        }
    }

    fn publish(&self, mut message: Shared<'_>) -> Delivered {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut out = Delivered::default();
        let envelope = message.envelope;
        if envelope.deadline.is_some() && envelope.is_expired_at(now_ms()) {
            self.expired.fetch_add(1, Ordering::Relaxed);
            out.expired = true;
            return out;
        }
        if let Some(correlation) = &envelope.correlation {
            let waiter = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(correlation);
            match waiter.map(|tx| tx.send(message.get())) {
                Some(Ok(())) => {
                    out.subscribers = 1;
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
            }
            return out;
        }
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            let intent = envelope.intent.as_str();
            if let Some(route) = table.literal.get(intent) {
                route.deliver(&mut message, &mut out);
            }
            for route in &table.wild {
                if subject::matches(route.pattern.as_str(), intent) {
                    route.deliver(&mut message, &mut out);
                }
            }
        }
        if out.subscribers > 0 {
            self.delivered
                .fetch_add(out.subscribers as u64, Ordering::Relaxed);
        }
        if out.dropped > 0 {
            self.dropped
                .fetch_add(out.dropped as u64, Ordering::Relaxed);
        }
        out
    }
}

/// A live subscription: an async queue of matching messages. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    group: Option<String>,
    rx: mpsc::Receiver<Arc<Envelope>>,
    bus: Weak<Inner>,
}

impl Subscription {
    /// The next message; `None` once the bus is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        self.rx.recv().await
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Envelope>> {
        self.rx.try_recv().ok()
    }

    /// How many messages are queued.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The handler group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.bus.upgrade() {
            inner
                .table
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(self.id, &self.pattern, self.group.as_deref());
        }
    }
}

#[cfg(test)]
mod reply_wait_tests {
    use super::*;
    use crate::subject::Subject;

    #[tokio::test]
    async fn a_reply_to_a_request_delivered_elsewhere_reaches_the_waiter() {
        let bus = Bus::new();
        let request = Envelope::new(
            Subject::new("jobs.run").unwrap(),
            "owner",
            serde_json::json!(1),
        )
        .unwrap();
        let wait = bus.expect_reply(&request.id).unwrap();
        assert!(matches!(
            bus.expect_reply(&request.id),
            Err(BusError::DuplicateId(_))
        ));
        let reply = request
            .reply(serde_json::json!("done"), "agent:ag_1")
            .unwrap();
        assert_eq!(
            bus.publish(&reply).subscribers,
            1,
            "a reply reaches its one waiter"
        );
        let got = wait.wait(Duration::from_secs(5), "jobs.run").await.unwrap();
        assert_eq!(got.payload, serde_json::json!("done"));

        let lonely = Envelope::new(
            Subject::new("jobs.run").unwrap(),
            "owner",
            serde_json::json!(2),
        )
        .unwrap();
        let wait = bus.expect_reply(&lonely.id).unwrap();
        let err = wait
            .wait(Duration::from_millis(20), "jobs.run")
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout { .. }));
        // Dropped waits are forgotten: the id can be waited for again.
        assert!(bus.expect_reply(&lonely.id).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::Subject;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn msg(intent: &str) -> Envelope {
        Envelope::new(Subject::new(intent).unwrap(), "owner", json!({"n": 1})).unwrap()
    }

    fn pat(p: &str) -> Pattern {
        Pattern::new(p).unwrap()
    }

    fn drain(sub: &mut Subscription) -> usize {
        let mut n = 0;
        while sub.try_recv().is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn fans_out_to_every_matching_subscriber() {
        let bus = Bus::new();
        let mut exact = bus.subscribe(pat("ops.disk.cleanup"), None, 8);
        let mut star = bus.subscribe(pat("ops.*.cleanup"), None, 8);
        let mut tail = bus.subscribe(pat("ops.>"), None, 8);
        let mut other = bus.subscribe(pat("fs.>"), None, 8);
        let d = bus.publish(&msg("ops.disk.cleanup"));
        assert_eq!(
            d,
            Delivered {
                subscribers: 3,
                dropped: 0,
                expired: false
            }
        );
        let got = exact.try_recv().unwrap();
        assert_eq!(got.intent.as_str(), "ops.disk.cleanup");
        // Fan-out shares one copy.
        assert!(Arc::ptr_eq(&got, &star.try_recv().unwrap()));
        assert_eq!(drain(&mut tail), 1);
        assert_eq!(drain(&mut other), 0);
        assert_eq!(bus.publish(&msg("net.up")).subscribers, 0);
    }

    #[test]
    fn handler_group_members_share_work_round_robin() {
        let bus = Bus::new();
        let mut members: Vec<_> = (0..3)
            .map(|_| bus.subscribe(pat("ops.disk.*"), Some("cleaners".into()), 1000))
            .collect();
        let mut watcher = bus.subscribe(pat("ops.>"), None, 1000);
        let mut other_group = bus.subscribe(pat("ops.disk.*"), Some("auditors".into()), 1000);
        for _ in 0..300 {
            // One per group plus the watcher.
            assert_eq!(bus.publish(&msg("ops.disk.cleanup")).subscribers, 3);
        }
        let counts: Vec<usize> = members.iter_mut().map(drain).collect();
        assert_eq!(counts, vec![100, 100, 100]);
        assert_eq!(drain(&mut watcher), 300);
        assert_eq!(drain(&mut other_group), 300);
    }

    #[test]
    fn a_full_group_member_passes_the_message_on() {
        let bus = Bus::new();
        let mut a = bus.subscribe(pat("job"), Some("g".into()), 1);
        let mut b = bus.subscribe(pat("job"), Some("g".into()), 10);
        for _ in 0..5 {
            assert_eq!(bus.publish(&msg("job")).subscribers, 1);
        }
        assert_eq!((drain(&mut a), drain(&mut b)), (1, 4));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let bus = Bus::new();
        let mut slow = bus.subscribe(pat("tick"), None, 2);
        let mut fast = bus.subscribe(pat("tick"), None, 10);
        let mut total = Delivered::default();
        for _ in 0..5 {
            let d = bus.publish(&msg("tick"));
            total.subscribers += d.subscribers;
            total.dropped += d.dropped;
        }
        assert_eq!((total.subscribers, total.dropped), (7, 3));
        assert_eq!((drain(&mut slow), drain(&mut fast)), (2, 5));
        assert_eq!(bus.stats().dropped, 3);
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let bus = Bus::new();
        let a = bus.subscribe(pat("x.*"), None, 1);
        let b = bus.subscribe(pat("x.y"), Some("g".into()), 1);
        assert_eq!(bus.subscriptions(), 2);
        drop(a);
        drop(b);
        assert_eq!(bus.subscriptions(), 0);
        assert_eq!(bus.publish(&msg("x.y")).subscribers, 0);
        let table = bus.inner.table.read().unwrap();
        assert!(table.literal.is_empty() && table.wild.is_empty());
    }

    #[test]
    fn an_expired_message_is_not_delivered() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(pat("ops.>"), None, 8);
        let past = Envelope::builder(Subject::new("ops.late").unwrap(), "owner")
            .deadline(now_ms() - 1)
            .build()
            .unwrap();
        assert_eq!(
            bus.publish(&past),
            Delivered {
                subscribers: 0,
                dropped: 0,
                expired: true
            }
        );
        let future = Envelope::builder(Subject::new("ops.soon").unwrap(), "owner")
            .ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(bus.publish(&future).subscribers, 1);
        assert_eq!(sub.try_recv().unwrap().intent.as_str(), "ops.soon");
        assert!(sub.try_recv().is_none());
        assert_eq!(bus.stats().expired, 1);
    }

    #[tokio::test]
    async fn request_gets_its_reply() {
        let bus = Bus::new();
        let mut handler = bus.subscribe(pat("math.double"), Some("math".into()), 8);
        let responder = bus.clone();
        let task = tokio::spawn(async move {
            while let Some(req) = handler.recv().await {
                let n = req.payload["n"].as_i64().unwrap();
                responder
                    .respond(&req, json!({"n": n * 2}), "agent:math")
                    .unwrap();
            }
        });
        for n in 0..10 {
            let req = Envelope::new(
                Subject::new("math.double").unwrap(),
                "owner",
                json!({"n": n}),
            )
            .unwrap();
            let id = req.id.clone();
            let reply = bus.request(req, Duration::from_secs(5)).await.unwrap();
            assert_eq!(reply.payload, json!({"n": n * 2}));
            assert_eq!(reply.correlation.as_deref(), Some(id.as_str()));
            assert_eq!(reply.from, "agent:math");
        }
        assert!(bus.inner.waiting.lock().unwrap().is_empty());
        task.abort();
    }

    #[tokio::test]
    async fn request_with_no_responder_fails_or_times_out() {
        let bus = Bus::new();
        let err = bus
            .request(msg("nobody.home"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            BusError::NoResponders {
                intent: "nobody.home".into()
            }
        );

        // A subscriber that never answers.
        let _silent = bus.subscribe(pat("silent.>"), None, 8);
        let started = std::time::Instant::now();
        let err = bus
            .request(msg("silent.one"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(
            bus.inner.waiting.lock().unwrap().is_empty(),
            "timed-out waiter removed"
        );

        // A reply after the timeout reaches no one, and no subscriber either.
        let late = msg("silent.one").reply(json!(null), "agent:x").unwrap();
        assert_eq!(bus.publish(&late).subscribers, 0);
        assert_eq!(bus.stats().unclaimed_replies, 1);
    }

    #[tokio::test]
    async fn request_rules() {
        let bus = Bus::new();
        let reply = msg("a").reply(json!(null), "x").unwrap();
        assert_eq!(
            bus.request(reply, Duration::from_secs(1))
                .await
                .unwrap_err(),
            BusError::CorrelatedRequest
        );
        let past = Envelope::builder(Subject::new("a").unwrap(), "o")
            .deadline(1)
            .build()
            .unwrap();
        assert_eq!(
            bus.request(past, Duration::from_secs(1)).await.unwrap_err(),
            BusError::Expired
        );
        // The deadline shortens the wait.
        let _silent = bus.subscribe(pat("a"), None, 8);
        let soon = Envelope::builder(Subject::new("a").unwrap(), "o")
            .ttl(Duration::from_millis(200))
            .build()
            .unwrap();
        match bus
            .request(soon, Duration::from_secs(30))
            .await
            .unwrap_err()
        {
            BusError::Timeout { after, .. } => assert!(after <= Duration::from_millis(200)),
            other => panic!("{other:?}"),
        }
    }
}
