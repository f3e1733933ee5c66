//! Tools written as Rust types: arguments and output are structs, their JSON Schemas come
//! from `schemars`, and bad arguments fail in serde with the path of the field.

use std::time::{Duration, Instant};

use gyrus_policy::{IntentSource, Principal};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::env::ToolEnv;
use crate::spec::{Requirement, Risk, ToolError, ToolSpec};
use crate::undo::UndoJournal;

/// What a running call can see.
#[derive(Debug)]
pub struct CallContext<'a> {
    /// The kernel (decisions for nested calls, grants, audit reads).
    pub kernel: &'a gyrus_kernel::Kernel,
    /// Who is calling.
    pub principal: &'a Principal,
    /// The call's intent, in words (for decisions the call asks for while it runs, such as
    /// `net.http` following a redirect to another host).
    pub intent: &'a str,
    /// Where the intent came from.
    pub intent_source: &'a IntentSource,
    /// The plan the call belongs to, if any.
    pub plan_id: Option<&'a str>,
    /// The call's action id (its decision's request id).
    pub action_id: &'a str,
    /// Where the call may keep what it needs to be undone.
    pub undo: &'a UndoJournal,
    /// The daemon's settings for tools.
    pub env: &'a ToolEnv,
    /// When the call must be done.
    pub deadline: Instant,
}

/// A finished call: its output, and what undoing it needs (for undoable tools).
#[derive(Debug)]
pub struct Ran<O> {
    /// The output.
    pub output: O,
    /// Tool-specific undo data, kept in the undo journal under the call's action id.
    pub undo: Option<serde_json::Value>,
}

impl<O> Ran<O> {
    /// An output with nothing to undo.
    pub fn output(output: O) -> Ran<O> {
        Ran { output, undo: None }
    }
}

/// A tool, typed. Implement this; [`Typed`] turns it into a [`Tool`] for the registry.
pub trait TypedTool: Send + Sync + 'static {
    /// The arguments. Use `#[serde(deny_unknown_fields)]` so a misspelt field is an error.
    type Args: DeserializeOwned + JsonSchema;
    /// The output.
    type Output: Serialize + JsonSchema;
    /// Dotted name, also the policy action.
    const NAME: &'static str;
    /// For people and models.
    const DESCRIPTION: &'static str;
    /// Risk class.
    const RISK: Risk;
    /// Whether calls can be undone.
    const UNDOABLE: bool = false;

    /// The longest a call may run.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// The largest output, in JSON bytes.
    fn max_output_bytes(&self) -> usize {
        4 << 20
    }

    /// What the broker must allow, derived from the arguments; the first is the tool's own
    /// action. Resolves paths (symlinks included) so the resource is what the call touches.
    fn requirements(&self, args: &Self::Args, env: &ToolEnv)
    -> Result<Vec<Requirement>, ToolError>;

    /// Runs the call (blocking). Only called after every requirement was allowed.
    fn run(&self, cx: &CallContext<'_>, args: Self::Args) -> Result<Ran<Self::Output>, ToolError>;

    /// Puts a call back from its undo data. Refuses with [`ToolError::Conflict`] if the
    /// target changed since.
    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let _ = (cx, data);
        Err(ToolError::Unavailable(format!(
            "{} calls cannot be undone",
            Self::NAME
        )))
    }
}

/// A tool as the registry holds it: JSON in, JSON out.
pub trait Tool: Send + Sync {
    /// What it is.
    fn spec(&self) -> &ToolSpec;
    /// Checks the arguments against the schema and derives the requirements.
    fn requirements(
        &self,
        args: &serde_json::Value,
        env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError>;
    /// Runs the call.
    fn run(
        &self,
        cx: &CallContext<'_>,
        args: serde_json::Value,
    ) -> Result<Ran<serde_json::Value>, ToolError>;
    /// Undoes a call.
    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError>;
}

/// The JSON Schema of `T`, draft 2020-12, inlined (no `$ref`s to chase).
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

/// Deserialises `args` as `T`, naming the field that does not fit. A missing argument
/// object counts as `{}`.
pub fn parse_args<T: DeserializeOwned>(args: &serde_json::Value) -> Result<T, ToolError> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let args = if args.is_null() { &empty } else { args };
    if !args.is_object() {
        return Err(ToolError::InvalidArgs(
            "the arguments must be a JSON object".to_string(),
        ));
    }
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        ToolError::InvalidArgs(if path == "." {
            inner
        } else {
            format!("field `{path}`: {inner}")
        })
    })
}

/// Adapts a [`TypedTool`] to [`Tool`].
#[derive(Debug)]
pub struct Typed<T> {
    tool: T,
    spec: ToolSpec,
}

impl<T: TypedTool> Typed<T> {
    /// Wraps `tool`, generating its schemas.
    pub fn new(tool: T) -> Typed<T> {
        let spec = ToolSpec {
            name: T::NAME.to_string(),
            description: T::DESCRIPTION.to_string(),
            input_schema: schema_of::<T::Args>(),
            output_schema: schema_of::<T::Output>(),
            risk: T::RISK,
            undoable: T::UNDOABLE,
            timeout: tool.timeout(),
            max_output_bytes: tool.max_output_bytes(),
        };
        Typed { tool, spec }
    }
}

impl<T: TypedTool> Tool for Typed<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn requirements(
        &self,
        args: &serde_json::Value,
        env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        let args: T::Args = parse_args(args)?;
        self.tool.requirements(&args, env)
    }

    fn run(
        &self,
        cx: &CallContext<'_>,
        args: serde_json::Value,
    ) -> Result<Ran<serde_json::Value>, ToolError> {
        let args: T::Args = parse_args(&args)?;
        let ran = self.tool.run(cx, args)?;
        let output = serde_json::to_value(ran.output).map_err(ToolError::internal)?;
        Ok(Ran {
            output,
            undo: ran.undo,
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        self.tool.undo(cx, data)
    }
}
