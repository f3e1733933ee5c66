//! Canonical model types: messages, tools, tool calls, usage, cost and stop reasons.
//!
//! These are gyrus's own, vendor-neutral shapes. Conversations are stored and routed in these
//! types; each driver translates them to and from its vendor's wire format at the edge. The
//! system prompt is an ordinary [`Role::System`] message: drivers move it where their vendor
//! wants it (a top-level field for Anthropic, `systemInstruction` for Gemini).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the owner or the agent runtime (the system prompt).
    System,
    /// The person or agent asking.
    User,
    /// The model.
    Assistant,
    /// Results of tool calls, fed back to the model.
    Tool,
}

/// One message of a conversation: a role and its ordered parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text, tool calls (assistant) and tool results (tool), in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A message of one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Part::Text(text.into())],
        }
    }

    /// A system message (the system prompt).
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    /// An assistant message of plain text.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// A tool message carrying one result.
    pub fn tool_result(result: ToolResult) -> Self {
        Self {
            role: Role::Tool,
            content: vec![Part::ToolResult(result)],
        }
    }

    /// The text parts joined together (tool calls and results left out).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(text) = part {
                out.push_str(text);
            }
        }
        out
    }

    /// The tool calls of this message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|part| match part {
            Part::ToolCall(call) => Some(call),
            _ => None,
        })
    }
}

/// One piece of a message. Serialized externally tagged: `{"text": "…"}`,
/// `{"tool_call": {…}}`, `{"tool_result": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text(String),
    /// The model asks for a tool to be run.
    ToolCall(ToolCall),
    /// The outcome of a tool call.
    ToolResult(ToolResult),
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the matching [`ToolResult::call_id`]. Vendors that give none
    /// (Gemini, Ollama) get one made up by the driver.
    pub id: String,
    /// The tool's name, as in [`ToolDef::name`].
    pub name: String,
    /// The arguments as JSON. When the model wrote arguments that are not valid JSON, the raw
    /// text is kept as a JSON string so the caller can answer with an error result.
    pub arguments: serde_json::Value,
}

/// The outcome of a tool call, sent back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The [`ToolCall::id`] this answers.
    pub call_id: String,
    /// The tool's output (or the error message), as text.
    pub content: String,
    /// Whether the tool failed.
    #[serde(default)]
    pub is_error: bool,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments as a JSON Schema object.
    pub parameters: serde_json::Value,
}

/// Whether and which tools the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// A call of the named tool.
    Named(String),
}

/// A chat completion request in canonical form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The vendor's model id (`gpt-4o-mini`, `claude-sonnet-4-5`, `llama3.2`, …).
    pub model: String,
    /// The conversation, system prompt first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    /// Whether and which tools the model may call.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Sampling seed, where the vendor supports one.
    pub seed: Option<u64>,
}

impl ChatRequest {
    /// A request for `model` with these messages and defaults for everything else.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Self::default()
        }
    }
}

/// Token counts of one model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (including cached ones, where the vendor counts them apart).
    pub input_tokens: u64,
    /// Generated tokens (including reasoning tokens, where the vendor counts them apart).
    pub output_tokens: u64,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    #[default]
    EndTurn,
    /// The token limit cut it off.
    MaxTokens,
    /// It wants tool results.
    ToolUse,
    /// A stop sequence matched.
    StopSequence,
    /// The vendor's safety filter stopped or refused it.
    ContentFilter,
    /// Something else, with the vendor's word for it.
    Other(String),
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant message: text and tool calls.
    pub message: Message,
    /// Tokens used.
    pub usage: Usage,
    /// Why it stopped.
    pub stop: StopReason,
    /// The model that answered, as the vendor names it.
    pub model: String,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// More text.
    TextDelta(String),
    /// A tool call begins. `index` counts tool calls from 0 within this answer.
    ToolCallStart {
        /// Which tool call of this answer.
        index: usize,
        /// Its id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// Which tool call, as in [`StreamEvent::ToolCallStart`].
        index: usize,
        /// The next piece of the arguments' JSON text.
        arguments_fragment: String,
    },
    /// The answer is complete; always the last event of a stream that succeeded.
    Done {
        /// Tokens used.
        usage: Usage,
        /// Why it stopped.
        stop: StopReason,
    },
}

/// Folds stream events into a [`ChatResponse`]: text joined, tool calls assembled by index
/// and their arguments parsed as JSON.
#[derive(Debug, Default)]
pub struct StreamCollector {
    text: String,
    calls: Vec<(usize, String, String, String)>,
    done: Option<(Usage, StopReason)>,
}

impl StreamCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event.
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::TextDelta(text) => self.text.push_str(&text),
            StreamEvent::ToolCallStart { index, id, name } => {
                self.calls.push((index, id, name, String::new()));
            }
            StreamEvent::ToolCallDelta {
                index,
                arguments_fragment,
            } => {
                if let Some(call) = self.calls.iter_mut().rev().find(|call| call.0 == index) {
                    call.3.push_str(&arguments_fragment);
                }
            }
            StreamEvent::Done { usage, stop } => self.done = Some((usage, stop)),
        }
    }

    /// Whether the `Done` event has been seen.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// The assembled answer. Without a `Done` event, usage is zero and the stop reason
    /// `Other("incomplete")`.
    pub fn finish(self, model: impl Into<String>) -> ChatResponse {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(Part::Text(self.text));
        }
        for (_, id, name, arguments) in self.calls {
            content.push(Part::ToolCall(ToolCall {
                id,
                name,
                arguments: parse_arguments(&arguments),
            }));
        }
        let (usage, stop) = self
            .done
            .unwrap_or_else(|| (Usage::default(), StopReason::Other("incomplete".into())));
        ChatResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            usage,
            stop,
            model: model.into(),
        }
    }
}

/// Parses a tool call's arguments text as JSON: empty text is `{}`, text that is not JSON is
/// kept as a JSON string.
pub fn parse_arguments(text: &str) -> serde_json::Value {
    if text.trim().is_empty() {
        return serde_json::Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// What a model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of `usage` in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// The content of the result that [`repair`] inserts for a tool call that has none.
pub const MISSING_RESULT: &str = "no result recorded";

/// Repairs a transcript so every vendor accepts it: each assistant tool call gets a matching
/// tool result (an `is_error` result saying [`MISSING_RESULT`] is inserted right after the
/// assistant message, or after the tool results that follow it, when none is there), and
/// tool results that answer no earlier tool call are dropped. Messages left empty by the
/// dropping are removed.
///
/// Transcripts get this way when a run was interrupted between a tool call and its result,
/// or when history was trimmed.
pub fn repair(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    // Tool calls of the latest assistant message that still wait for a result.
    let mut pending: Vec<String> = Vec::new();
    // Every call id seen so far, so late results of older calls are kept only once.
    let mut answered: HashSet<String> = HashSet::new();
    let mut known: HashSet<String> = HashSet::new();

    for message in messages {
        let is_result_carrier = message
            .content
            .iter()
            .any(|p| matches!(p, Part::ToolResult(_)));
        if !is_result_carrier && !pending.is_empty() {
            // The next turn begins: whatever the last assistant asked for and got no answer.
            flush_missing(&mut out, &mut pending, &mut answered);
        }

        if message.role == Role::Assistant {
            let mut message = message;
            // An assistant message must not carry results; drop any.
            message
                .content
                .retain(|p| !matches!(p, Part::ToolResult(_)));
            for call in message.tool_calls() {
                if known.insert(call.id.clone()) {
                    pending.push(call.id.clone());
                }
            }
            if !message.content.is_empty() {
                out.push(message);
            }
            continue;
        }

        let mut message = message;
        message.content.retain(|part| match part {
            Part::ToolResult(result) => {
                let ok = known.contains(&result.call_id) && answered.insert(result.call_id.clone());
                if ok {
                    pending.retain(|id| id != &result.call_id);
                }
                ok
            }
            _ => true,
        });
        if !message.content.is_empty() {
            out.push(message);
        }
    }
    flush_missing(&mut out, &mut pending, &mut answered);
    out
}

fn flush_missing(
    out: &mut Vec<Message>,
    pending: &mut Vec<String>,
    answered: &mut HashSet<String>,
) {
    for call_id in pending.drain(..) {
        answered.insert(call_id.clone());
        out.push(Message::tool_result(ToolResult {
            call_id,
            content: MISSING_RESULT.to_owned(),
            is_error: true,
        }));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn call(id: &str) -> Part {
        Part::ToolCall(ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: json!({}),
        })
    }

    fn result(id: &str, content: &str) -> Message {
        Message::tool_result(ToolResult {
            call_id: id.into(),
            content: content.into(),
            is_error: false,
        })
    }

    fn missing(id: &str) -> Message {
        Message::tool_result(ToolResult {
            call_id: id.into(),
            content: MISSING_RESULT.into(),
            is_error: true,
        })
    }

    fn assistant_calls(ids: &[&str]) -> Message {
        Message {
            role: Role::Assistant,
            content: ids.iter().map(|id| call(id)).collect(),
        }
    }

    #[test]
    fn repair_leaves_a_sound_transcript_alone() {
        let messages = vec![
            Message::system("s"),
            Message::user("u"),
            assistant_calls(&["a"]),
            result("a", "ok"),
            Message::assistant("done"),
        ];
        assert_eq!(repair(messages.clone()), messages);
    }

    #[test]
    fn repair_inserts_missing_results_before_the_next_turn() {
        let messages = vec![
            Message::user("u"),
            assistant_calls(&["a", "b"]),
            result("b", "ok"),
            Message::user("again"),
        ];
        assert_eq!(
            repair(messages),
            vec![
                Message::user("u"),
                assistant_calls(&["a", "b"]),
                result("b", "ok"),
                missing("a"),
                Message::user("again"),
            ]
        );
    }

    #[test]
    fn repair_answers_calls_at_the_end_of_the_transcript() {
        let messages = vec![Message::user("u"), assistant_calls(&["a"])];
        assert_eq!(
            repair(messages),
            vec![Message::user("u"), assistant_calls(&["a"]), missing("a")]
        );
    }

    #[test]
    fn repair_drops_orphan_and_duplicate_results() {
        let messages = vec![
            result("ghost", "x"),
            Message::user("u"),
            assistant_calls(&["a"]),
            result("a", "ok"),
            result("a", "again"),
            Message::assistant("done"),
        ];
        assert_eq!(
            repair(messages),
            vec![
                Message::user("u"),
                assistant_calls(&["a"]),
                result("a", "ok"),
                Message::assistant("done"),
            ]
        );
    }

    #[test]
    fn repair_keeps_text_of_a_message_whose_results_were_dropped() {
        let mixed = Message {
            role: Role::User,
            content: vec![
                Part::ToolResult(ToolResult {
                    call_id: "ghost".into(),
                    content: "x".into(),
                    is_error: false,
                }),
                Part::Text("hello".into()),
            ],
        };
        assert_eq!(repair(vec![mixed]), vec![Message::user("hello")]);
    }

    #[test]
    fn price_cost_is_per_million_tokens() {
        let price = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 2_000,
        };
        assert!((price.cost(&usage) - 3.03).abs() < 1e-9);
    }

    #[test]
    fn collector_assembles_text_and_tool_calls() {
        let mut collector = StreamCollector::new();
        for event in [
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "get".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments_fragment: "{\"a\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments_fragment: "1}".into(),
            },
            StreamEvent::Done {
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                },
                stop: StopReason::ToolUse,
            },
        ] {
            collector.push(event);
        }
        let response = collector.finish("m");
        assert_eq!(response.message.text_content(), "Hello");
        assert_eq!(
            response.message.tool_calls().cloned().collect::<Vec<_>>(),
            vec![ToolCall {
                id: "c1".into(),
                name: "get".into(),
                arguments: json!({"a": 1})
            }]
        );
        assert_eq!(response.stop, StopReason::ToolUse);
    }

    #[test]
    fn arguments_that_are_not_json_are_kept_as_text() {
        assert_eq!(parse_arguments(""), json!({}));
        assert_eq!(parse_arguments("{oops"), json!("{oops"));
    }
}
