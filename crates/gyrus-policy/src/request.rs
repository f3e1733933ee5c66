//! What a principal asks to do, and where its intent came from.

use gyrus_bus::subject::Subject;
use serde::{Deserialize, Serialize};

use crate::Principal;

/// The longest resource string accepted, in bytes.
pub const MAX_RESOURCE_LEN: usize = 4096;

/// What is wrong with a resource string, if anything. A resource is `<kind>:<name>` with a
/// lowercase kind (`path`, `host`, `agent`, …), at most [`MAX_RESOURCE_LEN`] bytes, without
/// control characters, and normalised: no `.` or `..` part, which would walk out of a granted
/// directory.
pub fn resource_problem(resource: &str) -> Option<String> {
    if resource.len() > MAX_RESOURCE_LEN {
        return Some(format!("resource is longer than {MAX_RESOURCE_LEN} bytes"));
    }
    let kind_ok = resource.split_once(':').is_some_and(|(kind, _)| {
        kind.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    });
    if !kind_ok {
        return Some(format!(
            "resource {resource:?} is not <kind>:<name> (e.g. path:/home/u/file, host:example.com:443)"
        ));
    }
    if resource.chars().any(char::is_control) {
        return Some(format!("resource {resource:?} has control characters"));
    }
    if resource.split('/').any(|part| part == "." || part == "..") {
        return Some(format!(
            "resource {resource:?} is not normalised (it has a . or .. part)"
        ));
    }
    None
}

/// Where the intent of a request came from. Only the owner's own request and an approved plan
/// are trusted (SYSTEM.md, invariant 2); anything else is recorded but never counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum IntentSource {
    /// The owner typed or approved this intent.
    Owner,
    /// The intent of a plan the owner approved; the value is the plan's id.
    Plan(String),
    /// Anything else: tool output, retrieved text, a model's own idea. The value says where it
    /// came from, for the audit trail.
    Untrusted(String),
}

impl IntentSource {
    /// True for [`IntentSource::Owner`] and [`IntentSource::Plan`].
    pub fn is_trusted(&self) -> bool {
        !matches!(self, IntentSource::Untrusted(_))
    }

    /// A short label: `owner`, `plan:<id>` or `untrusted:<origin>`.
    pub fn label(&self) -> String {
        match self {
            IntentSource::Owner => "owner".to_string(),
            IntentSource::Plan(id) => format!("plan:{id}"),
            IntentSource::Untrusted(origin) => format!("untrusted:{origin}"),
        }
    }

    /// The kind alone, as Cedar policies see it in `context.intent_source`: `owner`, `plan`
    /// or `untrusted`.
    pub fn kind(&self) -> &'static str {
        match self {
            IntentSource::Owner => "owner",
            IntentSource::Plan(_) => "plan",
            IntentSource::Untrusted(_) => "untrusted",
        }
    }
}

/// One tool call, as the consent broker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Who is asking.
    pub principal: Principal,
    /// The dotted tool action, e.g. `fs.read`.
    pub action: Subject,
    /// What it acts on, as `<kind>:<name>`: `path:/home/u/project/file.txt`,
    /// `host:api.example.com:443`, `agent:<id>`. Paths must be absolute and normalised (no
    /// `.` or `..` parts); the tool layer resolves symlinks before asking.
    pub resource: String,
    /// Why, in words; only counts when [`ActionRequest::intent_source`] is trusted.
    pub intent: String,
    /// Where the intent came from.
    pub intent_source: IntentSource,
    /// The plan this call belongs to, if any; consent requests are bundled per plan.
    pub plan_id: Option<String>,
    /// Extra attributes of the call. Cedar policies see them as tags of the resource entity
    /// (`resource.hasTag("method") && resource.getTag("method") == "GET"`); strings as they
    /// are, any other JSON value as its compact JSON text.
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl ActionRequest {
    /// A request with no plan and no extra attributes.
    pub fn new(
        principal: Principal,
        action: Subject,
        resource: impl Into<String>,
        intent: impl Into<String>,
        intent_source: IntentSource,
    ) -> ActionRequest {
        ActionRequest {
            principal,
            action,
            resource: resource.into(),
            intent: intent.into(),
            intent_source,
            plan_id: None,
            context: serde_json::Map::new(),
        }
    }

    /// The same request, as part of plan `plan_id`.
    pub fn with_plan(mut self, plan_id: impl Into<String>) -> ActionRequest {
        self.plan_id = Some(plan_id.into());
        self
    }

    /// The same request with one more extra attribute.
    pub fn with_attr(mut self, key: impl Into<String>, value: serde_json::Value) -> ActionRequest {
        self.context.insert(key.into(), value);
        self
    }

    /// The intent, if it may be trusted.
    pub fn trusted_intent(&self) -> Option<&str> {
        self.intent_source
            .is_trusted()
            .then_some(self.intent.as_str())
    }

    /// The kind of the resource: the text before its first `:` (`path`, `host`, `agent`), or
    /// empty if it has none (such a request is always denied).
    pub fn resource_kind(&self) -> &str {
        self.resource.split_once(':').map_or("", |(kind, _)| kind)
    }
}
