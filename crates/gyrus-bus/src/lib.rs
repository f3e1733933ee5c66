//! Semantic IPC for gyrus: messages addressed by what they are about, not by who handles them.
//!
//! - [`subject`]: intents (`ops.disk.cleanup`) and patterns (`ops.*.cleanup`, `ops.>`), matched
//!   as in NATS so the same subjects work when the bus runs on NATS JetStream. Pure.
//! - [`envelope`]: the message, `{id, intent, schema, from, to, correlation, deadline, payload,
//!   sent_at}`, checked when built and when read from JSON.
//! - [`bus`]: the in-process bus: publish/subscribe by pattern, handler groups (one member
//!   per message, in turn), request/reply, deadlines.
//! - [`mailbox`]: durable per-agent mailboxes in a SQLite file, for agents that are not
//!   listening right now or messages that must not be lost.
//! - [`events`]: the kernel event bus: numbered events for watchers (the API's event stream).
//!
//! # Delivery guarantees
//!
//! | path | guarantee | when a message is lost |
//! |---|---|---|
//! | [`Bus`] | at most once | a subscriber's queue is full (counted), the process ends, nobody matches |
//! | [`Mailboxes`] | at least once, until [`Mailboxes::ack`] | never once `enqueue` returned, short of power loss under [`Durability::Process`] |
//! | [`EventBus`] | at most once, gaps reported | a watcher falls behind ([`EventItem::Lagged`]) |
//!
//! On every path a message at or past its deadline is not delivered. A mailbox message whose
//! lease runs out before it is acknowledged is delivered again, so receivers must tolerate
//! repeats (the envelope id names the message; [`Delivery::attempts`] counts the hand-outs).
//!
//! No I/O except the mailbox database file. The blocking mailbox calls are plain functions;
//! the daemon runs them under `spawn_blocking`.

pub mod bus;
pub mod envelope;
pub mod events;
pub mod mailbox;
pub mod subject;

pub use bus::{Bus, BusError, BusStats, Delivered, ReplyWait, Subscription};
pub use envelope::{Envelope, EnvelopeBuilder, EnvelopeError, new_id, now_ms};
pub use events::{Event, EventBus, EventItem, EventStream};
pub use mailbox::{Delivery, Durability, MailboxError, Mailboxes};
pub use subject::{Pattern, Subject, SubjectError};
