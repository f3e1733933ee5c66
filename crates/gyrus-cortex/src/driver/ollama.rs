//! Ollama's native API: `POST {base}/api/chat` (newline-delimited JSON when streamed) and
//! `POST {base}/api/embed`.
//!
//! Sampling settings go in `options` (`num_predict` for the token limit). Tool calls arrive
//! whole, with their arguments as a JSON object and usually no id (the driver makes one up);
//! results go back as `tool` messages with `tool_name`. Ollama has no `tool_choice`: `None`
//! sends no tools, `Required` and `Named` are sent as plain tool lists. A key, if configured
//! (Ollama behind an authenticating proxy), goes in `Authorization: Bearer`.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Decoder, Header, Http, parse_frame};
use super::sse::{Frame, Framer};
use super::{Driver, DriverConfig, DriverError, DriverFuture, EventStream};
use crate::types::{
    ChatRequest, ChatResponse, Message, Part, Role, StopReason, StreamEvent, ToolCall, ToolChoice,
    Usage,
};

/// Ollama's default address.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

/// A driver for an Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaDriver {
    http: Http,
}

impl OllamaDriver {
    /// A driver for the server at `config.base_url`.
    pub fn new(config: DriverConfig) -> Result<Self, DriverError> {
        let mut headers = Vec::new();
        if let Some(key) = &config.api_key {
            headers.push(Header {
                name: "authorization",
                value: format!("Bearer {}", key.expose()),
                secret: true,
            });
        }
        Ok(Self {
            http: Http::new(config, headers)?,
        })
    }
}

impl Driver for OllamaDriver {
    fn name(&self) -> &str {
        &self.http.config().name
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(async move {
            let body = encode(request, false);
            let response: WireChunk = self.http.post_json("/api/chat", &body).await?;
            if let Some(error) = response.error {
                return Err(DriverError::Server {
                    status: 500,
                    message: error,
                });
            }
            let mut decoded = ChatResponse {
                message: Message {
                    role: Role::Assistant,
                    content: Vec::new(),
                },
                usage: response.usage(),
                stop: StopReason::EndTurn,
                model: response
                    .model
                    .clone()
                    .unwrap_or_else(|| request.model.clone()),
            };
            let mut calls = 0;
            if let Some(message) = response.message {
                if !message.content.is_empty() {
                    decoded.message.content.push(Part::Text(message.content));
                }
                for call in message.tool_calls {
                    decoded.message.content.push(Part::ToolCall(ToolCall {
                        id: call_id(call.id, calls),
                        name: call.function.name,
                        arguments: call.function.arguments,
                    }));
                    calls += 1;
                }
            }
            decoded.stop = stop_reason(response.done_reason.as_deref(), calls > 0);
            Ok(decoded)
        })
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(async move {
            let body = encode(request, true);
            self.http
                .post_stream(
                    "/api/chat",
                    &body,
                    Framer::ndjson(),
                    StreamDecoder::default(),
                )
                .await
        })
    }

    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let body = json!({ "model": model, "input": texts });
            let response: EmbedResponse = self.http.post_json("/api/embed", &body).await?;
            if response.embeddings.len() != texts.len() {
                return Err(DriverError::Protocol(format!(
                    "asked for {} embeddings, got {}",
                    texts.len(),
                    response.embeddings.len()
                )));
            }
            Ok(response.embeddings)
        })
    }
}

/// The request body for `POST /api/chat`.
pub(crate) fn encode(request: &ChatRequest, stream: bool) -> Value {
    let names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|m| m.tool_calls())
        .map(|call| (call.id.as_str(), call.name.as_str()))
        .collect();
    let mut messages = Vec::new();
    for message in &request.messages {
        let text = message.text_content();
        match message.role {
            Role::System => messages.push(json!({ "role": "system", "content": text })),
            Role::User | Role::Tool => {
                for part in &message.content {
                    if let Part::ToolResult(result) = part {
                        let mut m = json!({
                            "role": "tool",
                            "content": super::openai::tool_result_text(&result.content, result.is_error),
                        });
                        if let Some(name) = names.get(result.call_id.as_str()) {
                            m["tool_name"] = json!(name);
                        }
                        messages.push(m);
                    }
                }
                if !text.is_empty() || message.content.is_empty() {
                    messages.push(json!({ "role": "user", "content": text }));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = message
                    .tool_calls()
                    .map(|call| {
                        let arguments = match &call.arguments {
                            Value::Object(_) => call.arguments.clone(),
                            other => json!({ "arguments": other }),
                        };
                        json!({ "function": { "name": call.name, "arguments": arguments } })
                    })
                    .collect();
                let mut m = json!({ "role": "assistant", "content": text });
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                messages.push(m);
            }
        }
    }
    let mut body = json!({ "model": request.model, "messages": messages, "stream": stream });
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    if !request.tools.is_empty() && request.tool_choice != ToolChoice::None {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        obj.insert("tools".into(), Value::Array(tools));
    }
    let mut options = serde_json::Map::new();
    if let Some(max) = request.max_tokens {
        options.insert("num_predict".into(), json!(max));
    }
    if let Some(t) = request.temperature {
        options.insert("temperature".into(), super::f32_json(t));
    }
    if let Some(p) = request.top_p {
        options.insert("top_p".into(), super::f32_json(p));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    if let Some(seed) = request.seed {
        options.insert("seed".into(), json!(seed));
    }
    if !options.is_empty() {
        obj.insert("options".into(), Value::Object(options));
    }
    body
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    model: Option<String>,
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<String>,
}

impl WireChunk {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct EmbedResponse {
    #[serde(default)]
    embeddings: Vec<Vec<f32>>,
}

fn call_id(id: Option<String>, index: usize) -> String {
    id.unwrap_or_else(|| format!("ollama-call-{index}"))
}

fn stop_reason(reason: Option<&str>, called_tools: bool) -> StopReason {
    match reason {
        Some("stop") | None if called_tools => StopReason::ToolUse,
        Some("stop") | None => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// Decodes `/api/chat`'s NDJSON lines up to the one with `"done": true`.
#[derive(Debug, Default)]
struct StreamDecoder {
    calls: usize,
}

impl Decoder for StreamDecoder {
    fn frame(
        &mut self,
        frame: Frame,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, DriverError> {
        let chunk: WireChunk = parse_frame("Ollama", &frame.data)?;
        if let Some(error) = chunk.error {
            return Err(DriverError::Server {
                status: 500,
                message: error,
            });
        }
        if let Some(message) = &chunk.message {
            if !message.content.is_empty() {
                out.push_back(StreamEvent::TextDelta(message.content.clone()));
            }
            for call in &message.tool_calls {
                let index = self.calls;
                self.calls += 1;
                out.push_back(StreamEvent::ToolCallStart {
                    index,
                    id: call_id(call.id.clone(), index),
                    name: call.function.name.clone(),
                });
                let args = if call.function.arguments.is_null() {
                    json!({})
                } else {
                    call.function.arguments.clone()
                };
                out.push_back(StreamEvent::ToolCallDelta {
                    index,
                    arguments_fragment: args.to_string(),
                });
            }
        }
        if chunk.done {
            out.push_back(StreamEvent::Done {
                usage: chunk.usage(),
                stop: stop_reason(chunk.done_reason.as_deref(), self.calls > 0),
            });
            return Ok(true);
        }
        Ok(false)
    }
}
