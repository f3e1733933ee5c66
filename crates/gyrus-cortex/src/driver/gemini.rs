//! The Gemini API: `POST {base}/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, the key in the `x-goog-api-key` header (never in the URL,
//! so it cannot leak through an error that quotes the URL).
//!
//! The system prompt becomes `systemInstruction`; turns are `contents` with `user` and `model`
//! roles, tool calls `functionCall` parts and results `functionResponse` parts (in a user
//! turn, with the tool's name looked up from the call). Tools are `functionDeclarations` with
//! their JSON Schema in `parametersJsonSchema`.
//!
//! Thinking models attach a `thoughtSignature` to their function calls and want it back with
//! the call in the next request. The canonical [`ToolCall`] has no place for it (and other
//! vendors restrict tool-call ids, so it cannot ride in the id), so the driver remembers the
//! signatures it was given, by call id, and puts them back when it encodes the transcript.
//! Ids the vendor does not give are made unique per answer (`gemini-{responseId}-{n}`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Decoder, Header, Http, parse_frame};
use super::sse::{Frame, Framer};
use super::{Driver, DriverConfig, DriverError, DriverFuture, EventStream, system_text};
use crate::types::{
    ChatRequest, ChatResponse, Message, Part, Role, StopReason, StreamEvent, ToolCall, ToolChoice,
    Usage,
};

/// Google's endpoint.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// A driver for the Gemini API.
#[derive(Debug, Clone)]
pub struct GeminiDriver {
    http: Http,
    signatures: Signatures,
}

impl GeminiDriver {
    /// A driver for `config.base_url` (without `/v1beta`).
    pub fn new(config: DriverConfig) -> Result<Self, DriverError> {
        let mut headers = Vec::new();
        if let Some(key) = &config.api_key {
            headers.push(Header {
                name: "x-goog-api-key",
                value: key.expose().to_owned(),
                secret: true,
            });
        }
        Ok(Self {
            http: Http::new(config, headers)?,
            signatures: Signatures::default(),
        })
    }
}

fn model_path(model: &str, method: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("/v1beta/models/{model}:{method}")
}

impl Driver for GeminiDriver {
    fn name(&self) -> &str {
        &self.http.config().name
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(async move {
            let body = encode(request, &self.signatures);
            let path = model_path(&request.model, "generateContent");
            let response: WireResponse = self.http.post_json(&path, &body).await?;
            let mut decoded = decode(response, &request.model, &self.signatures)?;
            if decoded.model.is_empty() {
                decoded.model = request.model.clone();
            }
            Ok(decoded)
        })
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(async move {
            let body = encode(request, &self.signatures);
            let path = format!(
                "{}?alt=sse",
                model_path(&request.model, "streamGenerateContent")
            );
            self.http
                .post_stream(
                    &path,
                    &body,
                    Framer::sse(),
                    StreamDecoder::new(self.signatures.clone()),
                )
                .await
        })
    }

    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
            let requests: Vec<Value> = texts
                .iter()
                .map(|text| json!({ "model": name, "content": { "parts": [{ "text": text }] } }))
                .collect();
            let body = json!({ "requests": requests });
            let response: EmbedResponse = self
                .http
                .post_json(&model_path(model, "batchEmbedContents"), &body)
                .await?;
            if response.embeddings.len() != texts.len() {
                return Err(DriverError::Protocol(format!(
                    "asked for {} embeddings, got {}",
                    texts.len(),
                    response.embeddings.len()
                )));
            }
            Ok(response.embeddings.into_iter().map(|e| e.values).collect())
        })
    }
}

/// The request body for `generateContent` and `streamGenerateContent`.
pub(crate) fn encode(request: &ChatRequest, signatures: &Signatures) -> Value {
    // Tool results carry only the call id; Gemini wants the function's name.
    let names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|m| m.tool_calls())
        .map(|call| (call.id.as_str(), call.name.as_str()))
        .collect();

    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::System => continue,
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        let mut parts = Vec::new();
        for part in &message.content {
            match part {
                Part::Text(text) if !text.is_empty() => parts.push(json!({ "text": text })),
                Part::Text(_) => {}
                Part::ToolCall(call) => {
                    let args = match &call.arguments {
                        Value::Object(_) => call.arguments.clone(),
                        other => json!({ "arguments": other }),
                    };
                    let mut part = json!({ "functionCall": { "name": call.name, "args": args } });
                    if let Some(signature) = signatures.get(&call.id) {
                        part["thoughtSignature"] = json!(signature);
                    }
                    parts.push(part);
                }
                Part::ToolResult(result) => {
                    let name = names
                        .get(result.call_id.as_str())
                        .copied()
                        .unwrap_or(&result.call_id);
                    // Gemini's convention: the output under "output", a failure under "error".
                    let key = if result.is_error { "error" } else { "output" };
                    parts.push(json!({
                        "functionResponse": { "name": name, "response": { key: result.content } }
                    }));
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    let contents: Vec<Value> = contents
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect();

    let mut body = json!({ "contents": contents });
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    if let Some(system) = system_text(request) {
        obj.insert(
            "systemInstruction".into(),
            json!({ "parts": [{ "text": system }] }),
        );
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "parametersJsonSchema": tool.parameters,
                })
            })
            .collect();
        obj.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
        let config = match &request.tool_choice {
            ToolChoice::Auto => json!({ "mode": "AUTO" }),
            ToolChoice::None => json!({ "mode": "NONE" }),
            ToolChoice::Required => json!({ "mode": "ANY" }),
            ToolChoice::Named(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
        };
        obj.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }
    let mut generation = serde_json::Map::new();
    if let Some(max) = request.max_tokens {
        generation.insert("maxOutputTokens".into(), json!(max));
    }
    if let Some(t) = request.temperature {
        generation.insert("temperature".into(), super::f32_json(t));
    }
    if let Some(p) = request.top_p {
        generation.insert("topP".into(), super::f32_json(p));
    }
    if !request.stop.is_empty() {
        generation.insert("stopSequences".into(), json!(request.stop));
    }
    if let Some(seed) = request.seed {
        generation.insert("seed".into(), json!(seed));
    }
    if !generation.is_empty() {
        obj.insert("generationConfig".into(), Value::Object(generation));
    }
    body
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    model_version: String,
    response_id: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    text: Option<String>,
    function_call: Option<WireFunctionCall>,
    /// Thought summaries are not part of the canonical answer.
    #[serde(default)]
    thought: bool,
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Value,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        // Thinking is billed as output.
        Usage {
            input_tokens: u.prompt_token_count,
            output_tokens: u.candidates_token_count + u.thoughts_token_count,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmbedResponse {
    #[serde(default)]
    embeddings: Vec<EmbedValues>,
}

#[derive(Debug, Deserialize)]
struct EmbedValues {
    values: Vec<f32>,
}

fn call_id(id: Option<String>, response_id: Option<&str>, index: usize) -> String {
    id.unwrap_or_else(|| match response_id {
        Some(response) => format!("gemini-{response}-{index}"),
        None => format!("gemini-call-{index}"),
    })
}

/// Most thought signatures remembered; past it the oldest half is forgotten (a call that
/// old is no longer in a live turn, where Gemini checks them).
const MAX_SIGNATURES: usize = 4096;

/// Thought signatures by tool-call id, shared by a driver and its streams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signatures(Arc<Mutex<SignatureMap>>);

#[derive(Debug, Default)]
struct SignatureMap {
    by_id: HashMap<String, (u64, String)>,
    next: u64,
}

impl Signatures {
    fn lock(&self) -> MutexGuard<'_, SignatureMap> {
        // A panic while holding the lock cannot leave the map half-written: use it anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, id: &str, signature: String) {
        let mut map = self.lock();
        if map.by_id.len() >= MAX_SIGNATURES {
            let cutoff = map.next.saturating_sub((MAX_SIGNATURES / 2) as u64);
            map.by_id.retain(|_, (seq, _)| *seq >= cutoff);
        }
        let seq = map.next;
        map.next += 1;
        map.by_id.insert(id.to_owned(), (seq, signature));
    }

    fn get(&self, id: &str) -> Option<String> {
        self.lock()
            .by_id
            .get(id)
            .map(|(_, signature)| signature.clone())
    }
}

fn decode(
    response: WireResponse,
    model: &str,
    signatures: &Signatures,
) -> Result<ChatResponse, DriverError> {
    let usage = response.usage_metadata.map(Usage::from).unwrap_or_default();
    let Some(candidate) = response.candidates.into_iter().next() else {
        // A prompt blocked by the safety filter has no candidates.
        if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
            tracing::debug!(%reason, "gemini blocked the prompt");
            return Ok(ChatResponse {
                message: Message {
                    role: Role::Assistant,
                    content: Vec::new(),
                },
                usage,
                stop: StopReason::ContentFilter,
                model: model.to_owned(),
            });
        }
        return Err(DriverError::Protocol("the answer has no candidates".into()));
    };
    let mut content = Vec::new();
    let mut calls = 0;
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(text) = part.text
            && !part.thought
            && !text.is_empty()
        {
            match content.last_mut() {
                Some(Part::Text(existing)) => existing.push_str(&text),
                _ => content.push(Part::Text(text)),
            }
        }
        if let Some(call) = part.function_call {
            let id = call_id(call.id, response.response_id.as_deref(), calls);
            if let Some(signature) = part.thought_signature {
                signatures.remember(&id, signature);
            }
            content.push(Part::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments: call.args,
            }));
            calls += 1;
        }
    }
    Ok(ChatResponse {
        message: Message {
            role: Role::Assistant,
            content,
        },
        usage,
        stop: stop_reason(candidate.finish_reason.as_deref(), calls > 0),
        model: response.model_version,
    })
}

fn stop_reason(reason: Option<&str>, called_tools: bool) -> StopReason {
    match reason {
        // Gemini says STOP for an answer that calls functions.
        Some("STOP") | None if called_tools => StopReason::ToolUse,
        Some("STOP") | None => StopReason::EndTurn,
        Some("MAX_TOKENS") => StopReason::MaxTokens,
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// Decodes `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse`
/// holding the next piece; the stream has no end marker, so the answer is complete when the
/// body ends after a finish reason.
#[derive(Debug)]
struct StreamDecoder {
    signatures: Signatures,
    calls: usize,
    usage: Usage,
    finish: Option<String>,
    blocked: bool,
}

impl StreamDecoder {
    fn new(signatures: Signatures) -> Self {
        Self {
            signatures,
            calls: 0,
            usage: Usage::default(),
            finish: None,
            blocked: false,
        }
    }
}

impl Decoder for StreamDecoder {
    fn frame(
        &mut self,
        frame: Frame,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, DriverError> {
        let chunk: WireResponse = parse_frame("Gemini", &frame.data)?;
        if let Some(usage) = chunk.usage_metadata {
            self.usage = usage.into();
        }
        if chunk.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            self.blocked = true;
        }
        let response_id = chunk.response_id;
        for candidate in chunk.candidates {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(text) = part.text
                    && !part.thought
                    && !text.is_empty()
                {
                    out.push_back(StreamEvent::TextDelta(text));
                }
                if let Some(call) = part.function_call {
                    // Gemini sends each call whole.
                    let index = self.calls;
                    self.calls += 1;
                    let id = call_id(call.id, response_id.as_deref(), index);
                    if let Some(signature) = part.thought_signature {
                        self.signatures.remember(&id, signature);
                    }
                    out.push_back(StreamEvent::ToolCallStart {
                        index,
                        id,
                        name: call.name,
                    });
                    let args = if call.args.is_null() {
                        json!({})
                    } else {
                        call.args
                    };
                    out.push_back(StreamEvent::ToolCallDelta {
                        index,
                        arguments_fragment: args.to_string(),
                    });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(reason);
            }
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), DriverError> {
        let stop = match (&self.finish, self.blocked) {
            (Some(reason), _) => stop_reason(Some(reason), self.calls > 0),
            (None, true) => StopReason::ContentFilter,
            (None, false) => {
                return Err(DriverError::Protocol(
                    "the stream ended before the answer was complete".into(),
                ));
            }
        };
        out.push_back(StreamEvent::Done {
            usage: self.usage,
            stop,
        });
        Ok(())
    }
}
