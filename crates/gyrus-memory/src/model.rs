//! The one memory model: an [`Item`], its [`Kind`] and [`Namespace`].
//!
//! Items are never overwritten. An update stores a new version that `supersedes` the old
//! one and closes the old one's validity (`valid_to`); both stay readable. Times are Unix
//! milliseconds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest content accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// The most tags on one item.
pub const MAX_TAGS: usize = 32;
/// The longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// The largest metadata object, in JSON bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// What kind of memory an item is.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Something that happened: an ask, an answer, a decision, a tool call.
    Episodic,
    /// A fact or preference, distilled or told (the default).
    #[default]
    Semantic,
    /// A learned procedure: a parameterised tool-call trace keyed by intent.
    Procedural,
    /// A chunk of an ingested document.
    Knowledge,
    /// The owner's compact profile.
    Sketch,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 5] = [
        Kind::Episodic,
        Kind::Semantic,
        Kind::Procedural,
        Kind::Knowledge,
        Kind::Sketch,
    ];

    /// The name used in JSON, SQL and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Episodic => "episodic",
            Kind::Semantic => "semantic",
            Kind::Procedural => "procedural",
            Kind::Knowledge => "knowledge",
            Kind::Sketch => "sketch",
        }
    }

    /// Parses [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose memory an item is in: `owner`, `agent:<id>`, `session:<id>`, `token:<id>` (each a
/// principal's own), or `shared:<name>` (a space the owner grants to several).
///
/// A namespace is also the policy resource `memory:<namespace>`, so a grant on
/// `memory:shared:team` lets an agent into that space, and `memory:<its id>` is always its
/// own.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct Namespace(String);

impl Namespace {
    /// The owner's namespace.
    pub fn owner() -> Namespace {
        Namespace("owner".to_string())
    }

    /// Parses and checks a namespace: `owner`, or `agent:`, `session:`, `token:` or
    /// `shared:` followed by 1 to 64 of `[A-Za-z0-9_.-]`. No patterns: `*` is not a
    /// namespace, so no query can name more than it was allowed.
    pub fn parse(s: &str) -> Result<Namespace, String> {
        if s == "owner" {
            return Ok(Namespace::owner());
        }
        let Some((kind, name)) = s.split_once(':') else {
            return Err(format!(
                "namespace {s:?} is not owner, agent:<id>, session:<id>, token:<id> or shared:<name>"
            ));
        };
        if !matches!(kind, "agent" | "session" | "token" | "shared") {
            return Err(format!(
                "namespace {s:?} has an unknown kind {kind:?}; use agent, session, token or shared"
            ));
        }
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && name != "."
            && name != "..";
        if !ok {
            return Err(format!(
                "namespace {s:?}: the name after {kind}: must be 1 to 64 letters, digits, _ - or ."
            ));
        }
        Ok(Namespace(s.to_string()))
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The policy resource for this namespace: `memory:<namespace>`.
    pub fn resource(&self) -> String {
        format!("memory:{}", self.0)
    }
}

impl TryFrom<String> for Namespace {
    type Error = String;
    fn try_from(s: String) -> Result<Namespace, String> {
        Namespace::parse(&s)
    }
}

impl From<Namespace> for String {
    fn from(n: Namespace) -> String {
        n.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One version of a memory item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Item {
    /// This version's id, `mem_` and 16 hex digits. Never reused.
    pub id: String,
    /// Whose memory it is.
    pub namespace: Namespace,
    /// What kind of memory.
    pub kind: Kind,
    /// The text.
    pub content: String,
    /// Labels for filtering, lowercase.
    pub tags: Vec<String>,
    /// Free-form JSON object.
    pub metadata: serde_json::Value,
    /// Where it came from: `owner`, `audit:<seq>`, `file:<path>#<chunk>`, a principal id…
    pub source: Option<String>,
    /// When this version was stored.
    pub created_at: i64,
    /// From when it holds.
    pub valid_from: i64,
    /// Until when it held: set when a newer version superseded it; `None` while current.
    pub valid_to: Option<i64>,
    /// The version this one replaced.
    pub supersedes: Option<String>,
    /// Time to live in milliseconds: the item is ephemeral and expires then.
    pub ttl_ms: Option<i64>,
    /// When an ephemeral item expires (`created_at + ttl_ms`).
    pub expires_at: Option<i64>,
}

impl Item {
    /// Whether this version holds at `t` (and has not expired by then).
    pub fn holds_at(&self, t: i64) -> bool {
        self.valid_from <= t
            && self.valid_to.is_none_or(|end| t < end)
            && self.expires_at.is_none_or(|end| t < end)
    }
}

/// What a caller gives to store an item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewItem {
    /// The kind; semantic when not given.
    #[serde(default)]
    pub kind: Kind,
    /// The text (not blank, at most 64 KiB).
    pub content: String,
    /// Labels (at most 32, each at most 64 bytes; stored lowercase).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON object (at most 16 KiB).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Where it came from.
    #[serde(default)]
    pub source: Option<String>,
    /// From when it holds, Unix ms; now when not given.
    #[serde(default)]
    pub valid_from: Option<i64>,
    /// Time to live in milliseconds: makes the item ephemeral.
    #[serde(default)]
    pub ttl_ms: Option<i64>,
}

impl NewItem {
    /// An item of `kind` with `content` and nothing else.
    pub fn new(kind: Kind, content: impl Into<String>) -> NewItem {
        NewItem {
            kind,
            content: content.into(),
            ..NewItem::default()
        }
    }

    /// Adds tags.
    pub fn tagged<I, S>(mut self, tags: I) -> NewItem
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the source.
    pub fn from_source(mut self, source: impl Into<String>) -> NewItem {
        self.source = Some(source.into());
        self
    }

    /// Checks the bounds and returns the tags normalised (trimmed, lowercase, deduplicated,
    /// in order).
    pub fn check(&self) -> Result<Vec<String>, String> {
        if self.content.trim().is_empty() {
            return Err("content is blank; give the text to remember".to_string());
        }
        if self.content.len() > MAX_CONTENT_BYTES {
            return Err(format!(
                "content is {} bytes, more than {MAX_CONTENT_BYTES}; split it (gyrus memory ingest chunks files)",
                self.content.len()
            ));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!("{} tags, at most {MAX_TAGS}", self.tags.len()));
        }
        let mut tags: Vec<String> = Vec::with_capacity(self.tags.len());
        for tag in &self.tags {
            let t = tag.trim().to_lowercase();
            if t.is_empty() || t.len() > MAX_TAG_BYTES || t.chars().any(char::is_control) {
                return Err(format!(
                    "tag {tag:?} must be 1 to {MAX_TAG_BYTES} bytes without control characters"
                ));
            }
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err("metadata must be a JSON object".to_string());
            }
            if m.to_string().len() > MAX_METADATA_BYTES {
                return Err(format!("metadata is more than {MAX_METADATA_BYTES} bytes"));
            }
        }
        if let Some(ttl) = self.ttl_ms
            && ttl <= 0
        {
            return Err(format!("ttl_ms must be positive, got {ttl}"));
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_checked() {
        for ok in [
            "owner",
            "agent:ag_7",
            "session:ses_1",
            "shared:team-a",
            "token:tok_1",
        ] {
            assert_eq!(Namespace::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "*",
            "agent:*",
            "agent:",
            "owner:x",
            "shared:a b",
            "agent:a/b",
            "shared:..",
            "Owner",
            "agent:ag_7%",
        ] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Namespace::parse("agent:ag_7").unwrap().resource(),
            "memory:agent:ag_7"
        );
    }

    #[test]
    fn new_items_are_bounded() {
        assert!(NewItem::new(Kind::Semantic, "  ").check().is_err());
        assert!(
            NewItem::new(Kind::Semantic, "x".repeat(MAX_CONTENT_BYTES + 1))
                .check()
                .is_err()
        );
        let tags = NewItem::new(Kind::Semantic, "x")
            .tagged([" Rust ", "rust", "db"])
            .check()
            .unwrap();
        assert_eq!(tags, ["rust", "db"]);
        let mut bad = NewItem::new(Kind::Semantic, "x");
        bad.metadata = Some(serde_json::json!([1]));
        assert!(bad.check().is_err());
        bad.metadata = None;
        bad.ttl_ms = Some(0);
        assert!(bad.check().is_err());
    }
}
