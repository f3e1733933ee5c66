//! Intents and patterns: dotted subjects such as `ops.disk.cleanup`, matched by patterns in
//! which `*` stands for exactly one token and `>` (last only) for one or more tokens, as in
//! NATS, so the same subjects work unchanged when the bus runs on NATS JetStream.
//!
//! Pure: no I/O, no allocation when matching.

use std::fmt;

/// The longest subject or pattern accepted, in bytes.
pub const MAX_LEN: usize = 256;
/// The most tokens a subject or pattern may have.
pub const MAX_TOKENS: usize = 16;

/// Why a subject or pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Nothing given.
    #[error("an intent cannot be empty")]
    Empty,
    /// Over [`MAX_LEN`] bytes or [`MAX_TOKENS`] tokens.
    #[error("{0:?} is too long: at most {MAX_LEN} bytes and {MAX_TOKENS} dotted parts")]
    TooLong(String),
    /// `a..b`, `.a`, `a.`.
    #[error("{0:?} has an empty part: use dotted words like ops.disk.cleanup")]
    EmptyToken(String),
    /// A character outside `[A-Za-z0-9_-]` (or a wildcard where none is allowed).
    #[error(
        "{subject:?} has {found:?} in part {token:?}: use letters, digits, '_' and '-' between dots{wild}",
        wild = if *.wildcards_allowed { ", '*' for one part, '>' (last) for the rest" } else { "; wildcards are for patterns only" }
    )]
    BadChar {
        /// The whole subject.
        subject: String,
        /// The offending token.
        token: String,
        /// The offending character.
        found: char,
        /// Whether this was a pattern.
        wildcards_allowed: bool,
    },
    /// `>` somewhere but last.
    #[error("{0:?}: '>' may only be the last part")]
    TailNotLast(String),
}

fn check(text: &str, wildcards: bool) -> Result<(), SubjectError> {
    if text.is_empty() {
        return Err(SubjectError::Empty);
    }
    if text.len() > MAX_LEN || text.split('.').count() > MAX_TOKENS {
        return Err(SubjectError::TooLong(text.to_string()));
    }
    let mut tokens = text.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return Err(SubjectError::EmptyToken(text.to_string()));
        }
        if wildcards && token == "*" {
            continue;
        }
        if wildcards && token == ">" {
            if tokens.peek().is_some() {
                return Err(SubjectError::TailNotLast(text.to_string()));
            }
            continue;
        }
        if let Some(found) = token
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(SubjectError::BadChar {
                subject: text.to_string(),
                token: token.to_string(),
                found,
                wildcards_allowed: wildcards,
            });
        }
    }
    Ok(())
}

/// A valid intent: dotted tokens of `[A-Za-z0-9_-]`, no wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// Checks and wraps an intent.
    pub fn new(text: impl Into<String>) -> Result<Subject, SubjectError> {
        let text = text.into();
        check(&text, false)?;
        Ok(Subject(text))
    }

    /// The intent text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid pattern: like a subject, with `*` for one token and a final `>` for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(String);

impl Pattern {
    /// Checks and wraps a pattern.
    pub fn new(text: impl Into<String>) -> Result<Pattern, SubjectError> {
        let text = text.into();
        check(&text, true)?;
        Ok(Pattern(text))
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if the pattern has no wildcard (it matches one subject only).
    pub fn is_literal(&self) -> bool {
        !self.0.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether `subject` matches this pattern.
    pub fn matches(&self, subject: &Subject) -> bool {
        matches(&self.0, &subject.0)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Matches already-valid `pattern` and `subject` strings token by token. Exposed for callers
/// that validated once and match often (grants, subscriptions).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut pattern_tokens = pattern.split('.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

// Subjects and patterns travel as plain strings and are checked again when read, so a stored
// or received envelope can never hold an invalid intent.
impl serde::Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Subject::new(text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Subject {
    type Err = SubjectError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Subject::new(text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = SubjectError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Pattern::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching_table() {
        // (pattern, subject, matches)
        let table = [
            ("ops.disk.cleanup", "ops.disk.cleanup", true),
            ("ops.disk.cleanup", "ops.disk", false),
            ("ops.disk", "ops.disk.cleanup", false),
            ("ops.*.cleanup", "ops.disk.cleanup", true),
            ("ops.*.cleanup", "ops.disk.usage", false),
            ("ops.*", "ops.disk", true),
            ("ops.*", "ops.disk.cleanup", false),
            ("ops.*", "ops", false),
            ("ops.>", "ops.disk", true),
            ("ops.>", "ops.disk.cleanup.now", true),
            ("ops.>", "ops", false),
            (">", "anything.at.all", true),
            (">", "one", true),
            ("*", "one", true),
            ("*", "one.two", false),
            ("*.*.cleanup", "ops.disk.cleanup", true),
            ("*.>", "ops.disk", true),
            ("fs.*", "fs.read", true),
            ("fs.*", "fsx.read", false),
            ("fs.read", "fs.readx", false),
            ("Ops.disk", "ops.disk", false),
        ];
        for (pattern, subject, expected) in table {
            let p = Pattern::new(pattern).unwrap();
            let s = Subject::new(subject).unwrap();
            assert_eq!(p.matches(&s), expected, "{pattern} vs {subject}");
        }
    }

    #[test]
    fn invalid_subjects_and_patterns_say_why() {
        assert_eq!(Subject::new(""), Err(SubjectError::Empty));
        assert!(matches!(
            Subject::new("a..b"),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            Subject::new(".a"),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            Subject::new("a."),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            Subject::new("a.*"),
            Err(SubjectError::BadChar { .. })
        ));
        assert!(matches!(
            Subject::new("a b"),
            Err(SubjectError::BadChar { .. })
        ));
        assert!(matches!(
            Pattern::new("a.>.b"),
            Err(SubjectError::TailNotLast(_))
        ));
        assert!(matches!(
            Pattern::new("a.b*"),
            Err(SubjectError::BadChar { .. })
        ));
        assert!(matches!(
            Subject::new("x".repeat(300)),
            Err(SubjectError::TooLong(_))
        ));
        assert!(matches!(
            Subject::new(vec!["a"; 17].join(".")),
            Err(SubjectError::TooLong(_))
        ));
        let e = Subject::new("ops.disk usage").unwrap_err().to_string();
        assert!(e.contains("wildcards are for patterns only"), "{e}");
    }

    #[test]
    fn literal_patterns_are_recognised() {
        assert!(Pattern::new("a.b").unwrap().is_literal());
        assert!(!Pattern::new("a.*").unwrap().is_literal());
        assert!(!Pattern::new("a.>").unwrap().is_literal());
    }
    #[test]
    fn subjects_and_patterns_round_trip_as_strings_and_are_checked_when_read() {
        let s = Subject::new("ops.disk.cleanup").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"ops.disk.cleanup\"");
        assert_eq!(
            serde_json::from_str::<Subject>("\"ops.disk.cleanup\"").unwrap(),
            s
        );
        assert!(serde_json::from_str::<Subject>("\"ops.*\"").is_err());
        assert!(serde_json::from_str::<Subject>("\"\"").is_err());
        let p: Pattern = serde_json::from_str("\"ops.>\"").unwrap();
        assert_eq!(p.as_str(), "ops.>");
        assert!(serde_json::from_str::<Pattern>("\"a.>.b\"").is_err());
        assert_eq!("ops.*".parse::<Pattern>().unwrap().as_str(), "ops.*");
    }
}
