//! The `Driver` trait and its wire-format drivers.
//!
//! A driver speaks one vendor's wire format over HTTP and translates it to and from the
//! canonical [`types`](crate::types). Drivers are used as `Arc<dyn Driver>`, so the trait's
//! methods return boxed futures and streams.
//!
//! - [`openai`]: OpenAI-compatible `/chat/completions` and `/embeddings` (OpenAI, vLLM,
//!   llama.cpp server, LM Studio, OpenRouter).
//! - [`anthropic`]: the Anthropic Messages API.
//! - [`gemini`]: the Gemini API (`generateContent`, `streamGenerateContent`).
//! - [`ollama`]: Ollama's `/api/chat` and `/api/embed`.
//! - [`retry`]: the [`Retry`] and [`Fallback`] wrappers.
//!
//! Errors are classified ([`DriverError`]) so the router can tell a retryable failure (rate
//! limit, server error, timeout, connection) from one that will fail again (bad key, bad
//! request, unparseable answer). No error message carries the API key.

pub mod anthropic;
pub mod gemini;
mod http;
pub mod local;
pub mod ollama;
pub mod openai;
pub mod retry;
mod sse;

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::types::{ChatRequest, ChatResponse, StreamCollector, StreamEvent};

pub use anthropic::AnthropicDriver;
pub use gemini::GeminiDriver;
pub use local::LocalDriver;
pub use ollama::OllamaDriver;
pub use openai::OpenAiDriver;
pub use retry::{Fallback, Retry, RetryPolicy};

/// A stream of events of one answer; ends after [`StreamEvent::Done`] or an error.
pub type EventStream = futures_util::stream::BoxStream<'static, Result<StreamEvent, DriverError>>;

/// The future a [`Driver`] method returns.
pub type DriverFuture<'a, T> = BoxFuture<'a, Result<T, DriverError>>;

/// A model endpoint (a cortex) that answers chat requests.
pub trait Driver: Send + Sync + fmt::Debug {
    /// The name this driver was configured with (used in logs and routing records).
    fn name(&self) -> &str;

    /// A complete answer.
    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse>;

    /// A streamed answer. Errors before the first byte of the answer come back here; errors
    /// later in the stream come as the stream's last item.
    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream>;

    /// Embeddings of `texts` with `model`, one vector per text, in order.
    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        let _ = (model, texts);
        let name = self.name().to_owned();
        Box::pin(async move {
            Err(DriverError::Unsupported(format!(
                "{name} has no embeddings"
            )))
        })
    }
}

/// Reads a whole stream into one answer (text joined, tool calls assembled). Fails with the
/// stream's error, or with [`DriverError::Protocol`] when the stream ends without `Done`.
pub async fn collect_stream(
    mut stream: EventStream,
    model: impl Into<String>,
) -> Result<ChatResponse, DriverError> {
    use futures_util::StreamExt;
    let mut collector = StreamCollector::new();
    while let Some(event) = stream.next().await {
        collector.push(event?);
    }
    if !collector.is_done() {
        return Err(DriverError::Protocol(
            "stream ended before the answer was complete".into(),
        ));
    }
    Ok(collector.finish(model))
}

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The key was refused (HTTP 401 or 403).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Too many requests (HTTP 429); `retry_after` is the vendor's hint, if it gave one.
    #[error("rate limited{}: {message}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// How long the vendor asked us to wait.
        retry_after: Option<Duration>,
        /// The vendor's message.
        message: String,
    },
    /// The vendor refused the request as malformed, too large or unknown (other 4xx), with
    /// the vendor's reason.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The vendor failed (5xx, Anthropic's 529 "overloaded", or an error event mid-stream).
    #[error("server error {status}: {message}")]
    Server {
        /// The HTTP status (or the nearest one for a streamed error).
        status: u16,
        /// The vendor's message.
        message: String,
    },
    /// No answer in time: connecting, the whole call, or a stream that went idle.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed or broke.
    #[error("transport error: {0}")]
    Transport(String),
    /// The vendor's answer was not what its wire format says (unparseable or unexpected).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The driver cannot do this (embeddings on a chat-only vendor, …).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl DriverError {
    /// Whether trying again (later, or on another cortex) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout(_) | Self::Transport(_)
        )
    }
}

/// An API key. Its `Debug` shows no part of it and it has no `Serialize`, so it cannot end up
/// in logs, errors or stored config by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that puts it into a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for Secret {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

/// How long a driver waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the TCP (and TLS) connection.
    pub connect: Duration,
    /// For a whole non-streamed call; for a streamed call, until the answer starts (headers).
    pub request: Duration,
    /// Between two chunks of a streamed answer.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(300),
            idle: Duration::from_secs(60),
        }
    }
}

/// Where a driver connects and with what key.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The name the driver reports ([`Driver::name`]).
    pub name: String,
    /// The vendor's base URL; each driver documents what it appends.
    pub base_url: String,
    /// The API key, if the endpoint needs one.
    pub api_key: Option<Secret>,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl DriverConfig {
    /// A config with no key and default timeouts.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key: None,
            timeouts: Timeouts::default(),
        }
    }

    /// With this API key.
    pub fn with_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// With these timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// The text of a request's system messages, joined by blank lines; `None` without any.
pub(crate) fn system_text(request: &ChatRequest) -> Option<String> {
    let parts: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == crate::types::Role::System)
        .map(|m| m.text_content())
        .filter(|t| !t.is_empty())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n\n"))
    }
}

/// An `f32` setting as JSON, written as its shortest decimal form (`0.2`, not the
/// `0.20000000298023224` a widening cast gives).
pub(crate) fn f32_json(value: f32) -> serde_json::Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}
