//! The message envelope: `{id, intent, schema, from, to, correlation, deadline, payload}`, the
//! unit of semantic IPC on the in-process bus and in the durable mailboxes.
//!
//! Every field is checked when an envelope is built and again when one is read from JSON, so an
//! envelope that exists is valid. The payload stays JSON: its schema is named, not enforced here.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::subject::{Subject, SubjectError};

/// The longest id, principal id or schema name accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// Why an envelope is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The intent is not a valid subject.
    #[error("bad intent: {0}")]
    Intent(#[from] SubjectError),
    /// A required field, or an optional one that was given, is empty.
    #[error("{field} cannot be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A field is over [`MAX_FIELD_LEN`] bytes.
    #[error("{field} is too long: at most {MAX_FIELD_LEN} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
    },
    /// A field holds whitespace, a control character or non-ASCII text.
    #[error("{field} has {found:?}: use printable ASCII without spaces (like agent:ag_1f2e)")]
    BadChar {
        /// The field.
        field: &'static str,
        /// The offending character.
        found: char,
    },
}

/// Checks an identifier-like field: 1 to [`MAX_FIELD_LEN`] bytes of printable ASCII, no spaces.
pub(crate) fn check_field(field: &'static str, text: &str) -> Result<(), EnvelopeError> {
    if text.is_empty() {
        return Err(EnvelopeError::Empty { field });
    }
    if text.len() > MAX_FIELD_LEN {
        return Err(EnvelopeError::TooLong { field });
    }
    match text.chars().find(|c| !c.is_ascii_graphic()) {
        Some(found) => Err(EnvelopeError::BadChar { field, found }),
        None => Ok(()),
    }
}

fn check_optional(field: &'static str, text: Option<&str>) -> Result<(), EnvelopeError> {
    text.map_or(Ok(()), |t| check_field(field, t))
}

/// Milliseconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh message id, `msg_` and 16 hex digits.
///
/// Ids are unique within a process (a counter passed through a bijective mix) and, because the
/// counter starts from a random 64-bit seed, unlikely to collide across processes. They are not
/// secrets: do not use one as a capability.
pub fn new_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        getrandom::u64().unwrap_or_else(|_| {
            // No OS randomness: fall back to the clock and the pid, still unique in-process.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        })
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // seed + n * odd is a bijection of n, and so is the splitmix64 finalizer.
    let mut x = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(20);
    id.push_str("msg_");
    for shift in (0..16).rev() {
        id.push(char::from(HEX[((x >> (shift * 4)) & 0xf) as usize]));
    }
    id
}

/// A typed message between principals, addressed by intent.
///
/// Serialized as a JSON object with these field names; `intent` is a string, checked again (as
/// is every other field) when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Wire")]
pub struct Envelope {
    /// Unique message id (`msg_…`, see [`new_id`]).
    pub id: String,
    /// What the message is about, e.g. `ops.disk.cleanup`.
    pub intent: Subject,
    /// The name of the payload's schema, if the sender states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The sending principal, e.g. `owner` or `agent:ag_1f2e`.
    pub from: String,
    /// The recipient agent, when the message is for one agent (its mailbox) rather than for
    /// whoever subscribes to the intent. The in-process bus does not filter on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// For a reply: the id of the request it answers. An envelope with a correlation is a
    /// reply, and the bus hands it only to the request waiting for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// When the message stops being worth delivering, in Unix milliseconds. An envelope at or
    /// past its deadline is not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// The message body.
    pub payload: Value,
    /// When it was built, in Unix milliseconds.
    pub sent_at: u64,
}

/// The shape read from JSON before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    id: String,
    intent: Subject,
    #[serde(default)]
    schema: Option<String>,
    from: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    deadline: Option<u64>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    sent_at: u64,
}

impl TryFrom<Wire> for Envelope {
    type Error = EnvelopeError;

    fn try_from(w: Wire) -> Result<Envelope, EnvelopeError> {
        let envelope = Envelope {
            id: w.id,
            intent: w.intent,
            schema: w.schema,
            from: w.from,
            to: w.to,
            correlation: w.correlation,
            deadline: w.deadline,
            payload: w.payload,
            sent_at: w.sent_at,
        };
        envelope.validate()?;
        Ok(envelope)
    }
}

impl Envelope {
    /// A new message from `from` about `intent`, with a fresh id and no recipient, correlation
    /// or deadline. Fails if `from` is not a valid principal id.
    pub fn new(
        intent: Subject,
        from: impl Into<String>,
        payload: Value,
    ) -> Result<Envelope, EnvelopeError> {
        Envelope::builder(intent, from).payload(payload).build()
    }

    /// Starts building a message with every optional field.
    pub fn builder(intent: Subject, from: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder {
            envelope: Envelope {
                id: new_id(),
                intent,
                schema: None,
                from: from.into(),
                to: None,
                correlation: None,
                deadline: None,
                payload: Value::Null,
                sent_at: now_ms(),
            },
        }
    }

    /// The reply to this request: same intent, addressed to the requester, correlated with
    /// this id, and due by this request's deadline.
    pub fn reply(
        &self,
        payload: Value,
        from: impl Into<String>,
    ) -> Result<Envelope, EnvelopeError> {
        let mut builder = Envelope::builder(self.intent.clone(), from)
            .to(self.from.clone())
            .correlation(self.id.clone())
            .payload(payload);
        if let Some(deadline) = self.deadline {
            builder = builder.deadline(deadline);
        }
        builder.build()
    }

    /// Checks every field (the intent is checked by its type).
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        check_field("id", &self.id)?;
        check_field("from", &self.from)?;
        check_optional("schema", self.schema.as_deref())?;
        check_optional("to", self.to.as_deref())?;
        check_optional("correlation", self.correlation.as_deref())?;
        Ok(())
    }

    /// True if the deadline is at or before `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.deadline.is_some_and(|d| d <= now_ms)
    }

    /// True if this envelope answers a request (it has a correlation).
    pub fn is_reply(&self) -> bool {
        self.correlation.is_some()
    }
}

/// Builds an [`Envelope`]; see [`Envelope::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct EnvelopeBuilder {
    envelope: Envelope,
}

impl EnvelopeBuilder {
    /// Names the payload's schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.envelope.schema = Some(schema.into());
        self
    }

    /// Addresses the message to one agent.
    pub fn to(mut self, recipient: impl Into<String>) -> Self {
        self.envelope.to = Some(recipient.into());
        self
    }

    /// Marks the message as the reply to request `id`.
    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.envelope.correlation = Some(id.into());
        self
    }

    /// Sets the deadline, in Unix milliseconds.
    pub fn deadline(mut self, unix_ms: u64) -> Self {
        self.envelope.deadline = Some(unix_ms);
        self
    }

    /// Sets the deadline to `ttl` from when the envelope was started.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.envelope.deadline = Some(self.envelope.sent_at.saturating_add(ttl));
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: Value) -> Self {
        self.envelope.payload = payload;
        self
    }

    /// Replaces the generated id (for a caller that assigns its own).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.envelope.id = id.into();
        self
    }

    /// Checks and returns the envelope.
    pub fn build(self) -> Result<Envelope, EnvelopeError> {
        self.envelope.validate()?;
        Ok(self.envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn subject(s: &str) -> Subject {
        Subject::new(s).unwrap()
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.starts_with("msg_"));
            assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn builder_sets_fields_and_json_round_trips() {
        let e = Envelope::builder(subject("ops.disk.cleanup"), "agent:ag_1f2e")
            .schema("gyrus.ops.cleanup/v1")
            .to("agent:ag_9")
            .deadline(4_000_000_000_000)
            .payload(json!({"path": "/tmp", "older_than_days": 7}))
            .build()
            .unwrap();
        let text = serde_json::to_string(&e).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["intent"], "ops.disk.cleanup");
        assert_eq!(
            value.get("correlation"),
            None,
            "absent options are left out"
        );
    }

    #[test]
    fn bad_fields_are_refused_on_build_and_on_read() {
        let s = subject("a.b");
        assert_eq!(
            Envelope::new(s.clone(), "", Value::Null),
            Err(EnvelopeError::Empty { field: "from" })
        );
        assert_eq!(
            Envelope::builder(s.clone(), "owner").to("agent 1").build(),
            Err(EnvelopeError::BadChar {
                field: "to",
                found: ' '
            })
        );
        assert_eq!(
            Envelope::builder(s, "owner")
                .schema("x".repeat(300))
                .build(),
            Err(EnvelopeError::TooLong { field: "schema" })
        );
        let bad_intent =
            r#"{"id":"m1","intent":"ops.*","from":"owner","payload":null,"sent_at":1}"#;
        let err = serde_json::from_str::<Envelope>(bad_intent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wildcards are for patterns only"), "{err}");
        let bad_from = r#"{"id":"m1","intent":"ops.x","from":"","payload":null,"sent_at":1}"#;
        let err = serde_json::from_str::<Envelope>(bad_from)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from cannot be empty"), "{err}");
        let unknown = r#"{"id":"m1","intent":"ops.x","from":"o","sent_at":1,"extra":1}"#;
        assert!(serde_json::from_str::<Envelope>(unknown).is_err());
    }

    #[test]
    fn reply_is_correlated_and_addressed_to_the_requester() {
        let req = Envelope::builder(subject("ops.disk.usage"), "agent:a")
            .deadline(123)
            .build()
            .unwrap();
        let rep = req.reply(json!({"used": 1}), "agent:b").unwrap();
        assert_eq!(rep.correlation.as_deref(), Some(req.id.as_str()));
        assert_eq!(rep.to.as_deref(), Some("agent:a"));
        assert_eq!(rep.from, "agent:b");
        assert_eq!(rep.intent, req.intent);
        assert_eq!(rep.deadline, Some(123));
        assert!(rep.is_reply() && !req.is_reply());
        assert_ne!(rep.id, req.id);
    }

    #[test]
    fn deadline_expiry_is_inclusive() {
        let e = Envelope::builder(subject("a"), "o")
            .deadline(100)
            .build()
            .unwrap();
        assert!(!e.is_expired_at(99));
        assert!(e.is_expired_at(100));
        let ttl = Envelope::builder(subject("a"), "o")
            .ttl(Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(ttl.deadline, Some(ttl.sent_at + 1000));
    }
}
