//! The kernel event bus: what happened (`kernel.agent.started`, `policy.decision`,
//! `ipc.message`), numbered, for anyone watching (the API streams it as server-sent events).
//!
//! Events are best-effort broadcast: a subscriber that falls more than the bus's capacity
//! behind misses events and is told how many ([`EventItem::Lagged`]). The last `capacity`
//! events are kept, so a watcher that reconnects can resume after the last sequence number it
//! saw ([`EventBus::subscribe_after`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::envelope::now_ms;
use crate::subject::{Pattern, Subject};

/// Something that happened in the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in this bus's history: 1, 2, 3, … with no gaps, in publish order.
    pub seq: u64,
    /// When it was published, in Unix milliseconds.
    pub time: u64,
    /// What kind of event, e.g. `kernel.agent.started`.
    pub kind: Subject,
    /// Details, shaped by the kind.
    pub data: Value,
}

/// What an [`EventStream`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// The next matching event.
    Event(Arc<Event>),
    /// The subscriber fell behind and this many events (of any kind) were missed.
    Lagged(u64),
}

/// The kernel event bus. Cheap to clone; every clone is the same bus.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    tx: broadcast::Sender<Arc<Event>>,
    /// Held while numbering and sending, so sequence order is delivery order.
    history: Mutex<History>,
}

struct History {
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("capacity", &self.inner.capacity)
            .field("subscribers", &self.inner.tx.receiver_count())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus that buffers up to `capacity` events (at least 1) per subscriber and keeps as
    /// many for resuming.
    pub fn new(capacity: usize) -> EventBus {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        EventBus {
            inner: Arc::new(Inner {
                capacity,
                tx,
                history: Mutex::new(History {
                    next_seq: 1,
                    recent: VecDeque::with_capacity(capacity),
                }),
            }),
        }
    }

    /// Numbers, records and broadcasts an event, and returns it.
    pub fn publish(&self, kind: Subject, data: Value) -> Event {
        let mut history = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let event = Arc::new(Event {
            seq: history.next_seq,
            time: now_ms(),
            kind,
            data,
        });
        history.next_seq += 1;
        if history.recent.len() == self.inner.capacity {
            history.recent.pop_front();
        }
        history.recent.push_back(event.clone());
        // An error only means nobody is subscribed.
        let _ = self.inner.tx.send(event.clone());
        drop(history);
        // The history and the broadcast keep their handles: the caller gets a copy.
        Event::clone(&event)
    }

    /// Events from now on whose kind matches `pattern`.
    pub fn subscribe(&self, pattern: Pattern) -> EventStream {
        EventStream {
            pattern,
            backlog: VecDeque::new(),
            lagged: 0,
            rx: self.inner.tx.subscribe(),
        }
    }

    /// Events after sequence number `after` whose kind matches `pattern`: the kept ones first,
    /// then new ones, with no gap or repeat. If events after `after` are no longer kept, the
    /// stream starts with [`EventItem::Lagged`]. An `after` beyond the last event (say, from
    /// before a restart) means "from now on".
    pub fn subscribe_after(&self, pattern: Pattern, after: u64) -> EventStream {
        let history = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = history.next_seq - 1;
        let (backlog, lagged) = if after >= last {
            (VecDeque::new(), 0)
        } else {
            let oldest = history.recent.front().map_or(history.next_seq, |e| e.seq);
            let backlog = history
                .recent
                .iter()
                .filter(|e| e.seq > after)
                .cloned()
                .collect();
            (backlog, oldest.saturating_sub(after + 1))
        };
        // Subscribing under the lock: everything published from here on is in `rx`, and
        // everything before is in the backlog.
        let rx = self.inner.tx.subscribe();
        drop(history);
        EventStream {
            pattern,
            backlog,
            lagged,
            rx,
        }
    }

    /// The sequence number of the last event published (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_seq
            - 1
    }
}

/// A subscriber's view of the event bus, filtered by a pattern.
#[derive(Debug)]
pub struct EventStream {
    pattern: Pattern,
    backlog: VecDeque<Arc<Event>>,
    lagged: u64,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl EventStream {
    /// The next matching event, or how many events were missed; `None` once the bus is gone.
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Option<EventItem> {
        if self.lagged > 0 {
            return Some(EventItem::Lagged(std::mem::take(&mut self.lagged)));
        }
        while let Some(event) = self.backlog.pop_front() {
            if self.pattern.matches(&event.kind) {
                return Some(EventItem::Event(event));
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(event) if self.pattern.matches(&event.kind) => {
                    return Some(EventItem::Event(event));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(EventItem::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The pattern this stream filters by.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;
    use std::time::Duration;

    fn kind(s: &str) -> Subject {
        Subject::new(s).unwrap()
    }

    fn pat(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    async fn next(stream: &mut EventStream) -> EventItem {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
    }

    fn seq(item: EventItem) -> u64 {
        match item {
            EventItem::Event(e) => e.seq,
            EventItem::Lagged(n) => panic!("lagged {n}"),
        }
    }

    #[tokio::test]
    async fn streams_filter_by_pattern_and_numbers_have_no_gaps() {
        let bus = EventBus::new(16);
        let mut agents = bus.subscribe(pat("kernel.agent.*"));
        let mut all = bus.subscribe(pat(">"));
        let e1 = bus.publish(kind("kernel.agent.started"), json!({"id": "ag_1"}));
        bus.publish(kind("policy.decision"), json!({"allow": true}));
        bus.publish(kind("kernel.agent.stopped"), json!({"id": "ag_1"}));
        assert_eq!(e1.seq, 1);
        assert_eq!(e1.kind.as_str(), "kernel.agent.started");
        match next(&mut agents).await {
            EventItem::Event(e) => assert_eq!(*e, e1),
            other => panic!("{other:?}"),
        }
        assert_eq!(seq(next(&mut agents).await), 3);
        for want in 1..=3 {
            assert_eq!(seq(next(&mut all).await), want);
        }
        assert_eq!(bus.last_seq(), 3);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_much_it_missed() {
        let bus = EventBus::new(4);
        let mut slow = bus.subscribe(pat("ipc.>"));
        for n in 0..10 {
            bus.publish(kind("ipc.message"), json!(n));
        }
        assert_eq!(next(&mut slow).await, EventItem::Lagged(6));
        for want in 7..=10 {
            assert_eq!(seq(next(&mut slow).await), want);
        }
    }

    #[tokio::test]
    async fn resuming_replays_kept_events_then_live_ones() {
        let bus = EventBus::new(4);
        for n in 0..6 {
            bus.publish(kind(if n % 2 == 0 { "a.x" } else { "b.x" }), json!(n));
        }
        // Kept: 3..=6. Resuming after 4 replays 5 and 6, then goes live.
        let mut resumed = bus.subscribe_after(pat(">"), 4);
        bus.publish(kind("a.y"), json!(6));
        for want in 5..=7 {
            assert_eq!(seq(next(&mut resumed).await), want);
        }
        // Resuming from before what is kept reports the gap first.
        let mut old = bus.subscribe_after(pat("a.>"), 0);
        assert_eq!(next(&mut old).await, EventItem::Lagged(3));
        assert_eq!(seq(next(&mut old).await), 5);
        assert_eq!(seq(next(&mut old).await), 7);
        // From a sequence number this bus never reached: live only.
        let mut future = bus.subscribe_after(pat(">"), 1_000);
        bus.publish(kind("c"), json!(null));
        assert_eq!(seq(next(&mut future).await), 8);
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_bus_is_gone() {
        let bus = EventBus::new(4);
        let mut s = bus.subscribe(pat(">"));
        drop(bus);
        assert_eq!(s.next().await, None);
    }

    #[test]
    fn events_serialize_with_kind_as_a_string() {
        let bus = EventBus::new(1);
        let e = bus.publish(kind("kernel.agent.started"), json!({"id": "ag_1"}));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "kernel.agent.started");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }
}
