//! What one audit entry holds, and the canonical encoding its hash is computed over (specified
//! in the crate documentation, "Files and formats"; [`Columns::hash`] implements it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash};

/// The version byte that starts the canonical encoding of an entry.
const FORMAT_VERSION: u8 = 1;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A policy decision on a request: allow, deny or ask.
    Decision,
    /// What happened when an allowed request ran.
    Outcome,
    /// Anything else worth recording (start, stop, a grant added, a key rotated).
    #[default]
    Event,
}

impl EntryKind {
    /// The name stored in the database and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Decision => "decision",
            EntryKind::Outcome => "outcome",
            EntryKind::Event => "event",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "decision" => Ok(EntryKind::Decision),
            "outcome" => Ok(EntryKind::Outcome),
            "event" => Ok(EntryKind::Event),
            other => Err(format!(
                "unknown entry kind {other:?} (expected decision, outcome or event)"
            )),
        }
    }
}

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request was refused.
    Deny,
    /// The request waits for the owner's approval.
    Ask,
}

impl Decision {
    /// The name stored in the database and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Ask => "ask",
        }
    }

    /// Parses a stored decision column, where the empty string means none.
    pub(crate) fn parse_column(text: &str) -> Result<Option<Self>, String> {
        match text {
            "" => Ok(None),
            "allow" => Ok(Some(Decision::Allow)),
            "deny" => Ok(Some(Decision::Deny)),
            "ask" => Ok(Some(Decision::Ask)),
            other => Err(format!(
                "unknown decision {other:?} (expected allow, deny, ask or empty)"
            )),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append: everything but the sequence number, the time and the hashes, which the
/// log assigns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewEntry {
    /// Links the decision and outcome entries of one request.
    pub request_id: String,
    /// What the entry records.
    pub kind: EntryKind,
    /// Who asked: the owner, a token, an agent.
    pub principal: String,
    /// What was asked for, e.g. a tool name.
    pub action: String,
    /// What it acts on, e.g. a path.
    pub resource: String,
    /// Hex SHA-256 of the canonical JSON of the arguments ([`args_digest`]); may be empty.
    pub args_digest: String,
    /// Why, in the words of whoever gave the intent.
    pub intent: String,
    /// Where the intent came from: `owner`, `plan:<id>`, `agent`, …, recorded as given.
    pub intent_source: String,
    /// The grant that allowed the request, if one did.
    pub grant_id: Option<String>,
    /// The ids of the policies that decided.
    pub policies: Vec<String>,
    /// The decision, for decision entries.
    pub decision: Option<Decision>,
    /// The reason for the decision or the event, in words.
    pub reason: String,
    /// What happened, for outcome entries.
    pub outcome: Option<String>,
    /// How to undo it, where that is possible.
    pub undo_ref: Option<String>,
    /// The intelligence tier that acted, for model calls.
    pub tier: Option<String>,
    /// The cortex (model driver) that acted, for model calls.
    pub cortex: Option<String>,
    /// Anything else, free-form.
    pub detail: Map<String, Value>,
}

/// An entry as stored: a [`NewEntry`] with its place in the log and its hashes.
///
/// In JSON the hashes are lower-case hex strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The 1-based position in the log; sequence numbers are contiguous.
    pub seq: u64,
    /// When the entry was appended, in milliseconds since the Unix epoch.
    pub time: i64,
    /// Everything that was appended (in JSON, its fields sit beside `seq` and `time`).
    #[serde(flatten)]
    pub record: NewEntry,
    /// The previous entry's `entry_hash`; 32 zero bytes for entry 1.
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    /// SHA-256 over `prev_hash` and the canonical encoding of every other field.
    #[serde(with = "hex_hash")]
    pub entry_hash: Hash,
}

impl Entry {
    /// The RFC 6962 leaf hash of this entry in the log's Merkle tree.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.entry_hash)
    }
}

/// The fields of an entry as their stored text, borrowed: the input of the canonical hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub seq: u64,
    pub time: i64,
    pub request_id: &'a str,
    pub kind: &'a str,
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub args_digest: &'a str,
    pub intent: &'a str,
    pub intent_source: &'a str,
    pub grant_id: Option<&'a str>,
    pub policies: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub outcome: Option<&'a str>,
    pub undo_ref: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub cortex: Option<&'a str>,
    pub detail: &'a str,
}

impl Columns<'_> {
    /// The entry hash: SHA-256 over `prev_hash` and the canonical encoding (see the module
    /// documentation).
    pub fn hash(&self, prev_hash: &Hash) -> Hash {
        fn text(hasher: &mut Sha256, value: &str) {
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        fn optional(hasher: &mut Sha256, value: Option<&str>) {
            match value {
                None => hasher.update([0]),
                Some(value) => {
                    hasher.update([1]);
                    text(hasher, value);
                }
            }
        }
        let mut h = Sha256::new();
        h.update(prev_hash);
        h.update([FORMAT_VERSION]);
        h.update(self.seq.to_be_bytes());
        h.update(self.time.to_be_bytes());
        text(&mut h, self.request_id);
        text(&mut h, self.kind);
        text(&mut h, self.principal);
        text(&mut h, self.action);
        text(&mut h, self.resource);
        text(&mut h, self.args_digest);
        text(&mut h, self.intent);
        text(&mut h, self.intent_source);
        optional(&mut h, self.grant_id);
        text(&mut h, self.policies);
        text(&mut h, self.decision);
        text(&mut h, self.reason);
        optional(&mut h, self.outcome);
        optional(&mut h, self.undo_ref);
        optional(&mut h, self.tier);
        optional(&mut h, self.cortex);
        text(&mut h, self.detail);
        h.finalize().into()
    }
}

/// A [`NewEntry`] with its JSON columns rendered: ready to hash and insert.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub entry: NewEntry,
    pub policies_json: String,
    pub detail_json: String,
}

impl Prepared {
    pub fn new(entry: NewEntry) -> Self {
        // Serialising a Vec<String> or a JSON map cannot fail: all keys are strings.
        let policies_json =
            serde_json::to_string(&entry.policies).unwrap_or_else(|_| "[]".to_owned());
        let detail_json = serde_json::to_string(&entry.detail).unwrap_or_else(|_| "{}".to_owned());
        Self {
            entry,
            policies_json,
            detail_json,
        }
    }

    pub fn columns(&self, seq: u64, time: i64) -> Columns<'_> {
        let e = &self.entry;
        Columns {
            seq,
            time,
            request_id: &e.request_id,
            kind: e.kind.as_str(),
            principal: &e.principal,
            action: &e.action,
            resource: &e.resource,
            args_digest: &e.args_digest,
            intent: &e.intent,
            intent_source: &e.intent_source,
            grant_id: e.grant_id.as_deref(),
            policies: &self.policies_json,
            decision: e.decision.map_or("", Decision::as_str),
            reason: &e.reason,
            outcome: e.outcome.as_deref(),
            undo_ref: e.undo_ref.as_deref(),
            tier: e.tier.as_deref(),
            cortex: e.cortex.as_deref(),
            detail: &self.detail_json,
        }
    }

    pub fn into_entry(self, seq: u64, time: i64, prev_hash: Hash, entry_hash: Hash) -> Entry {
        Entry {
            seq,
            time,
            record: self.entry,
            prev_hash,
            entry_hash,
        }
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings and numbers as `serde_json` writes them. The same value always gives the same text,
/// whatever order its keys were inserted in.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(item) = map.get(key) {
                        write(item, out);
                    }
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The `args_digest` of a tool call's arguments: hex SHA-256 of their [`canonical_json`].
pub fn args_digest(args: &Value) -> String {
    crate::hex::encode(&Sha256::digest(canonical_json(args).as_bytes()))
}

/// Serde for a 32-byte hash as lower-case hex.
mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::hex;
    use crate::merkle::Hash;

    pub fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode_array(&text).ok_or_else(|| D::Error::custom("expected 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> NewEntry {
        NewEntry {
            request_id: "req-1".into(),
            kind: EntryKind::Decision,
            principal: "owner".into(),
            action: "fs.write".into(),
            resource: "/tmp/x".into(),
            args_digest: args_digest(&json!({"path": "/tmp/x"})),
            intent: "save notes".into(),
            intent_source: "owner".into(),
            grant_id: Some("g1".into()),
            policies: vec!["p1".into(), "p2".into()],
            decision: Some(Decision::Allow),
            reason: "granted".into(),
            outcome: None,
            undo_ref: None,
            tier: None,
            cortex: None,
            detail: json!({"b": 1, "a": [true, null]})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value = json!({"b": {"z": 1, "y": [1, "two", null]}, "a": "é\"", "c": 1.5});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":"é\"","b":{"y":[1,"two",null],"z":1},"c":1.5}"#
        );
        assert_eq!(
            args_digest(&json!({"x": 1, "y": 2})),
            args_digest(&json!({"y": 2, "x": 1}))
        );
        // SHA-256 of the two bytes `{}`.
        assert_eq!(
            args_digest(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn the_hash_covers_every_field() {
        let prepared = Prepared::new(sample());
        let base = prepared.columns(7, 1_700_000_000_000);
        let prev = [9u8; 32];
        let hash = base.hash(&prev);
        assert_ne!(hash, base.hash(&[0u8; 32]), "prev_hash");
        let variants: Vec<Columns<'_>> = vec![
            Columns { seq: 8, ..base },
            Columns { time: 1, ..base },
            Columns {
                request_id: "req-2",
                ..base
            },
            Columns {
                kind: "event",
                ..base
            },
            Columns {
                principal: "x",
                ..base
            },
            Columns {
                action: "x",
                ..base
            },
            Columns {
                resource: "x",
                ..base
            },
            Columns {
                args_digest: "",
                ..base
            },
            Columns {
                intent: "x",
                ..base
            },
            Columns {
                intent_source: "agent",
                ..base
            },
            Columns {
                grant_id: None,
                ..base
            },
            Columns {
                grant_id: Some(""),
                ..base
            },
            Columns {
                policies: "[]",
                ..base
            },
            Columns {
                decision: "deny",
                ..base
            },
            Columns {
                reason: "x",
                ..base
            },
            Columns {
                outcome: Some(""),
                ..base
            },
            Columns {
                undo_ref: Some("u"),
                ..base
            },
            Columns {
                tier: Some("t"),
                ..base
            },
            Columns {
                cortex: Some("c"),
                ..base
            },
            Columns {
                detail: "{}",
                ..base
            },
        ];
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(variant.hash(&prev), hash, "variant {i} hashes the same");
        }
    }

    #[test]
    fn length_prefixes_keep_adjacent_fields_apart() {
        let prepared = Prepared::new(sample());
        let base = prepared.columns(1, 0);
        let a = Columns {
            principal: "ab",
            action: "c",
            ..base
        };
        let b = Columns {
            principal: "a",
            action: "bc",
            ..base
        };
        assert_ne!(a.hash(&[0; 32]), b.hash(&[0; 32]));
    }

    /// Pins the encoding: if this changes, every existing log stops verifying.
    #[test]
    fn the_encoding_is_stable() {
        let columns = Columns {
            seq: 1,
            time: 0,
            request_id: "",
            kind: "event",
            principal: "",
            action: "",
            resource: "",
            args_digest: "",
            intent: "",
            intent_source: "",
            grant_id: None,
            policies: "[]",
            decision: "",
            reason: "",
            outcome: None,
            undo_ref: None,
            tier: None,
            cortex: None,
            detail: "{}",
        };
        let mut expected = vec![0u8; 32];
        expected.push(1);
        expected.extend(1u64.to_be_bytes());
        expected.extend(0i64.to_be_bytes());
        for field in ["", "event", "", "", "", "", "", ""] {
            expected.extend((field.len() as u64).to_be_bytes());
            expected.extend(field.as_bytes());
        }
        expected.push(0); // grant_id
        for field in ["[]", "", ""] {
            expected.extend((field.len() as u64).to_be_bytes());
            expected.extend(field.as_bytes());
        }
        expected.extend([0, 0, 0, 0]); // outcome, undo_ref, tier, cortex
        expected.extend(2u64.to_be_bytes());
        expected.extend(b"{}");
        let want: Hash = Sha256::digest(&expected).into();
        assert_eq!(columns.hash(&[0; 32]), want);
    }

    #[test]
    fn entries_serialise_hashes_as_hex() {
        let prepared = Prepared::new(sample());
        let entry = prepared.into_entry(1, 5, [0; 32], [0xab; 32]);
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["prev_hash"], "0".repeat(64));
        assert_eq!(json["entry_hash"], "ab".repeat(32));
        assert_eq!(json["kind"], "decision");
        assert_eq!(json["decision"], "allow");
        let back: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn kinds_and_decisions_parse_their_stored_names() {
        for kind in [EntryKind::Decision, EntryKind::Outcome, EntryKind::Event] {
            assert_eq!(kind.as_str().parse::<EntryKind>().unwrap(), kind);
        }
        assert!("bogus".parse::<EntryKind>().is_err());
        assert_eq!(Decision::parse_column("").unwrap(), None);
        assert_eq!(Decision::parse_column("ask").unwrap(), Some(Decision::Ask));
        assert!(Decision::parse_column("maybe").is_err());
    }
}
