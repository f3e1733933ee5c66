//! HTTP plumbing shared by the drivers: the client (rustls with the ring provider and
//! Mozilla's roots), timeouts, classification of failed responses and streamed bodies.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

use super::sse::{Frame, Framer};
use super::{DriverConfig, DriverError, EventStream, Secret};
use crate::types::StreamEvent;

/// Longest vendor message kept in an error.
const MAX_MESSAGE: usize = 600;

/// One vendor endpoint: a client, its base URL and the headers every request carries.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base_url: String,
    headers: HeaderMap,
    key: Option<Secret>,
    config: DriverConfig,
}

/// A header a driver sends on every request; `secret` ones are marked sensitive so they never
/// show in debug output.
pub(crate) struct Header {
    pub name: &'static str,
    pub value: String,
    pub secret: bool,
}

impl Http {
    pub(crate) fn new(config: DriverConfig, headers: Vec<Header>) -> Result<Self, DriverError> {
        let mut map = HeaderMap::new();
        for header in headers {
            let mut value = HeaderValue::from_str(&header.value).map_err(|_| {
                DriverError::BadRequest(format!(
                    "header {} has characters HTTP does not allow",
                    header.name
                ))
            })?;
            value.set_sensitive(header.secret);
            map.insert(HeaderName::from_static(header.name), value);
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .connect_timeout(config.timeouts.connect)
            .build()
            .map_err(|e| DriverError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            headers: map,
            key: config.api_key.clone(),
            config,
        })
    }

    pub(crate) fn config(&self) -> &DriverConfig {
        &self.config
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Replaces the API key, wherever it appears in `text`, by `[redacted]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        redact(text, self.key.as_ref())
    }

    /// POSTs `body` as JSON and parses the JSON answer as `T`, all within the request timeout.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, DriverError> {
        let call = async {
            let response = self.send(path, body).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
            if !status.is_success() {
                return Err(classify(
                    status.as_u16(),
                    &headers,
                    &bytes,
                    self.key.as_ref(),
                ));
            }
            serde_json::from_slice::<T>(&bytes).map_err(|e| {
                DriverError::Protocol(self.redact(&format!("unexpected answer from {path}: {e}")))
            })
        };
        match tokio::time::timeout(self.config.timeouts.request, call).await {
            Ok(result) => result,
            Err(_) => Err(DriverError::Timeout(format!(
                "no complete answer within {:?}",
                self.config.timeouts.request
            ))),
        }
    }

    /// POSTs `body` and turns the streamed answer into events: `framing` splits the body into
    /// frames, `decoder` turns frames into events. The request timeout covers the wait for
    /// the answer to start; after that, the idle timeout covers each gap between chunks.
    pub(crate) async fn post_stream<D: Decoder>(
        &self,
        path: &str,
        body: &serde_json::Value,
        framing: Framer,
        decoder: D,
    ) -> Result<EventStream, DriverError> {
        let start = async {
            let response = self.send(path, body).await?;
            let status = response.status();
            if !status.is_success() {
                let headers = response.headers().clone();
                let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
                return Err(classify(
                    status.as_u16(),
                    &headers,
                    &bytes,
                    self.key.as_ref(),
                ));
            }
            Ok(response)
        };
        let response = match tokio::time::timeout(self.config.timeouts.request, start).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(DriverError::Timeout(format!(
                    "the answer did not start within {:?}",
                    self.config.timeouts.request
                )));
            }
        };
        let state = StreamState {
            body: response.bytes_stream().boxed(),
            framing,
            decoder,
            queue: VecDeque::new(),
            finished: false,
            idle: self.config.timeouts.idle,
            key: self.key.clone(),
        };
        Ok(futures_util::stream::unfold(state, next_event).boxed())
    }

    async fn send(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, DriverError> {
        self.client
            .post(self.url(path))
            .headers(self.headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(&e))
    }

    fn transport(&self, error: &reqwest::Error) -> DriverError {
        map_reqwest(error, self.key.as_ref())
    }
}

/// Turns the frames of one streamed answer into events.
pub(crate) trait Decoder: Send + 'static {
    /// Handles one frame, pushing the events it yields. Returns `true` once the answer is
    /// complete (its `Done` pushed); later bytes are ignored.
    fn frame(&mut self, frame: Frame, out: &mut VecDeque<StreamEvent>)
    -> Result<bool, DriverError>;

    /// The body ended before `frame` returned `true`: push `Done` if what came is a whole
    /// answer, or fail.
    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), DriverError> {
        let _ = out;
        Err(DriverError::Protocol(
            "the stream ended before the answer was complete".into(),
        ))
    }
}

struct StreamState<D> {
    body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    framing: Framer,
    decoder: D,
    queue: VecDeque<StreamEvent>,
    finished: bool,
    idle: Duration,
    key: Option<Secret>,
}

type Step<D> = Option<(Result<StreamEvent, DriverError>, StreamState<D>)>;

async fn next_event<D: Decoder>(mut state: StreamState<D>) -> Step<D> {
    loop {
        if let Some(event) = state.queue.pop_front() {
            return Some((Ok(event), state));
        }
        if state.finished {
            return None;
        }
        let chunk = match tokio::time::timeout(state.idle, state.body.next()).await {
            Err(_) => {
                let idle = state.idle;
                return fail(
                    state,
                    DriverError::Timeout(format!("the stream was idle for {idle:?}")),
                );
            }
            Ok(chunk) => chunk,
        };
        match chunk {
            Some(Ok(bytes)) => {
                let frames = state.framing.push(&bytes);
                if let Err(error) = feed(&mut state, frames) {
                    return fail(state, error);
                }
            }
            Some(Err(error)) => {
                let error = map_reqwest(&error, state.key.as_ref());
                return fail(state, error);
            }
            None => {
                let frames = state.framing.finish();
                if let Err(error) = feed(&mut state, frames) {
                    return fail(state, error);
                }
                if !state.finished {
                    state.finished = true;
                    if let Err(error) = state.decoder.end(&mut state.queue) {
                        return fail(state, error);
                    }
                }
            }
        }
    }
}

fn feed<D: Decoder>(state: &mut StreamState<D>, frames: Vec<Frame>) -> Result<(), DriverError> {
    for frame in frames {
        if state.finished {
            break;
        }
        if state.decoder.frame(frame, &mut state.queue)? {
            state.finished = true;
        }
    }
    Ok(())
}

fn fail<D>(mut state: StreamState<D>, error: DriverError) -> Step<D> {
    // Events decoded before the failure are dropped with it: the answer is incomplete.
    state.queue.clear();
    state.finished = true;
    let error = redact_error(error, state.key.as_ref());
    Some((Err(error), state))
}

/// rustls with the ring provider and Mozilla's root certificates: the same trust for every
/// platform, and no C toolchain for aws-lc.
fn tls_config() -> Result<rustls::ClientConfig, DriverError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DriverError::Transport(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn map_reqwest(error: &reqwest::Error, key: Option<&Secret>) -> DriverError {
    // The whole source chain: reqwest's own message is often just "error sending request".
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let text = redact(&text, key);
    if error.is_timeout() {
        DriverError::Timeout(text)
    } else if error.is_decode() {
        DriverError::Protocol(text)
    } else {
        DriverError::Transport(text)
    }
}

/// Classifies a failed HTTP answer, keeping the vendor's own message.
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&Secret>,
) -> DriverError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(vendor_message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    let message = truncate(&redact(&message, key));
    // Google answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
    let google_bad_key = parsed
        .as_ref()
        .is_some_and(|body| google_reason(body) == Some("API_KEY_INVALID"));
    match status {
        401 | 403 => DriverError::Auth(message),
        400 if google_bad_key => DriverError::Auth(message),
        429 => DriverError::RateLimited {
            retry_after: retry_after(headers)
                .or_else(|| parsed.as_ref().and_then(google_retry_delay)),
            message,
        },
        408 => DriverError::Timeout(message),
        400..=499 => DriverError::BadRequest(message),
        _ => DriverError::Server { status, message },
    }
}

/// The message in a vendor error body: `{"error": {"message": …}}` (OpenAI, Anthropic,
/// Gemini), `{"error": "…"}` (Ollama, llama.cpp) or `{"message": …}`.
pub(crate) fn vendor_message(body: &serde_json::Value) -> Option<String> {
    let error = body.get("error");
    error
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .or_else(|| error.and_then(|e| e.as_str()))
        .or_else(|| body.get("message").and_then(|m| m.as_str()))
        .map(str::to_owned)
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`). The HTTP-date form is not used by
/// the model vendors and is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = read("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    read("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(seconds)
}

/// Gemini's `google.rpc.RetryInfo` detail: `{"retryDelay": "37s"}`.
fn google_retry_delay(body: &serde_json::Value) -> Option<Duration> {
    let details = body.get("error")?.get("details")?.as_array()?;
    details.iter().find_map(|detail| {
        let delay = detail.get("retryDelay")?.as_str()?;
        delay
            .strip_suffix('s')?
            .parse::<f64>()
            .ok()
            .and_then(seconds)
    })
}

/// The `reason` of Google's `google.rpc.ErrorInfo` detail.
fn google_reason(body: &serde_json::Value) -> Option<&str> {
    let details = body.get("error")?.get("details")?.as_array()?;
    details
        .iter()
        .find_map(|detail| detail.get("reason")?.as_str())
}

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value.min(86_400.0)))
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(crate) fn redact(text: &str, key: Option<&Secret>) -> String {
    match key {
        Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "[redacted]"),
        _ => text.to_owned(),
    }
}

fn redact_error(error: DriverError, key: Option<&Secret>) -> DriverError {
    let r = |text: String| redact(&text, key);
    match error {
        DriverError::Auth(m) => DriverError::Auth(r(m)),
        DriverError::RateLimited {
            retry_after,
            message,
        } => DriverError::RateLimited {
            retry_after,
            message: r(message),
        },
        DriverError::BadRequest(m) => DriverError::BadRequest(r(m)),
        DriverError::Server { status, message } => DriverError::Server {
            status,
            message: r(message),
        },
        DriverError::Timeout(m) => DriverError::Timeout(r(m)),
        DriverError::Transport(m) => DriverError::Transport(r(m)),
        DriverError::Protocol(m) => DriverError::Protocol(r(m)),
        DriverError::Unsupported(m) => DriverError::Unsupported(r(m)),
    }
}

/// Parses one frame's JSON, failing with a protocol error that names the vendor.
pub(crate) fn parse_frame<T: DeserializeOwned>(vendor: &str, data: &str) -> Result<T, DriverError> {
    serde_json::from_str(data)
        .map_err(|e| DriverError::Protocol(format!("unparseable {vendor} stream data: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let h = headers(&[("retry-after-ms", "250"), ("retry-after", "2")]);
        let error = classify(429, &h, b"{}", None);
        assert_eq!(
            error,
            DriverError::RateLimited {
                retry_after: Some(Duration::from_millis(250)),
                message: "{}".into()
            }
        );
    }

    #[test]
    fn an_http_date_retry_after_is_ignored() {
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        let DriverError::RateLimited { retry_after, .. } = classify(429, &h, b"", None) else {
            panic!()
        };
        assert_eq!(retry_after, None);
    }

    #[test]
    fn status_classes() {
        let none = HeaderMap::new();
        assert!(matches!(
            classify(403, &none, b"", None),
            DriverError::Auth(_)
        ));
        assert!(matches!(
            classify(404, &none, b"", None),
            DriverError::BadRequest(_)
        ));
        assert!(matches!(
            classify(408, &none, b"", None),
            DriverError::Timeout(_)
        ));
        assert_eq!(
            classify(502, &none, b"<html>bad gateway</html>", None),
            DriverError::Server {
                status: 502,
                message: "<html>bad gateway</html>".into()
            }
        );
    }

    #[test]
    fn long_messages_are_cut_and_the_key_is_redacted() {
        let key = Secret::new("sk-live-abc");
        let body = format!(
            "{{\"error\":{{\"message\":\"bad key sk-live-abc {}\"}}}}",
            "é".repeat(MAX_MESSAGE)
        );
        let DriverError::BadRequest(message) =
            classify(400, &HeaderMap::new(), body.as_bytes(), Some(&key))
        else {
            panic!()
        };
        assert!(message.starts_with("bad key [redacted] "), "{message}");
        assert!(message.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
