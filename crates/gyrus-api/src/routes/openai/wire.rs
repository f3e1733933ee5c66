//! The OpenAI wire format on the server side, as pure functions: requests in
//! (`chat.completions`, `embeddings`) to canonical types, and canonical answers out
//! (`chat.completion`, `chat.completion.chunk` frames, `embedding` lists). The mirror image of
//! the client-side mapping in `gyrus_cortex::driver::openai`. No I/O here; the handlers in
//! `super` do that.
//!
//! Fields this gateway does not use (`user`, `metadata`, `store`, `logprobs`,
//! `response_format`, `parallel_tool_calls`, …) are ignored rather than rejected: OpenAI
//! clients send many of them.

use gyrus_cortex::types::{
    ChatRequest, ChatResponse, Message, Part, Role, StopReason, StreamEvent, ToolCall, ToolChoice,
    ToolDef, ToolResult, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Why a request cannot be mapped: a sentence saying what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// `POST /v1/chat/completions`, as sent. Unknown fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompletionBody {
    /// `gyrus/auto` (the router chooses) or `gyrus/<cortex>`; `GET /v1/models` lists them.
    pub model: String,
    /// The conversation: `system`/`developer`, `user`, `assistant` and `tool` messages.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<WireMessage>,
    /// Functions the model may call: `[{type: "function", function: {name, description,
    /// parameters}}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<WireTool>>,
    /// `auto`, `none`, `required` or `{type: "function", function: {name}}`.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Most tokens to generate (the older name).
    pub max_tokens: Option<u32>,
    /// Most tokens to generate; wins over `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// A stop sequence or a list of them.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<Value>,
    /// Sampling seed, where the cortex supports one.
    pub seed: Option<i64>,
    /// Whether to answer with server-sent `chat.completion.chunk` events.
    pub stream: Option<bool>,
    /// `{include_usage: true}` adds a usage-only chunk before `[DONE]`.
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<StreamOptions>,
    /// How many choices; only 1 is supported.
    pub n: Option<u32>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Whether a usage-only chunk precedes `[DONE]`.
    pub include_usage: Option<bool>,
}

/// One message as sent.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

/// One tool as sent.
#[derive(Debug, Deserialize)]
pub struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// A chat request in canonical form, with what the gateway needs besides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completion {
    /// The requested model id, as sent.
    pub model: String,
    /// The request; its `model` is left empty (the frontal lobe fills in the cortex's).
    pub request: ChatRequest,
    /// Whether to stream.
    pub stream: bool,
    /// Whether a usage-only chunk precedes `[DONE]`.
    pub include_usage: bool,
}

/// Maps a `chat.completions` body to canonical form, or says what is wrong with it.
pub(crate) fn completion(body: CompletionBody) -> Result<Completion, Invalid> {
    if let Some(n) = body.n
        && n != 1
    {
        return Err(invalid(format!(
            "`n` is {n}, but the gateway answers with one choice: leave `n` out or set it to 1"
        )));
    }
    if body.messages.is_empty() {
        return Err(invalid("`messages` is empty: send at least one message"));
    }
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m).map_err(|Invalid(e)| invalid(format!("messages[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = body
        .tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool(t).map_err(|Invalid(e)| invalid(format!("tools[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match body.tool_choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(choice) => tool_choice(&choice)?,
    };
    let request = ChatRequest {
        model: String::new(),
        messages,
        tools,
        tool_choice,
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        temperature: body.temperature,
        top_p: body.top_p,
        stop: stop(body.stop)?,
        // A negative seed keeps its bits: the vendor only needs the same number each time.
        seed: body.seed.map(|s| s as u64),
    };
    Ok(Completion {
        model: body.model,
        request,
        stream: body.stream.unwrap_or(false),
        include_usage: body
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

fn message(m: WireMessage) -> Result<Message, Invalid> {
    let role = match m.role.as_str() {
        // `developer` is the newer name OpenAI gives the system prompt.
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(invalid(format!(
                "unknown role `{other}`: use system, developer, user, assistant or tool"
            )));
        }
    };
    let text = content_text(m.content.as_ref())?;
    match role {
        Role::Tool => {
            let call_id = m.tool_call_id.filter(|id| !id.is_empty()).ok_or_else(|| {
                invalid("a tool message needs `tool_call_id`: the id of the call it answers")
            })?;
            Ok(Message::tool_result(ToolResult {
                call_id,
                content: text,
                is_error: false,
            }))
        }
        Role::Assistant => {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(Part::Text(text));
            }
            for (i, call) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
                content
                    .push(Part::ToolCall(tool_call(call).map_err(|Invalid(e)| {
                        invalid(format!("tool_calls[{i}]: {e}"))
                    })?));
            }
            Ok(Message { role, content })
        }
        Role::System | Role::User => {
            if m.tool_calls.is_some_and(|c| !c.is_empty()) {
                return Err(invalid(format!(
                    "only assistant messages carry `tool_calls`, not {} messages",
                    m.role
                )));
            }
            Ok(Message::text(role, text))
        }
    }
}

/// A message's text: a string, `null`, or an array of `{type: "text", text}` parts.
fn content_text(content: Option<&Value>) -> Result<String, Invalid> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for (i, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match (kind, part.get("text").or_else(|| part.get("refusal"))) {
                    ("text" | "refusal", Some(Value::String(text))) => out.push_str(text),
                    ("text" | "refusal", _) => {
                        return Err(invalid(format!(
                            "content[{i}] is a {kind} part without a string `{}`",
                            if kind == "text" { "text" } else { "refusal" }
                        )));
                    }
                    _ => {
                        return Err(invalid(format!(
                            "content[{i}] has type `{kind}`, but the gateway takes text only: \
                             send `{{\"type\":\"text\",\"text\":…}}` parts or a string"
                        )));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid(
            "`content` must be a string, null or an array of text parts",
        )),
    }
}

fn tool_call(call: WireToolCall) -> Result<ToolCall, Invalid> {
    if let Some(kind) = &call.kind
        && kind != "function"
    {
        return Err(invalid(format!(
            "has type `{kind}`; only `function` tool calls are supported"
        )));
    }
    let raw = call.function.arguments.unwrap_or_default();
    let arguments = if raw.trim().is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&raw).map_err(|e| {
            invalid(format!(
                "`function.arguments` of `{}` is not valid JSON ({e}): send the arguments as \
                 a JSON object encoded in a string",
                call.function.name
            ))
        })?
    };
    Ok(ToolCall {
        id: call.id,
        name: call.function.name,
        arguments,
    })
}

fn tool(t: WireTool) -> Result<ToolDef, Invalid> {
    if t.kind != "function" {
        return Err(invalid(format!(
            "has type `{}`; only `function` tools are supported",
            t.kind
        )));
    }
    let function = t
        .function
        .ok_or_else(|| invalid("a function tool needs `function: {name, parameters}`"))?;
    if function.name.is_empty() {
        return Err(invalid("`function.name` is empty"));
    }
    let parameters = match function.parameters {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err(invalid(format!(
                "`function.parameters` of `{}` must be a JSON Schema object",
                function.name
            )));
        }
    };
    Ok(ToolDef {
        name: function.name,
        description: function.description.unwrap_or_default(),
        parameters,
    })
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, Invalid> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(format!(
                "`tool_choice` is `{other}`: use auto, none, required or \
                 {{\"type\":\"function\",\"function\":{{\"name\":…}}}}"
            ))),
        },
        Value::Object(_) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(|name| ToolChoice::Named(name.to_owned()))
            .ok_or_else(|| {
                invalid("`tool_choice` as an object needs `{\"type\":\"function\",\"function\":{\"name\":…}}`")
            }),
        _ => Err(invalid(
            "`tool_choice` must be a string (auto, none, required) or a function object",
        )),
    }
}

fn stop(stop: Option<Value>) -> Result<Vec<String>, Invalid> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(invalid("`stop` must be a string or an array of strings")),
            })
            .collect(),
        Some(_) => Err(invalid("`stop` must be a string or an array of strings")),
    }
}

/// OpenAI's `finish_reason` for a stop reason (a message that calls tools says `tool_calls`
/// whatever the cortex said).
pub(crate) fn finish_reason(stop: &StopReason, calls_tools: bool) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
        _ if calls_tools => "tool_calls",
        StopReason::EndTurn | StopReason::StopSequence | StopReason::Other(_) => "stop",
    }
}

/// OpenAI's `usage`.
pub(crate) fn usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

/// Arguments go out as JSON text; arguments the model wrote as broken JSON (kept as a string)
/// go out as it wrote them.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

/// What identifies one answer: its id, its creation time (Unix seconds) and the model id it
/// reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id it reports: `gyrus/<cortex>`.
    pub model: String,
}

/// A `chat.completion` object for a complete answer.
pub(crate) fn chat_completion(answer: &Answer, response: &ChatResponse) -> Value {
    let text = response.message.text_content();
    let calls: Vec<Value> = response
        .message
        .tool_calls()
        .map(|call| {
            json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_text(&call.arguments)},
            })
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": Value::Null,
    });
    let finish = finish_reason(&response.stop, !calls.is_empty());
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": Value::Null,
            "finish_reason": finish,
        }],
        "usage": usage(&response.usage),
    })
}

/// Writes a streamed answer as `chat.completion.chunk` server-sent events: the role first,
/// then one chunk per text or tool-call delta, a chunk with `finish_reason` (and usage, unless
/// a usage-only chunk follows because the client asked for `include_usage`), then
/// `data: [DONE]`. A failure mid-stream is an `{"error":…}` event, after which the stream
/// ends without `[DONE]` (what OpenAI's clients turn into an exception).
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    answer: Answer,
    include_usage: bool,
    calls_tools: bool,
}

impl ChunkWriter {
    /// A writer for one answer.
    pub fn new(answer: Answer, include_usage: bool) -> ChunkWriter {
        ChunkWriter {
            answer,
            include_usage,
            calls_tools: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, usage: Option<Value>) -> String {
        let chunk = json!({
            "id": self.answer.id,
            "object": "chat.completion.chunk",
            "created": self.answer.created,
            "model": self.answer.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish}],
            "usage": usage,
        });
        frame(&chunk)
    }

    /// The first event: the assistant's role.
    pub fn start(&self) -> String {
        self.chunk(json!({"role": "assistant", "content": ""}), None, None)
    }

    /// The events for one stream event (none for an empty text delta). After `Done` the
    /// answer is complete and the last of these is `data: [DONE]`.
    pub fn event(&mut self, event: StreamEvent) -> String {
        match event {
            StreamEvent::TextDelta(text) if text.is_empty() => String::new(),
            StreamEvent::TextDelta(text) => self.chunk(json!({"content": text}), None, None),
            StreamEvent::ToolCallStart { index, id, name } => {
                self.calls_tools = true;
                self.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                    None,
                    None,
                )
            }
            StreamEvent::ToolCallDelta {
                index,
                arguments_fragment,
            } => self.chunk(
                json!({"tool_calls": [{
                    "index": index,
                    "function": {"arguments": arguments_fragment},
                }]}),
                None,
                None,
            ),
            StreamEvent::Done { usage: used, stop } => {
                let finish = finish_reason(&stop, self.calls_tools);
                let mut out = if self.include_usage {
                    let mut out = self.chunk(json!({}), Some(finish), None);
                    out.push_str(&frame(&json!({
                        "id": self.answer.id,
                        "object": "chat.completion.chunk",
                        "created": self.answer.created,
                        "model": self.answer.model,
                        "choices": [],
                        "usage": usage(&used),
                    })));
                    out
                } else {
                    self.chunk(json!({}), Some(finish), Some(usage(&used)))
                };
                out.push_str("data: [DONE]\n\n");
                out
            }
        }
    }

    /// The event for a failure mid-stream.
    pub fn failure(&self, message: &str, kind: &str, code: &str) -> String {
        frame(&json!({"error": {"message": message, "type": kind, "code": code}}))
    }
}

fn frame(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// `POST /v1/embeddings`, as sent. Unknown fields are ignored, `model` among them: the
/// bundled sentence encoder answers whatever it names, and the answer names the encoder.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsBody {
    /// A string or an array of strings (token arrays are not supported).
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (the default) or `base64` (little-endian f32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the encoder's dimension when given.
    #[serde(default)]
    pub dimensions: Option<usize>,
}

/// How many texts one embeddings call may carry (OpenAI's own limit).
pub(crate) const MAX_INPUTS: usize = 2048;

/// How embeddings are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

/// The texts to embed and how to write the vectors, or what is wrong.
pub(crate) fn embeddings(body: &EmbeddingsBody) -> Result<(Vec<String>, Encoding), Invalid> {
    let texts = match &body.input {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err(invalid("`input` is an empty array: send at least one text"));
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(invalid(
                    "`input` holds something other than strings: token arrays are not \
                     supported, send the text",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                "`input` must be a string or an array of strings (token arrays are not supported)",
            ));
        }
    };
    if texts.len() > MAX_INPUTS {
        return Err(invalid(format!(
            "`input` has {} texts; send at most {MAX_INPUTS} per call",
            texts.len()
        )));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(invalid(format!(
            "input[{i}] is empty: every text to embed needs some content"
        )));
    }
    let encoding = match body.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(invalid(format!(
                "`encoding_format` is `{other}`: use float or base64"
            )));
        }
    };
    Ok((texts, encoding))
}

/// The `embeddings` answer. `prompt_tokens` counts words (the encoder's own token count is
/// not exposed): an estimate, as the field is for accounting only.
pub(crate) fn embedding_list(
    texts: &[String],
    vectors: &[Vec<f32>],
    encoding: Encoding,
    model: &str,
) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => Value::String(base64_f32(v)),
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// Standard base64 (with padding) of the vector's little-endian f32 bytes, as OpenAI's
/// `encoding_format: "base64"` answers.
pub(crate) fn base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /v1/models`.
pub(crate) fn model_list(ids: &[String], created: u64) -> Value {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "gyrus"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use pretty_assertions::assert_eq;

    use super::*;

    fn body(value: Value) -> CompletionBody {
        serde_json::from_value(value).unwrap()
    }

    fn map(value: Value) -> Result<Completion, Invalid> {
        completion(body(value))
    }

    fn err(value: Value) -> String {
        map(value).unwrap_err().0
    }

    fn answer() -> Answer {
        Answer {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "gyrus/stub".into(),
        }
    }

    #[test]
    fn a_full_request_maps_to_canonical_form() {
        let c = map(json!({
            "model": "gyrus/stub",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather "}, {"type": "text", "text": "in Paris?"}], "name": "ann"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "forecast", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "seed": 42,
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "ignored", "logprobs": false, "metadata": {"k": "v"}, "parallel_tool_calls": true,
        }))
        .unwrap();
        assert_eq!(c.model, "gyrus/stub");
        assert!(c.stream && c.include_usage);
        assert_eq!(
            c.request,
            ChatRequest {
                model: String::new(),
                messages: vec![
                    Message::system("be brief"),
                    Message::user("weather in Paris?"),
                    Message {
                        role: Role::Assistant,
                        content: vec![Part::ToolCall(ToolCall {
                            id: "c1".into(),
                            name: "weather".into(),
                            arguments: json!({"city": "Paris"}),
                        })],
                    },
                    Message::tool_result(ToolResult {
                        call_id: "c1".into(),
                        content: "sunny".into(),
                        is_error: false,
                    }),
                ],
                tools: vec![ToolDef {
                    name: "weather".into(),
                    description: "forecast".into(),
                    parameters: json!({"type": "object"}),
                }],
                tool_choice: ToolChoice::Named("weather".into()),
                max_tokens: Some(20),
                temperature: Some(0.5),
                top_p: Some(0.9),
                stop: vec!["END".into()],
                seed: Some(42),
            }
        );
    }

    #[test]
    fn nulls_and_defaults_are_accepted() {
        let c = map(json!({
            "model": "gyrus/auto",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": null, "tool_choice": null, "stop": null, "stream": null, "n": 1,
        }))
        .unwrap();
        assert!(!c.stream && !c.include_usage);
        assert_eq!(c.request.tool_choice, ToolChoice::Auto);
        assert_eq!(c.request.stop, Vec::<String>::new());
        let c = map(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "tool_choice": "required"})).unwrap();
        assert_eq!(c.request.stop, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(c.request.tool_choice, ToolChoice::Required);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let user = json!({"role": "user", "content": "hi"});
        for (request, expected) in [
            (json!({"model": "m", "messages": []}), "`messages` is empty"),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0]: unknown role `robot`",
            ),
            (
                json!({"model": "m", "messages": [user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages[1]: tool_calls[0]: `function.arguments` of `f` is not valid JSON",
            ),
            (
                json!({"model": "m", "messages": [user], "n": 2}),
                "`n` is 2",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0]: a tool message needs `tool_call_id`",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0]: content[0] has type `image_url`",
            ),
            (
                json!({"model": "m", "messages": [user], "tools": [{"type": "retrieval"}]}),
                "tools[0]: has type `retrieval`",
            ),
            (
                json!({"model": "m", "messages": [user], "tool_choice": "sometimes"}),
                "`tool_choice` is `sometimes`",
            ),
            (
                json!({"model": "m", "messages": [user], "stop": 3}),
                "`stop` must be a string",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "messages[0]: `content` must be a string",
            ),
        ] {
            let message = err(request);
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn a_complete_answer_maps_to_a_chat_completion() {
        let response = ChatResponse {
            message: Message::assistant("Hello"),
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
            },
            stop: StopReason::EndTurn,
            model: "vendor".into(),
        };
        assert_eq!(
            chat_completion(&answer(), &response),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gyrus/stub",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            })
        );
        let calls = ChatResponse {
            message: Message {
                role: Role::Assistant,
                content: vec![
                    Part::ToolCall(ToolCall {
                        id: "c1".into(),
                        name: "weather".into(),
                        arguments: json!({"city": "Paris"}),
                    }),
                    Part::ToolCall(ToolCall {
                        id: "c2".into(),
                        name: "raw".into(),
                        arguments: json!("{broken"),
                    }),
                ],
            },
            usage: Usage::default(),
            stop: StopReason::EndTurn,
            model: "vendor".into(),
        };
        let value = chat_completion(&answer(), &calls);
        assert_eq!(value["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(value["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            value["choices"][0]["message"]["tool_calls"],
            json!([
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "raw", "arguments": "{broken"}},
            ])
        );
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason(&StopReason::MaxTokens, false), "length");
        assert_eq!(finish_reason(&StopReason::ToolUse, false), "tool_calls");
        assert_eq!(finish_reason(&StopReason::EndTurn, true), "tool_calls");
        assert_eq!(finish_reason(&StopReason::StopSequence, false), "stop");
        assert_eq!(
            finish_reason(&StopReason::ContentFilter, true),
            "content_filter"
        );
    }

    fn events(frames: &str) -> Vec<Value> {
        frames
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let data = f.strip_prefix("data: ").unwrap();
                if data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn a_stream_maps_to_chunks_ending_in_done() {
        let mut writer = ChunkWriter::new(answer(), false);
        let mut out = writer.start();
        for event in [
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta(String::new()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments_fragment: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments_fragment: "\"Paris\"}".into(),
            },
            StreamEvent::Done {
                usage: Usage {
                    input_tokens: 4,
                    output_tokens: 6,
                },
                stop: StopReason::EndTurn,
            },
        ] {
            out.push_str(&writer.event(event));
        }
        let events = events(&out);
        let deltas: Vec<&Value> = events
            .iter()
            .filter_map(|e| e.get("choices"))
            .map(|c| &c[0]["delta"])
            .collect();
        assert_eq!(
            deltas,
            vec![
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Hel"}),
                &json!({"content": "lo"}),
                &json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                &json!({}),
            ]
        );
        let last_chunk = &events[events.len() - 2];
        assert_eq!(last_chunk["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(last_chunk["usage"]["total_tokens"], 10);
        assert_eq!(last_chunk["object"], "chat.completion.chunk");
        assert_eq!(events.last().unwrap(), &json!("[DONE]"));
    }

    #[test]
    fn include_usage_adds_a_usage_only_chunk() {
        let mut writer = ChunkWriter::new(answer(), true);
        let out = writer.event(StreamEvent::Done {
            usage: Usage {
                input_tokens: 1,
                output_tokens: 1,
            },
            stop: StopReason::MaxTokens,
        });
        let events = events(&out);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["choices"][0]["finish_reason"], "length");
        assert_eq!(events[0]["usage"], Value::Null);
        assert_eq!(events[1]["choices"], json!([]));
        assert_eq!(events[1]["usage"]["total_tokens"], 2);
        assert_eq!(events[2], json!("[DONE]"));
    }

    #[test]
    fn embeddings_inputs_and_encodings() {
        let parse = |v: Value| embeddings(&serde_json::from_value(v).unwrap());
        assert_eq!(
            parse(json!({"input": "a", "model": "x"})).unwrap(),
            (vec!["a".to_owned()], Encoding::Float)
        );
        assert_eq!(
            parse(json!({"input": ["a", "b"], "encoding_format": "base64"})).unwrap(),
            (vec!["a".to_owned(), "b".to_owned()], Encoding::Base64)
        );
        for (v, expected) in [
            (json!({"input": []}), "`input` is an empty array"),
            (json!({"input": [1, 2]}), "`input` holds something other"),
            (json!({"input": 5}), "`input` must be"),
            (json!({"input": ["a", " "]}), "input[1] is empty"),
            (
                json!({"input": "a", "encoding_format": "int8"}),
                "`encoding_format` is `int8`",
            ),
        ] {
            let message = parse(v).unwrap_err().0;
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn base64_is_little_endian_f32_with_padding() {
        // 1.0f32 = 00 00 80 3f; 2.0f32 = 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[1.0, 2.0, 0.0]), "AACAPwAAAEAAAAAA");
        assert_eq!(base64_f32(&[]), "");
        let list = embedding_list(&["two words".into()], &[vec![1.0]], Encoding::Base64, "enc");
        assert_eq!(
            list,
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": "AACAPw=="}],
                   "model": "enc", "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        );
    }

    #[test]
    fn models_list_in_openai_shape() {
        assert_eq!(
            model_list(&["gyrus/auto".into(), "gyrus/a".into()], 5),
            json!({"object": "list", "data": [
                {"id": "gyrus/auto", "object": "model", "created": 5, "owned_by": "gyrus"},
                {"id": "gyrus/a", "object": "model", "created": 5, "owned_by": "gyrus"},
            ]})
        );
    }
}
