//! The Anthropic Messages API: `POST {base}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`.
//!
//! The system prompt becomes the top-level `system` field; tool calls and results are
//! `tool_use` and `tool_result` content blocks (results in a user turn, consecutive turns of
//! one role merged). Streaming is server-sent events: `message_start`, `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop reason and usage), `message_stop`, `ping` and `error`.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Decoder, Header, Http, parse_frame};
use super::sse::{Frame, Framer};
use super::{Driver, DriverConfig, DriverError, DriverFuture, EventStream, system_text};
use crate::types::{
    ChatRequest, ChatResponse, Message, Part, Role, StopReason, StreamEvent, ToolCall, ToolChoice,
    Usage,
};

/// Anthropic's endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version this driver speaks.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the Messages API; this is sent when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A driver for the Anthropic Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicDriver {
    http: Http,
}

impl AnthropicDriver {
    /// A driver for `config.base_url` (without `/v1`).
    pub fn new(config: DriverConfig) -> Result<Self, DriverError> {
        let mut headers = vec![Header {
            name: "anthropic-version",
            value: API_VERSION.into(),
            secret: false,
        }];
        if let Some(key) = &config.api_key {
            headers.push(Header {
                name: "x-api-key",
                value: key.expose().to_owned(),
                secret: true,
            });
        }
        Ok(Self {
            http: Http::new(config, headers)?,
        })
    }
}

impl Driver for AnthropicDriver {
    fn name(&self) -> &str {
        &self.http.config().name
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(async move {
            let body = encode(request, false);
            let response: WireMessage = self.http.post_json("/v1/messages", &body).await?;
            Ok(decode(response))
        })
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(async move {
            let body = encode(request, true);
            self.http
                .post_stream(
                    "/v1/messages",
                    &body,
                    Framer::sse(),
                    StreamDecoder::default(),
                )
                .await
        })
    }
}

/// The request body for `POST /v1/messages`.
pub(crate) fn encode(request: &ChatRequest, stream: bool) -> Value {
    // (role, blocks) with consecutive turns of one role merged.
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::System => continue,
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::new();
        // Tool results first: the API wants them at the start of the user turn.
        for part in &message.content {
            if let Part::ToolResult(result) = part {
                blocks.push(json!({
                    "type": "tool_result",
                    "tool_use_id": result.call_id,
                    "content": result.content,
                    "is_error": result.is_error,
                }));
            }
        }
        for part in &message.content {
            match part {
                Part::Text(text) if !text.is_empty() => {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                Part::ToolCall(call) => {
                    let input = match &call.arguments {
                        Value::Object(_) => call.arguments.clone(),
                        // The API wants an object; arguments the model garbled go back wrapped.
                        other => json!({ "arguments": other }),
                    };
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": input,
                    }));
                }
                _ => {}
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();

    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    if let Some(system) = system_text(request) {
        obj.insert("system".into(), json!(system));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
        obj.insert("tools".into(), Value::Array(tools));
        let choice = match &request.tool_choice {
            ToolChoice::Auto => json!({ "type": "auto" }),
            ToolChoice::None => json!({ "type": "none" }),
            ToolChoice::Required => json!({ "type": "any" }),
            ToolChoice::Named(name) => json!({ "type": "tool", "name": name }),
        };
        obj.insert("tool_choice".into(), choice);
    }
    if let Some(t) = request.temperature {
        obj.insert("temperature".into(), super::f32_json(t));
    }
    if let Some(p) = request.top_p {
        obj.insert("top_p".into(), super::f32_json(p));
    }
    if !request.stop.is_empty() {
        obj.insert("stop_sequences".into(), json!(request.stop));
    }
    // The Messages API has no seed; it is left out.
    if stream {
        obj.insert("stream".into(), json!(true));
    }
    body
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, redacted thinking, server tool blocks…: not part of the canonical answer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// All prompt tokens: fresh, written to and read from the cache.
    fn input(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

fn decode(response: WireMessage) -> ChatResponse {
    let mut content = Vec::new();
    for block in response.content {
        match block {
            WireBlock::Text { text } => content.push(Part::Text(text)),
            WireBlock::ToolUse { id, name, input } => {
                content.push(Part::ToolCall(ToolCall {
                    id,
                    name,
                    arguments: input,
                }));
            }
            WireBlock::Other => {}
        }
    }
    ChatResponse {
        message: Message {
            role: Role::Assistant,
            content,
        },
        usage: Usage {
            input_tokens: response.usage.input().unwrap_or(0),
            output_tokens: response.usage.output_tokens.unwrap_or(0),
        },
        stop: stop_reason(response.stop_reason.as_deref()),
        model: response.model,
    }
}

fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason {
        Some("end_turn") | None => StopReason::EndTurn,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("tool_use") => StopReason::ToolUse,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// Maps an Anthropic error `type` (from a streamed `error` event) to our classes.
fn stream_error(kind: &str, message: String) -> DriverError {
    match kind {
        "authentication_error" | "permission_error" => DriverError::Auth(message),
        "rate_limit_error" => DriverError::RateLimited {
            retry_after: None,
            message,
        },
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            DriverError::BadRequest(message)
        }
        "overloaded_error" => DriverError::Server {
            status: 529,
            message,
        },
        "timeout_error" => DriverError::Timeout(message),
        _ => DriverError::Server {
            status: 500,
            message,
        },
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: WireDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop {},
    Ping {},
    Error {
        error: WireError,
    },
    /// Event types added after this driver was written are skipped, as the API asks.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking and signature deltas: not part of the canonical answer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Decodes the Messages API's streamed events up to `message_stop`.
#[derive(Debug, Default)]
struct StreamDecoder {
    /// Content block index → our tool-call index.
    tools: HashMap<usize, usize>,
    usage: Usage,
    stop: Option<StopReason>,
}

impl Decoder for StreamDecoder {
    fn frame(
        &mut self,
        frame: Frame,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, DriverError> {
        let event: WireEvent = parse_frame("Anthropic", &frame.data)?;
        match event {
            WireEvent::MessageStart { message } => {
                self.usage.input_tokens = message.usage.input().unwrap_or(0);
                self.usage.output_tokens = message.usage.output_tokens.unwrap_or(0);
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } => {
                    if !text.is_empty() {
                        out.push_back(StreamEvent::TextDelta(text));
                    }
                }
                WireBlock::ToolUse { id, name, input } => {
                    let tool_index = self.tools.len();
                    self.tools.insert(index, tool_index);
                    out.push_back(StreamEvent::ToolCallStart {
                        index: tool_index,
                        id,
                        name,
                    });
                    // The start block's input is `{}`; the arguments come as deltas. Anything
                    // else in it is sent as the first fragment.
                    if input.as_object().is_some_and(|o| !o.is_empty()) {
                        out.push_back(StreamEvent::ToolCallDelta {
                            index: tool_index,
                            arguments_fragment: input.to_string(),
                        });
                    }
                }
                WireBlock::Other => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } => out.push_back(StreamEvent::TextDelta(text)),
                WireDelta::InputJsonDelta { partial_json } => {
                    let Some(&tool_index) = self.tools.get(&index) else {
                        return Err(DriverError::Protocol(format!(
                            "input_json_delta for block {index}, which is not a tool_use block"
                        )));
                    };
                    if !partial_json.is_empty() {
                        out.push_back(StreamEvent::ToolCallDelta {
                            index: tool_index,
                            arguments_fragment: partial_json,
                        });
                    }
                }
                WireDelta::Other => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop = Some(stop_reason(Some(&reason)));
                }
                if let Some(output) = usage.output_tokens {
                    self.usage.output_tokens = output;
                }
                if let Some(input) = usage.input() {
                    self.usage.input_tokens = input;
                }
            }
            WireEvent::MessageStop {} => {
                out.push_back(StreamEvent::Done {
                    usage: self.usage,
                    stop: self.stop.take().unwrap_or(StopReason::EndTurn),
                });
                return Ok(true);
            }
            WireEvent::ContentBlockStop {} | WireEvent::Ping {} | WireEvent::Unknown => {}
            WireEvent::Error { error } => return Err(stream_error(&error.kind, error.message)),
        }
        Ok(false)
    }
}
