//! Whether a cortex's answer is good enough to keep, or the request should move up a tier.
//!
//! The checks are cheap and local: something was said, it was not cut off, tool calls name
//! offered tools with arguments that fit their schemas (top-level properties: `required` and
//! primitive `type`), and the model did not say it is unsure.

use crate::types::{ChatResponse, StopReason, ToolCall, ToolDef};

/// Why an answer failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// No text and no tool call.
    #[error("the answer is empty")]
    Empty,
    /// The token limit cut the answer off before it called a tool.
    #[error("the answer was cut off at the token limit")]
    Truncated,
    /// A tool call names a tool that was not offered.
    #[error("the answer calls {name:?}, which is not an offered tool")]
    UnknownTool {
        /// The name called.
        name: String,
    },
    /// A tool call's arguments are not a JSON object.
    #[error("the arguments of the call to {tool:?} are not a JSON object")]
    ArgumentsNotObject {
        /// The tool called.
        tool: String,
    },
    /// A tool call leaves out a property its schema requires.
    #[error("the call to {tool:?} leaves out the required argument {property:?}")]
    MissingArgument {
        /// The tool called.
        tool: String,
        /// The property left out.
        property: String,
    },
    /// A tool call gives a property a value of another type than its schema declares.
    #[error("the call to {tool:?} gives {property:?} a {got}, the schema wants {expected}")]
    WrongType {
        /// The tool called.
        tool: String,
        /// The property.
        property: String,
        /// The schema's `type` (alternatives joined by `|`).
        expected: String,
        /// The JSON type given.
        got: &'static str,
    },
    /// The model says it is not confident.
    #[error("the model reports low confidence ({evidence})")]
    LowConfidence {
        /// What it said: the stated confidence or the phrase.
        evidence: String,
    },
}

/// A stated confidence below this (as a fraction) counts as low.
pub const LOW_CONFIDENCE: f64 = 0.5;

/// Phrases by which a model says it does not know (matched in lower case, apostrophes folded).
pub const UNSURE_PHRASES: &[&str] = &[
    "i'm not sure",
    "i am not sure",
    "i'm not certain",
    "i am not certain",
    "i don't know",
    "i do not know",
];

/// Checks an answer against the tools that were offered.
pub fn validate(response: &ChatResponse, tools: &[ToolDef]) -> Result<(), Invalid> {
    let text = response.message.text_content();
    let calls: Vec<&ToolCall> = response.message.tool_calls().collect();
    if text.trim().is_empty() && calls.is_empty() {
        return Err(Invalid::Empty);
    }
    if response.stop == StopReason::MaxTokens && calls.is_empty() {
        return Err(Invalid::Truncated);
    }
    let calls_tools = !calls.is_empty();
    for call in calls {
        let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
            return Err(Invalid::UnknownTool {
                name: call.name.clone(),
            });
        };
        check_arguments(call, tool)?;
    }
    // A model that calls a tool to find out ("I don't know its size yet, let me look") is
    // doing the right thing; only a final answer is held to its stated confidence.
    if !calls_tools && let Some(evidence) = low_confidence(&text) {
        return Err(Invalid::LowConfidence { evidence });
    }
    Ok(())
}

/// Checks a call's arguments against the top level of its tool's JSON schema.
fn check_arguments(call: &ToolCall, tool: &ToolDef) -> Result<(), Invalid> {
    let Some(args) = call.arguments.as_object() else {
        return Err(Invalid::ArgumentsNotObject {
            tool: call.name.clone(),
        });
    };
    let schema = &tool.parameters;
    if let Some(required) = schema.get("required").and_then(|r| r.as_array()) {
        for property in required.iter().filter_map(|p| p.as_str()) {
            if !args.contains_key(property) {
                return Err(Invalid::MissingArgument {
                    tool: call.name.clone(),
                    property: property.to_owned(),
                });
            }
        }
    }
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Ok(());
    };
    for (name, value) in args {
        let Some(declared) = properties.get(name).and_then(|p| p.get("type")) else {
            continue;
        };
        let allowed: Vec<&str> = match declared {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|t| t.as_str()).collect(),
            _ => continue,
        };
        if allowed.is_empty() || allowed.iter().any(|t| has_type(value, t)) {
            continue;
        }
        return Err(Invalid::WrongType {
            tool: call.name.clone(),
            property: name.clone(),
            expected: allowed.join("|"),
            got: type_name(value),
        });
    }
    Ok(())
}

/// Whether `value` is of the JSON Schema primitive type `name` (unknown names accept all).
fn has_type(value: &serde_json::Value, name: &str) -> bool {
    use serde_json::Value;
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What in `text` says the model is not confident: a stated confidence below
/// [`LOW_CONFIDENCE`] ("confidence: 0.2", "Confidence = 30%", "confidence level: 0.4",
/// "confidence: low") or one of [`UNSURE_PHRASES`].
pub fn low_confidence(text: &str) -> Option<String> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    if let Some(phrase) = UNSURE_PHRASES.iter().find(|p| lower.contains(*p)) {
        return Some(format!("{phrase:?}"));
    }
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("confidence") {
        rest = &rest[at + "confidence".len()..];
        if let Some(stated) = stated_confidence(rest)
            && stated < LOW_CONFIDENCE
        {
            return Some(format!("stated confidence {stated}"));
        }
    }
    None
}

/// The number right after "confidence" (past an optional "level"/"score", ":", "=" or "is"),
/// as a fraction: `0.2`, `20%` and `20` (read as percent) are all 0.2; "low" is 0.
fn stated_confidence(after: &str) -> Option<f64> {
    let mut s = after.trim_start();
    for filler in ["level", "score"] {
        s = s.strip_prefix(filler).unwrap_or(s).trim_start();
    }
    s = s
        .strip_prefix(':')
        .or_else(|| s.strip_prefix('='))
        .or_else(|| s.strip_prefix("is "))
        .unwrap_or(s)
        .trim_start();
    if s.starts_with("low") {
        return Some(0.0);
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].trim_end_matches('.').parse().ok()?;
    let percent = s[end..].trim_start().starts_with('%');
    let fraction = if percent || number > 1.0 {
        number / 100.0
    } else {
        number
    };
    (0.0..=1.0).contains(&fraction).then_some(fraction)
}
