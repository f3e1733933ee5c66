//! Everything as a typed tool (SYSTEM.md, "Everything is a tool"): each capability has a
//! dotted name, JSON Schemas generated from Rust types, the permission it needs derived from
//! its arguments, a risk class, a timeout, an output limit and, where possible, an undo.
//!
//! [`Tools::call`] is the one path a call takes: schema check, consent broker (every
//! decision in the audit trail), run, undo record, outcome.

pub mod env;
pub mod fs;
pub mod net;
pub mod paths;
pub mod pkg;
pub mod process;
pub mod registry;
pub mod sandbox;
pub mod sec;
pub mod spec;
pub mod sys;
pub mod typed;
pub mod undo;

pub use env::ToolEnv;
pub use registry::{CallDecision, CallError, CallResult, ToolCall, Tools, undo_dir};
pub use spec::{Requirement, Risk, SELF, ToolError, ToolSpec};
pub use typed::{CallContext, Ran, Tool, Typed, TypedTool, parse_args, schema_of};
pub use undo::{UndoJournal, UndoRecord};

/// The registry with every built-in tool.
pub fn builtin(env: ToolEnv) -> Result<Tools, ToolError> {
    let mut tools = Tools::new(env)?;
    fs::register(&mut tools);
    sec::register(&mut tools);
    process::register(&mut tools);
    net::register(&mut tools);
    pkg::register(&mut tools);
    sys::register(&mut tools);
    Ok(tools)
}
