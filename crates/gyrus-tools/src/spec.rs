//! What a tool is: its name, schemas, risk, limits and the permission it needs.

use std::time::Duration;

use gyrus_bus::Subject;
use serde::Serialize;

/// How much harm a call can do, for the owner's policies (`resource.getTag("risk")`) and for
/// clients that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Only looks.
    Read,
    /// Changes something that can be put back (usually with `gyrus undo`).
    Write,
    /// Changes something that cannot be put back (a package install, a killed process, a
    /// request sent to another host).
    Irreversible,
}

impl Risk {
    /// `read`, `write` or `irreversible`.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Irreversible => "irreversible",
        }
    }
}

/// Everything a client needs to know about a tool before calling it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    /// Dotted name, e.g. `fs.read`; also the policy action it asks for.
    pub name: String,
    /// One or two sentences for people and models.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// Risk class.
    pub risk: Risk,
    /// Whether `gyrus undo` can put a call back.
    pub undoable: bool,
    /// The longest a call may run.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// The largest output, as JSON bytes; a bigger one is an error (tools that read take a
    /// size limit of their own and say when they truncated).
    pub max_output_bytes: usize,
}

mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The caller, in a requirement's resource: `memory:@self` is decided as `memory:<principal id>`.
pub const SELF: &str = "@self";

/// One permission a call needs: the consent broker must allow `action` on `resource`.
/// A call's first requirement is the tool itself; further ones cover what the call reaches
/// beyond its main resource (the roots a spawned process may read or write, say).
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// The policy action, e.g. `fs.read`.
    pub action: Subject,
    /// `<kind>:<name>`, normalised (see [`gyrus_policy::resource_problem`]).
    pub resource: String,
    /// Extra attributes policies can test (`resource.getTag(...)`).
    pub attrs: serde_json::Map<String, serde_json::Value>,
}

impl Requirement {
    /// A requirement for `action` on `resource`.
    pub fn new(action: &str, resource: impl Into<String>) -> Result<Requirement, ToolError> {
        let action = Subject::new(action)
            .map_err(|e| ToolError::Internal(format!("bad action {action:?}: {e}")))?;
        let resource = resource.into();
        if let Some(problem) = gyrus_policy::resource_problem(&resource) {
            return Err(ToolError::InvalidArgs(problem));
        }
        Ok(Requirement {
            action,
            resource,
            attrs: serde_json::Map::new(),
        })
    }

    /// The resource with its caller filled in: `<kind>:@self` (see [`SELF`]) becomes
    /// `<kind>:<principal id>`, so a tool whose arguments default to "the caller's own"
    /// (its memory namespace, say) names the real resource before the broker decides.
    pub fn for_caller(mut self, principal: &gyrus_policy::Principal) -> Requirement {
        if let Some((kind, rest)) = self.resource.split_once(':')
            && rest == SELF
        {
            self.resource = format!("{kind}:{}", principal.id());
        }
        self
    }

    /// The same requirement with one more attribute.
    pub fn with_attr(mut self, key: &str, value: impl Into<serde_json::Value>) -> Requirement {
        self.attrs.insert(key.to_string(), value.into());
        self
    }
}

/// Why a tool call failed. Every message says what is wrong and, where it can, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// No tool by that name.
    #[error("no tool named {0:?}; `gyrus tool list` shows them")]
    UnknownTool(String),
    /// The arguments do not fit the schema (the message names the field).
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The call ran and failed (a missing file, a refused connection…).
    #[error("{0}")]
    Failed(String),
    /// The target is not what the call expects (e.g. undo after a later change).
    #[error("{0}")]
    Conflict(String),
    /// The call ran past its timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The output is larger than the tool's limit.
    #[error("the output is {size} bytes, over this tool's limit of {limit}")]
    OutputTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The call cannot run safely here (no sandbox on this kernel, say).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a failing store; details are in the daemon's log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// A short machine-readable code: `unknown_tool`, `invalid_args`, `failed`, `conflict`,
    /// `timeout`, `output_too_large`, `unavailable`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            ToolError::UnknownTool(_) => "unknown_tool",
            ToolError::InvalidArgs(_) => "invalid_args",
            ToolError::Failed(_) => "failed",
            ToolError::Conflict(_) => "conflict",
            ToolError::Timeout(_) => "timeout",
            ToolError::OutputTooLarge { .. } => "output_too_large",
            ToolError::Unavailable(_) => "unavailable",
            ToolError::Internal(_) => "internal",
        }
    }

    /// A failure with this message.
    pub fn failed(message: impl std::fmt::Display) -> ToolError {
        ToolError::Failed(message.to_string())
    }

    /// An internal error with this message.
    pub fn internal(message: impl std::fmt::Display) -> ToolError {
        ToolError::Internal(message.to_string())
    }
}
