//! OpenAI-compatible chat completions: OpenAI itself, vLLM, llama.cpp's server, LM Studio,
//! OpenRouter and the rest of the servers that speak `POST {base}/chat/completions`.
//!
//! The base URL includes the API version path (`https://api.openai.com/v1`,
//! `https://openrouter.ai/api/v1`, `http://127.0.0.1:8080/v1`); the key, if any, goes in
//! `Authorization: Bearer`. Streaming is server-sent events with
//! `stream_options.include_usage`, tool-call deltas assembled by their `index`.

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Decoder, Header, Http, parse_frame};
use super::sse::{Frame, Framer};
use super::{Driver, DriverConfig, DriverError, DriverFuture, EventStream};
use crate::types::{
    ChatRequest, ChatResponse, Message, Part, Role, StopReason, StreamEvent, ToolCall, ToolChoice,
    Usage, parse_arguments,
};

/// OpenAI's own endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A driver for OpenAI-compatible servers.
#[derive(Debug, Clone)]
pub struct OpenAiDriver {
    http: Http,
}

impl OpenAiDriver {
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

impl Driver for OpenAiDriver {
    fn name(&self) -> &str {
        &self.http.config().name
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(async move {
            let body = encode(request, false);
            let response: WireResponse = self.http.post_json("/chat/completions", &body).await?;
            decode(response)
        })
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(async move {
            let body = encode(request, true);
            self.http
                .post_stream(
                    "/chat/completions",
                    &body,
                    Framer::sse(),
                    StreamDecoder::default(),
                )
                .await
        })
    }

    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let body = json!({ "model": model, "input": texts, "encoding_format": "float" });
            let response: EmbeddingsResponse = self.http.post_json("/embeddings", &body).await?;
            let mut data = response.data;
            data.sort_by_key(|d| d.index);
            if data.len() != texts.len() {
                return Err(DriverError::Protocol(format!(
                    "asked for {} embeddings, got {}",
                    texts.len(),
                    data.len()
                )));
            }
            Ok(data.into_iter().map(|d| d.embedding).collect())
        })
    }
}

/// The request body for `POST /chat/completions`.
pub(crate) fn encode(request: &ChatRequest, stream: bool) -> Value {
    let mut messages = Vec::new();
    for message in &request.messages {
        encode_message(message, &mut messages);
    }
    let mut body = json!({ "model": request.model, "messages": messages });
    let obj = body.as_object_mut();
    let Some(obj) = obj else { return body };
    if !request.tools.is_empty() {
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
        let choice = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({ "type": "function", "function": { "name": name } }),
        };
        obj.insert("tool_choice".into(), choice);
    }
    if let Some(max) = request.max_tokens {
        obj.insert("max_tokens".into(), json!(max));
    }
    if let Some(t) = request.temperature {
        obj.insert("temperature".into(), super::f32_json(t));
    }
    if let Some(p) = request.top_p {
        obj.insert("top_p".into(), super::f32_json(p));
    }
    if !request.stop.is_empty() {
        obj.insert("stop".into(), json!(request.stop));
    }
    if let Some(seed) = request.seed {
        obj.insert("seed".into(), json!(seed));
    }
    if stream {
        obj.insert("stream".into(), json!(true));
        obj.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    body
}

fn encode_message(message: &Message, out: &mut Vec<Value>) {
    let text = message.text_content();
    match message.role {
        Role::System => out.push(json!({ "role": "system", "content": text })),
        Role::User | Role::Tool => {
            // Tool results are messages of their own; text in the same canonical message
            // follows them as a user message.
            for part in &message.content {
                if let Part::ToolResult(result) = part {
                    out.push(json!({
                        "role": "tool",
                        "tool_call_id": result.call_id,
                        "content": tool_result_text(&result.content, result.is_error),
                    }));
                }
            }
            if !text.is_empty() || message.content.is_empty() {
                out.push(json!({ "role": "user", "content": text }));
            }
        }
        Role::Assistant => {
            let calls: Vec<Value> = message
                .tool_calls()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": { "name": call.name, "arguments": arguments_text(&call.arguments) },
                    })
                })
                .collect();
            let mut m = json!({ "role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) } });
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            out.push(m);
        }
    }
}

/// OpenAI's tool messages have no error flag; a failed tool says so in its text.
pub(crate) fn tool_result_text(content: &str, is_error: bool) -> String {
    if is_error {
        format!("Error: {content}")
    } else {
        content.to_owned()
    }
}

/// Arguments go back as the JSON text the model wrote (kept as a string when it was not JSON).
pub(crate) fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

fn decode(response: WireResponse) -> Result<ChatResponse, DriverError> {
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(DriverError::Protocol("the answer has no choices".into()));
    };
    let mut content = Vec::new();
    match (choice.message.content, choice.message.refusal) {
        (Some(text), _) if !text.is_empty() => content.push(Part::Text(text)),
        (_, Some(refusal)) if !refusal.is_empty() => content.push(Part::Text(refusal)),
        _ => {}
    }
    for call in choice.message.tool_calls {
        content.push(Part::ToolCall(ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: parse_arguments(&call.function.arguments),
        }));
    }
    let mut stop = stop_reason(choice.finish_reason.as_deref());
    // Some compatible servers say "stop" for an answer that calls tools.
    if stop == StopReason::EndTurn && content.iter().any(|p| matches!(p, Part::ToolCall(_))) {
        stop = StopReason::ToolUse;
    }
    Ok(ChatResponse {
        message: Message {
            role: Role::Assistant,
            content,
        },
        usage: response.usage.map(Usage::from).unwrap_or_default(),
        stop,
        model: response.model,
    })
}

fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason {
        Some("stop") | None => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingData {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ChunkToolCall>,
}

#[derive(Debug, Deserialize)]
struct ChunkToolCall {
    #[serde(default)]
    index: usize,
    id: Option<String>,
    function: Option<ChunkFunction>,
}

#[derive(Debug, Deserialize)]
struct ChunkFunction {
    name: Option<String>,
    arguments: Option<String>,
}

/// Decodes `chat.completion.chunk` events up to `data: [DONE]`.
#[derive(Debug, Default)]
struct StreamDecoder {
    /// Vendor tool-call indexes already started.
    started: Vec<usize>,
    usage: Option<Usage>,
    stop: Option<StopReason>,
}

impl StreamDecoder {
    fn done(&mut self, out: &mut VecDeque<StreamEvent>) {
        let mut stop = self.stop.take().unwrap_or(StopReason::EndTurn);
        if stop == StopReason::EndTurn && !self.started.is_empty() {
            stop = StopReason::ToolUse;
        }
        out.push_back(StreamEvent::Done {
            usage: self.usage.unwrap_or_default(),
            stop,
        });
    }
}

impl Decoder for StreamDecoder {
    fn frame(
        &mut self,
        frame: Frame,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, DriverError> {
        if frame.data.trim() == "[DONE]" {
            self.done(out);
            return Ok(true);
        }
        let chunk: WireChunk = parse_frame("OpenAI", &frame.data)?;
        if let Some(error) = chunk.error {
            let message = super::http::vendor_message(&json!({ "error": error }))
                .unwrap_or_else(|| "error in stream".into());
            return Err(DriverError::Server {
                status: 500,
                message,
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content
                && !text.is_empty()
            {
                out.push_back(StreamEvent::TextDelta(text));
            }
            for call in choice.delta.tool_calls {
                let function = call.function;
                let name = function.as_ref().and_then(|f| f.name.clone());
                if !self.started.contains(&call.index) {
                    self.started.push(call.index);
                    out.push_back(StreamEvent::ToolCallStart {
                        index: call.index,
                        id: call.id.unwrap_or_else(|| format!("call_{}", call.index)),
                        name: name.unwrap_or_default(),
                    });
                }
                if let Some(arguments) = function.and_then(|f| f.arguments)
                    && !arguments.is_empty()
                {
                    out.push_back(StreamEvent::ToolCallDelta {
                        index: call.index,
                        arguments_fragment: arguments,
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.stop = Some(stop_reason(Some(&reason)));
            }
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), DriverError> {
        // Some servers close without `[DONE]`; a finish reason means the answer was whole.
        if self.stop.is_some() {
            self.done(out);
            Ok(())
        } else {
            Err(DriverError::Protocol(
                "the stream ended before the answer was complete".into(),
            ))
        }
    }
}
