//! A scripted model server on loopback: it answers every request with the next recorded
//! response of a fixture and records what it was sent, so a test can compare the driver's
//! request with the one the vendor documents.
//!
//! A fixture (`tests/fixtures/{vendor}/{name}.json`) holds:
//! - `call`: the canonical [`ChatRequest`] the test sends (absent: the vendor's `plain` call);
//! - `request`: the wire request the vendor expects (`method`, `path` with query, `headers`
//!   that matter, JSON `body` compared as a value, so key order and spacing do not count);
//! - `responses`: what to answer, in order (the last one repeats): `status`, `headers`, and a
//!   `json` body, a `raw` text body, or a `stream` of pieces joined and re-cut into
//!   `chunk_size`-byte chunks (so events and lines are split mid-way), optionally `stall`ing
//!   (the connection stays open and silent) after the last piece;
//! - `expect`: the canonical [`ChatResponse`] the driver must make of it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use gyrus_cortex::types::{ChatRequest, ChatResponse};
use serde::Deserialize;
use serde_json::Value;

/// The key every test driver is configured with.
pub const KEY: &str = "sk-test-SECRET-0123456789abcdef";

#[derive(Debug, Clone, Deserialize)]
pub struct Fixture {
    #[serde(default)]
    pub about: String,
    pub call: Option<ChatRequest>,
    pub request: Option<ExpectedRequest>,
    pub responses: Vec<ScriptedResponse>,
    pub expect: Option<ChatResponse>,
    /// For error fixtures: text the error must carry.
    pub vendor_message: Option<String>,
    /// For embedding fixtures: the call and the vectors it must give.
    pub embed: Option<EmbedCase>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbedCase {
    pub model: String,
    pub texts: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
    pub body: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScriptedResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
    pub json: Option<Value>,
    pub raw: Option<String>,
    pub stream: Option<Vec<String>>,
    pub chunk_size: Option<usize>,
    #[serde(default)]
    pub stall: bool,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

pub fn fixture_path(vendor: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(vendor)
        .join(format!("{name}.json"))
}

pub fn load(vendor: &str, name: &str) -> Fixture {
    let path = fixture_path(vendor, name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Fixture {
    /// The canonical call: the fixture's own, or the vendor's `plain` one.
    pub fn call_or_plain(&self, vendor: &str) -> ChatRequest {
        self.call
            .clone()
            .unwrap_or_else(|| load(vendor, "plain").call.expect("plain.json has a call"))
    }
}

struct ServerState {
    responses: Vec<ScriptedResponse>,
    seen: Mutex<Vec<Recorded>>,
}

/// A running scripted server.
pub struct Server {
    pub url: String,
    state: Arc<ServerState>,
}

impl Server {
    /// Serves `responses` on a random loopback port.
    pub async fn start(responses: Vec<ScriptedResponse>) -> Self {
        let state = Arc::new(ServerState {
            responses,
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, state }
    }

    /// Serves a fixture's responses.
    pub async fn fixture(fixture: &Fixture) -> Self {
        Self::start(fixture.responses.clone()).await
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Asserts the server saw exactly one request and it is the one `expected` describes.
    pub fn assert_single_request(&self, expected: &ExpectedRequest) {
        let seen = self.requests();
        assert_eq!(seen.len(), 1, "requests seen: {seen:#?}");
        assert_request(&seen[0], expected);
    }
}

pub fn assert_request(seen: &Recorded, expected: &ExpectedRequest) {
    assert_eq!(seen.method, expected.method, "method");
    assert_eq!(seen.path, expected.path, "path");
    for (name, value) in &expected.headers {
        let got = seen
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok());
        assert_eq!(got, value.as_str(), "header {name}");
    }
    pretty_assertions::assert_eq!(seen.body, expected.body, "body");
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        seen.len() - 1
    };
    let scripted = state.responses[index.min(state.responses.len() - 1)].clone();
    let mut builder = Response::builder().status(StatusCode::from_u16(scripted.status).unwrap());
    let mut has_type = false;
    for (name, value) in &scripted.headers {
        has_type |= name.eq_ignore_ascii_case("content-type");
        builder = builder.header(name.as_str(), value.as_str().unwrap());
    }
    if let Some(json) = scripted.json {
        if !has_type {
            builder = builder.header("content-type", "application/json");
        }
        return builder.body(Body::from(json.to_string())).unwrap();
    }
    if let Some(raw) = scripted.raw {
        return builder.body(Body::from(raw)).unwrap();
    }
    let whole: Vec<u8> = scripted.stream.unwrap_or_default().concat().into_bytes();
    let size = scripted.chunk_size.unwrap_or(usize::MAX).max(1);
    let chunks: Vec<Bytes> = whole.chunks(size).map(Bytes::copy_from_slice).collect();
    let stall = scripted.stall;
    let body = futures_util::stream::iter(chunks)
        .then(|chunk| async move {
            // A pause between chunks, so they leave as separate writes.
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, Infallible>(chunk)
        })
        .chain(
            futures_util::stream::once(async move {
                if stall {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Bytes::new())
            })
            .filter(|chunk| std::future::ready(chunk.as_ref().is_ok_and(|c| !c.is_empty()))),
        );
    builder.body(Body::from_stream(body)).unwrap()
}
