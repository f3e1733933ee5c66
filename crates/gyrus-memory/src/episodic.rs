//! The episodic log, fed from the audit trail: every tool call's outcome, every refused or
//! held request and every kernel event becomes an episodic item in the namespace of the
//! principal it was about, with `source = audit:<seq>` linking it to its audit entry.
//!
//! The feed follows the audit log by sequence number, with its watermark stored in the same
//! transaction as the episodes, so a crash neither loses nor repeats an episode, and a
//! daemon that was down catches up at its next start.

use gyrus_audit::{AuditLog, Entry, EntryKind};

use crate::model::{Kind, Namespace, NewItem};
use crate::store::{MemoryError, MemoryStore};

/// The `meta` key of the feed's watermark: the last audit seq fed.
pub const WATERMARK: &str = "episodic.audit_seq";
/// Audit entries read per transaction.
pub const BATCH: u64 = 256;

/// Reads the memory tools' own reads would only echo themselves into memory.
const QUIET: [&str; 3] = ["memory.query", "memory.get", "memory.history"];

/// The episode an audit entry makes, and whose it is; `None` for entries that make none:
/// allowed decisions (their outcome entry follows and says more) and memory reads.
pub fn episode(entry: &Entry) -> Option<(Namespace, NewItem)> {
    let r = &entry.record;
    if QUIET.contains(&r.action.as_str()) {
        return None;
    }
    let namespace = Namespace::parse(&r.principal).unwrap_or_else(|_| Namespace::owner());
    let decision = r.decision.map(|d| d.as_str().to_string());
    let (event, content) = match r.kind {
        EntryKind::Decision => {
            let d = decision.clone().unwrap_or_default();
            if d == "allow" {
                return None;
            }
            (
                "decision",
                format!(
                    "{} asked for {} on {}: {d} ({})",
                    r.principal, r.action, r.resource, r.reason
                ),
            )
        }
        EntryKind::Outcome => (
            "tool.call",
            format!(
                "{} ran {} on {}: {}",
                r.principal,
                r.action,
                r.resource,
                r.outcome.as_deref().unwrap_or("done")
            ),
        ),
        EntryKind::Event => (
            "event",
            format!("{}: {} {}", r.action, r.resource, r.reason)
                .trim()
                .to_string(),
        ),
    };
    let mut content = content;
    if !r.intent.is_empty() {
        content.push_str(&format!(" (intent: {})", r.intent));
    }
    let content: String = content.chars().take(4000).collect();
    let metadata = serde_json::json!({
        "event": event,
        "tool": r.action,
        "resource": r.resource,
        "outcome": r.outcome.clone().or(decision),
        "principal": r.principal,
        "intent": r.intent,
        "request_id": r.request_id,
        "audit_seq": entry.seq,
    });
    let mut item = NewItem::new(Kind::Episodic, content)
        .tagged([event.to_string()])
        .from_source(format!("audit:{}", entry.seq));
    item.metadata = Some(metadata);
    Some((namespace, item))
}

/// Feeds the audit entries after the watermark into `store`, [`BATCH`] at a time, until it
/// has caught up. Returns how many episodes it stored.
pub fn feed(store: &MemoryStore, audit: &AuditLog, now: i64) -> Result<usize, MemoryError> {
    let mut done: u64 = store
        .meta(WATERMARK)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut stored = 0;
    loop {
        let last = audit.len();
        if done >= last {
            return Ok(stored);
        }
        let end = last.min(done + BATCH);
        let entries = audit
            .range(done + 1..=end)
            .map_err(|e| MemoryError::Invalid(format!("cannot read the audit log: {e}")))?;
        let episodes: Vec<(Namespace, NewItem)> = entries.iter().filter_map(episode).collect();
        stored += episodes.len();
        store.store_entries(episodes, now, Some((WATERMARK, &end.to_string())))?;
        done = end;
    }
}
