//! Which waiting model call gets the next free slot of a cortex. Pure: no I/O, no clock reads;
//! the caller passes the time (since any fixed origin) into every call.
//!
//! The order, when a slot frees:
//!
//! 1. **Aged background flows**, oldest first. A *flow* is one agent's calls of one class, served
//!    first in, first out. A background flow ages while it waits without being served: its age
//!    is the time since its head call arrived or since the flow was last served, whichever is
//!    later. A flow that reaches [`Policy::aging`] takes the next slot ahead of everything, once;
//!    being served resets its age, so it then waits its turn again.
//! 2. **Interactive flows**, by fair share.
//! 3. **Background flows**, by fair share.
//!
//! Aging is a threshold per flow rather than a continuous priority per call, for two reasons.
//! The guarantees are crisp: an interactive call always goes before a background call that has
//! not aged, and a background agent with work waiting is served at least once per aging bound
//! (plus the aged flows ahead of it), while interactive traffic gives up at most one slot per
//! background agent per aging bound. And aging then cannot undo fair share: a flood that is
//! being served its share keeps resetting its age, so its thousandth call never ages past
//! another agent's first one; only a flow that is not being served at all ages.
//!
//! Fair share within a class is start-time fair queueing (Goyal, Vin and Cheng, 1996): each
//! flow's head carries a virtual start tag, `max(virtual time, the flow's finish tag)`, and the
//! flow's finish tag advances by the call's cost when it is served; the head with the smallest
//! start goes first, ties to the earliest arrival. The class's virtual time is the start tag of
//! the last call it served in order. So a flow that has had more service waits behind one that
//! has had less, and a flow that comes back after idling starts at the present virtual time, not
//! with credit saved up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The priority class of a model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Someone is waiting on the answer: served before background work.
    Interactive,
    /// Nobody is waiting: served when no interactive call waits, or when it has aged.
    Background,
}

impl Class {
    /// Both classes, interactive first.
    pub const ALL: [Class; 2] = [Class::Interactive, Class::Background];

    pub(crate) const fn index(self) -> usize {
        match self {
            Class::Interactive => 0,
            Class::Background => 1,
        }
    }
}

/// The scheduling policy of a cortex's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// A background flow that has waited this long without being served takes the next slot.
    #[serde(rename = "aging_ms", with = "millis")]
    pub aging: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            aging: Duration::from_secs(2),
        }
    }
}

/// Durations as whole milliseconds in configuration files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Identifies one waiting call in its [`Queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The call [`Queue::pop`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The call.
    pub ticket: Ticket,
    /// Whose call it is.
    pub agent: Arc<str>,
    /// Its class.
    pub class: Class,
    /// When it was pushed.
    pub enqueued_at: Duration,
    /// It went ahead because its flow had aged, not in its class's fair-share order.
    pub aged: bool,
}

/// A flow: one agent's calls of one class.
type FlowKey = (Class, Arc<str>);

#[derive(Debug)]
struct Waiting {
    ticket: Ticket,
    enqueued_at: Duration,
    cost: u64,
}

#[derive(Debug)]
struct Flow {
    waiting: VecDeque<Waiting>,
    /// The virtual finish tag of the last call served.
    finish: u64,
    /// When the flow was last served.
    last_served: Duration,
    /// The head's place in the indexes, while the flow has a head.
    head: Option<Head>,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    /// Virtual start tag.
    start: u64,
    /// Since when the flow has waited unserved (the aging clock).
    since: Duration,
    /// The head's ticket, which orders ties by arrival.
    ticket: Ticket,
}

#[derive(Debug, Default)]
struct Tier {
    /// The start tag of the last call served in fair-share order; when the class's queue
    /// empties, the largest finish tag served, so that nobody keeps an advantage over an idle
    /// spell.
    virtual_time: u64,
    /// The largest finish tag served.
    max_finish: u64,
    /// Flow heads by (start tag, arrival).
    heads: BTreeMap<(u64, Ticket), Arc<str>>,
    /// The class's flows, by agent: those waiting, and those served recently enough that their
    /// finish tag is still ahead of the virtual time.
    flows: HashMap<Arc<str>, Flow>,
    /// Calls waiting in this class.
    len: usize,
    /// Idle flows are swept out when there are more flows than this.
    sweep_above: usize,
}

impl Tier {
    /// One call fewer waits.
    fn shrink(&mut self) {
        self.len -= 1;
        if self.len == 0 {
            self.virtual_time = self.virtual_time.max(self.max_finish);
        }
    }

    /// Drops the state of flows that wait for nothing and whose finish tag the virtual time has
    /// passed (they would start at the virtual time anyway). Sweeps only when the flows have
    /// doubled since the last sweep, so the cost per call stays constant, and memory stays
    /// proportional to the agents seen recently.
    fn forget_idle_flows(&mut self) {
        if self.flows.len() <= self.sweep_above {
            return;
        }
        let virtual_time = self.virtual_time;
        self.flows
            .retain(|_, flow| !flow.waiting.is_empty() || flow.finish > virtual_time);
        self.sweep_above = 2 * self.flows.len() + 64;
    }
}

/// The waiting calls of one cortex, and the choice of which goes next.
#[derive(Debug, Default)]
pub struct Queue {
    policy: Policy,
    tiers: [Tier; 2],
    /// Background flow heads by (waiting since, arrival): the aging clock.
    aging: BTreeMap<(Duration, Ticket), Arc<str>>,
    tickets: HashMap<Ticket, FlowKey>,
    next_ticket: u64,
}

impl Queue {
    /// An empty queue under `policy`.
    pub fn new(policy: Policy) -> Self {
        Queue {
            policy,
            ..Queue::default()
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Calls waiting.
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Whether no call waits.
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Calls of `class` waiting.
    pub fn len_of(&self, class: Class) -> usize {
        self.tiers[class.index()].len
    }

    /// Queues a call from `agent` at `now`. `cost` is its relative size in fair share (for
    /// example estimated tokens, in one unit for all callers of a cortex); 0 counts as 1.
    pub fn push(&mut self, agent: &str, class: Class, cost: u32, now: Duration) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let tier = &mut self.tiers[class.index()];
        // Look the agent up by reference: only a new flow allocates its name.
        let name = match tier.flows.get_key_value(agent) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(agent);
                let flow = Flow {
                    waiting: VecDeque::new(),
                    finish: 0,
                    last_served: Duration::ZERO,
                    head: None,
                };
                tier.flows.insert(name.clone(), flow);
                name
            }
        };
        let Some(flow) = tier.flows.get_mut(&name) else {
            return ticket;
        };
        flow.waiting.push_back(Waiting {
            ticket,
            enqueued_at: now,
            cost: u64::from(cost.max(1)),
        });
        let first = flow.waiting.len() == 1;
        tier.len += 1;
        let key: FlowKey = (class, name);
        self.tickets.insert(ticket, key.clone());
        if first {
            self.index_head(&key);
        }
        ticket
    }

    /// Takes the call that gets the next free slot at `now`; `None` when none waits.
    pub fn pop(&mut self, now: Duration) -> Option<Picked> {
        let (key, aged) = self.choose(now)?;
        let head = self.unindex_head(&key)?;
        let tier = &mut self.tiers[key.0.index()];
        let flow = tier.flows.get_mut(&key.1)?;
        let call = flow.waiting.pop_front()?;
        flow.finish = head.start.saturating_add(call.cost);
        flow.last_served = now;
        let (finish, emptied) = (flow.finish, flow.waiting.is_empty());
        if !aged {
            tier.virtual_time = tier.virtual_time.max(head.start);
        }
        tier.max_finish = tier.max_finish.max(finish);
        tier.shrink();
        self.tickets.remove(&call.ticket);
        if emptied {
            tier.forget_idle_flows();
        } else {
            self.index_head(&key);
        }
        Some(Picked {
            ticket: call.ticket,
            agent: key.1,
            class: key.0,
            enqueued_at: call.enqueued_at,
            aged,
        })
    }

    /// Withdraws a waiting call (its caller gave up). Returns whether it was waiting.
    pub fn remove(&mut self, ticket: Ticket) -> bool {
        let Some(key) = self.tickets.remove(&ticket) else {
            return false;
        };
        let is_head = self.tiers[key.0.index()]
            .flows
            .get(&key.1)
            .and_then(|f| f.head)
            .is_some_and(|h| h.ticket == ticket);
        if is_head {
            self.unindex_head(&key);
        }
        let tier = &mut self.tiers[key.0.index()];
        let Some(flow) = tier.flows.get_mut(&key.1) else {
            return false;
        };
        let Some(at) = flow.waiting.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        flow.waiting.remove(at);
        let emptied = flow.waiting.is_empty();
        tier.shrink();
        if emptied {
            tier.forget_idle_flows();
        } else if is_head {
            self.index_head(&key);
        }
        true
    }

    /// Which flow goes next, and whether it goes because it aged.
    fn choose(&self, now: Duration) -> Option<(FlowKey, bool)> {
        if let Some((&(since, _), agent)) = self.aging.first_key_value()
            && now.saturating_sub(since) >= self.policy.aging
        {
            return Some(((Class::Background, agent.clone()), true));
        }
        Class::ALL.into_iter().find_map(|class| {
            let (_, agent) = self.tiers[class.index()].heads.first_key_value()?;
            Some(((class, agent.clone()), false))
        })
    }

    /// Tags the flow's head call and enters it in the indexes.
    fn index_head(&mut self, key: &FlowKey) {
        let tier = &mut self.tiers[key.0.index()];
        let Some(flow) = tier.flows.get_mut(&key.1) else {
            return;
        };
        let Some(call) = flow.waiting.front() else {
            return;
        };
        let head = Head {
            start: tier.virtual_time.max(flow.finish),
            since: call.enqueued_at.max(flow.last_served),
            ticket: call.ticket,
        };
        flow.head = Some(head);
        tier.heads.insert((head.start, head.ticket), key.1.clone());
        if key.0 == Class::Background {
            self.aging.insert((head.since, head.ticket), key.1.clone());
        }
    }

    /// Takes the flow's head out of the indexes.
    fn unindex_head(&mut self, key: &FlowKey) -> Option<Head> {
        let tier = &mut self.tiers[key.0.index()];
        let head = tier.flows.get_mut(&key.1)?.head.take()?;
        tier.heads.remove(&(head.start, head.ticket));
        self.aging.remove(&(head.since, head.ticket));
        Some(head)
    }
}

#[cfg(test)]
mod tests;
