//! Conformance tests of the vendor drivers against a scripted model server on loopback.
//!
//! Every vendor runs the same checks on its own recorded fixtures (`tests/fixtures/{vendor}/`,
//! written from the vendors' documented wire formats): a plain completion, a streamed one, a
//! tool call (plain and streamed) and its follow-up, the error classes, retry and fallback,
//! a stalled stream and malformed answers. No paid API is called.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gyrus_cortex::driver::{
    AnthropicDriver, Driver, DriverConfig, DriverError, Fallback, GeminiDriver, OllamaDriver,
    OpenAiDriver, Retry, RetryPolicy, Timeouts, collect_stream,
};
use gyrus_cortex::types::{Part, StreamEvent};
use pretty_assertions::assert_eq;
use support::{KEY, Server, load};

#[derive(Clone, Copy)]
struct Vendor {
    name: &'static str,
    /// What the driver's base URL adds to the server's root.
    suffix: &'static str,
    make: fn(DriverConfig) -> Result<Arc<dyn Driver>, DriverError>,
}

const OPENAI: Vendor = Vendor {
    name: "openai",
    suffix: "/v1",
    make: |config| Ok(Arc::new(OpenAiDriver::new(config)?)),
};
const ANTHROPIC: Vendor = Vendor {
    name: "anthropic",
    suffix: "",
    make: |config| Ok(Arc::new(AnthropicDriver::new(config)?)),
};
const GEMINI: Vendor = Vendor {
    name: "gemini",
    suffix: "",
    make: |config| Ok(Arc::new(GeminiDriver::new(config)?)),
};
const OLLAMA: Vendor = Vendor {
    name: "ollama",
    suffix: "",
    make: |config| Ok(Arc::new(OllamaDriver::new(config)?)),
};

fn timeouts(idle: Duration) -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(20),
        idle,
    }
}

impl Vendor {
    fn driver(&self, server: &Server) -> Arc<dyn Driver> {
        self.driver_with(server, timeouts(Duration::from_secs(10)))
    }

    fn driver_with(&self, server: &Server, timeouts: Timeouts) -> Arc<dyn Driver> {
        // Ollama usually runs without a key; here it sits behind an authenticating proxy, so
        // its bearer header and the redaction are checked too.
        let config = DriverConfig::new(self.name, format!("{}{}", server.url, self.suffix))
            .with_timeouts(timeouts)
            .with_key(KEY);
        (self.make)(config).unwrap()
    }
}

fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

/// Neither the error's `Display` nor its `Debug` may carry the API key.
fn assert_no_key(error: &DriverError) {
    assert!(!error.to_string().contains(KEY), "key in Display: {error}");
    assert!(
        !format!("{error:?}").contains(KEY),
        "key in Debug: {error:?}"
    );
}

async fn events(
    vendor: Vendor,
    server: &Server,
    name: &str,
) -> Vec<Result<StreamEvent, DriverError>> {
    let fixture = load(vendor.name, name);
    let driver = vendor.driver(server);
    let stream = driver
        .chat_stream(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap();
    stream.collect().await
}

async fn plain(vendor: Vendor) {
    let fixture = load(vendor.name, "plain");
    let server = Server::fixture(&fixture).await;
    let response = vendor
        .driver(&server)
        .chat(fixture.call.as_ref().unwrap())
        .await
        .unwrap();
    server.assert_single_request(fixture.request.as_ref().unwrap());
    assert_eq!(response, fixture.expect.unwrap());
}

async fn stream(vendor: Vendor) {
    let fixture = load(vendor.name, "stream");
    let plain = load(vendor.name, "plain").expect.unwrap();
    let server = Server::fixture(&fixture).await;
    let items = events(vendor, &server, "stream").await;
    server.assert_single_request(fixture.request.as_ref().unwrap());

    let deltas = items
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::TextDelta(_))))
        .count();
    assert!(deltas >= 2, "the answer came in pieces: {items:?}");
    assert!(
        matches!(items.last(), Some(Ok(StreamEvent::Done { .. }))),
        "ends with Done: {items:?}"
    );

    let model = fixture.call.as_ref().unwrap().model.clone();
    let streamed = collect_stream(futures_util::stream::iter(items).boxed(), model)
        .await
        .unwrap();
    assert_eq!(
        streamed.message, plain.message,
        "streamed text equals the plain answer"
    );
    assert_eq!(streamed.usage, plain.usage, "usage present");
    assert_eq!(streamed, fixture.expect.unwrap());
}

async fn tool_call(vendor: Vendor) {
    let fixture = load(vendor.name, "tool_call");
    let server = Server::fixture(&fixture).await;
    let response = vendor
        .driver(&server)
        .chat(fixture.call.as_ref().unwrap())
        .await
        .unwrap();
    server.assert_single_request(fixture.request.as_ref().unwrap());
    let call = response.message.tool_calls().next().cloned().unwrap();
    assert!(
        call.arguments.is_object(),
        "arguments parsed as JSON: {call:?}"
    );
    assert_eq!(response, fixture.expect.unwrap());
}

async fn tool_stream(vendor: Vendor) {
    let fixture = load(vendor.name, "tool_stream");
    let server = Server::fixture(&fixture).await;
    let items = events(vendor, &server, "tool_stream").await;
    server.assert_single_request(fixture.request.as_ref().unwrap());
    assert!(
        items
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::ToolCallStart { .. }))),
        "a tool call starts: {items:?}"
    );
    let model = fixture.call.as_ref().unwrap().model.clone();
    let streamed = collect_stream(futures_util::stream::iter(items).boxed(), model)
        .await
        .unwrap();
    assert_eq!(streamed, fixture.expect.unwrap());
}

async fn tool_followup(vendor: Vendor) {
    let fixture = load(vendor.name, "tool_followup");
    let call = fixture.call.clone().unwrap();
    assert!(
        call.messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p, Part::ToolResult(_))),
        "the call carries a tool result"
    );
    let server = Server::fixture(&fixture).await;
    let response = vendor.driver(&server).chat(&call).await.unwrap();
    server.assert_single_request(fixture.request.as_ref().unwrap());
    assert_eq!(response, fixture.expect.unwrap());
}

async fn unauthorized(vendor: Vendor) {
    let fixture = load(vendor.name, "unauthorized");
    let server = Server::fixture(&fixture).await;
    // Wrapped in Retry: an auth failure is not retried.
    let driver = Retry::new(vendor.driver(&server), quick_retry(3));
    let error = driver
        .chat(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Auth(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert_no_key(&error);
    assert_eq!(server.requests().len(), 1, "not retried");
}

async fn bad_request(vendor: Vendor) {
    let fixture = load(vendor.name, "bad_request");
    let server = Server::fixture(&fixture).await;
    let error = vendor
        .driver(&server)
        .chat(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap_err();
    let DriverError::BadRequest(message) = &error else {
        panic!("not BadRequest: {error:?}")
    };
    let expected = fixture.vendor_message.unwrap();
    assert!(
        message.contains(&expected),
        "{message:?} carries {expected:?}"
    );
    assert_no_key(&error);
}

async fn rate_limited(vendor: Vendor) {
    let fixture = load(vendor.name, "rate_limited");
    let server = Server::fixture(&fixture).await;
    let driver = Retry::new(vendor.driver(&server), quick_retry(3));
    let started = Instant::now();
    let response = driver
        .chat(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited out Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(response, load(vendor.name, "plain").expect.unwrap());
}

async fn rate_limit_is_classified(vendor: Vendor) {
    let fixture = load(vendor.name, "rate_limited");
    let server = Server::start(fixture.responses[..1].to_vec()).await;
    let error = vendor
        .driver(&server)
        .chat(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap_err();
    assert_eq!(
        std::mem::discriminant(&error),
        std::mem::discriminant(&DriverError::RateLimited {
            retry_after: None,
            message: String::new()
        })
    );
    let DriverError::RateLimited { retry_after, .. } = &error else {
        unreachable!()
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(1)));
    assert!(error.is_retryable());
    assert_no_key(&error);
}

async fn server_error_then_fallback(vendor: Vendor) {
    let failing = Server::fixture(&load(vendor.name, "server_error")).await;
    let plain = load(vendor.name, "plain");
    let healthy = Server::fixture(&plain).await;
    let chain = Fallback::new("chain")
        .then(Arc::new(Retry::new(
            vendor.driver(&failing),
            quick_retry(2),
        )))
        .then(vendor.driver(&healthy));
    let response = chain.chat(plain.call.as_ref().unwrap()).await.unwrap();
    assert_eq!(
        failing.requests().len(),
        2,
        "the first cortex was tried twice"
    );
    assert_eq!(healthy.requests().len(), 1);
    assert_eq!(response, plain.expect.unwrap());

    let error = vendor
        .driver(&failing)
        .chat(plain.call.as_ref().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Server { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_no_key(&error);
}

async fn stalled_stream(vendor: Vendor) {
    let fixture = load(vendor.name, "stall");
    let server = Server::fixture(&fixture).await;
    let driver = vendor.driver_with(&server, timeouts(Duration::from_millis(300)));
    let started = Instant::now();
    let mut stream = driver
        .chat_stream(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let last = items.last().unwrap();
    assert!(matches!(last, Err(DriverError::Timeout(_))), "{items:?}");
    assert!(
        items[..items.len() - 1].iter().all(Result::is_ok),
        "{items:?}"
    );
    assert_no_key(last.as_ref().unwrap_err());
}

async fn malformed(vendor: Vendor) {
    let fixture = load(vendor.name, "malformed");
    let server = Server::fixture(&fixture).await;
    let error = vendor
        .driver(&server)
        .chat(&fixture.call_or_plain(vendor.name))
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Protocol(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert_no_key(&error);
}

async fn malformed_stream(vendor: Vendor) {
    let fixture = load(vendor.name, "malformed_stream");
    let server = Server::fixture(&fixture).await;
    let items = events(vendor, &server, "malformed_stream").await;
    let last = items.last().unwrap();
    assert!(matches!(last, Err(DriverError::Protocol(_))), "{items:?}");
    assert_no_key(last.as_ref().unwrap_err());
}

async fn key_stays_out_of_debug(vendor: Vendor) {
    let server = Server::start(Vec::new()).await;
    let driver = vendor.driver(&server);
    assert!(!format!("{driver:?}").contains(KEY), "{driver:?}");
}

macro_rules! conformance {
    ($($module:ident => $vendor:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[tokio::test] async fn plain_completion() { plain($vendor).await }
            #[tokio::test] async fn streamed_completion() { stream($vendor).await }
            #[tokio::test] async fn tool_call_plain() { tool_call($vendor).await }
            #[tokio::test] async fn tool_call_streamed() { tool_stream($vendor).await }
            #[tokio::test] async fn tool_result_follow_up() { tool_followup($vendor).await }
            #[tokio::test] async fn unauthorized_is_auth() { unauthorized($vendor).await }
            #[tokio::test] async fn bad_request_carries_vendor_message() { bad_request($vendor).await }
            #[tokio::test] async fn rate_limited_is_retried_after_waiting() { rate_limited($vendor).await }
            #[tokio::test] async fn rate_limit_is_classified_with_its_wait() { rate_limit_is_classified($vendor).await }
            #[tokio::test] async fn server_errors_fall_back() { server_error_then_fallback($vendor).await }
            #[tokio::test] async fn stalled_stream_times_out() { stalled_stream($vendor).await }
            #[tokio::test] async fn malformed_answer_is_protocol_error() { malformed($vendor).await }
            #[tokio::test] async fn malformed_stream_is_protocol_error() { malformed_stream($vendor).await }
            #[tokio::test] async fn key_is_not_in_debug_output() { key_stays_out_of_debug($vendor).await }
        }
    )*};
}

conformance! {
    openai => OPENAI,
    anthropic => ANTHROPIC,
    gemini => GEMINI,
    ollama => OLLAMA,
}

async fn embeddings(vendor: Vendor) {
    let fixture = load(vendor.name, "embed");
    let case = fixture.embed.clone().unwrap();
    let server = Server::fixture(&fixture).await;
    let vectors = vendor
        .driver(&server)
        .embed(&case.model, &case.texts)
        .await
        .unwrap();
    server.assert_single_request(fixture.request.as_ref().unwrap());
    assert_eq!(vectors, case.vectors);
}

#[tokio::test]
async fn openai_embeddings() {
    embeddings(OPENAI).await
}

#[tokio::test]
async fn gemini_embeddings() {
    embeddings(GEMINI).await
}

#[tokio::test]
async fn ollama_embeddings() {
    embeddings(OLLAMA).await
}

#[tokio::test]
async fn anthropic_has_no_embeddings() {
    let server = Server::start(Vec::new()).await;
    let error = ANTHROPIC
        .driver(&server)
        .embed("any", &["x".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Unsupported(_)), "{error:?}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn anthropic_error_event_mid_stream_is_classified() {
    let fixture = load("anthropic", "stream_error");
    let server = Server::fixture(&fixture).await;
    let items = events(ANTHROPIC, &server, "stream_error").await;
    let last = items.last().unwrap();
    assert!(
        matches!(last, Err(DriverError::Server { status: 529, .. })),
        "{items:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let driver = OpenAiDriver::new(DriverConfig::new("down", url).with_key(KEY)).unwrap();
    let call = load("openai", "plain").call.unwrap();
    let error = driver.chat(&call).await.unwrap_err();
    assert!(matches!(error, DriverError::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
    assert_no_key(&error);
}

#[tokio::test]
async fn a_stream_that_failed_after_yielding_is_not_retried() {
    // The stall fixture yields events, then times out: Retry must hand the failure on.
    let fixture = load("openai", "stall");
    let server = Server::fixture(&fixture).await;
    let driver = Retry::new(
        OPENAI.driver_with(&server, timeouts(Duration::from_millis(200))),
        quick_retry(3),
    );
    let stream = driver
        .chat_stream(&fixture.call_or_plain("openai"))
        .await
        .unwrap();
    let items: Vec<_> = stream.collect().await;
    assert!(
        matches!(items.last(), Some(Err(DriverError::Timeout(_)))),
        "{items:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_refused_before_starting_is_retried() {
    let limited = load("openai", "rate_limited");
    let stream_fixture = load("openai", "stream");
    let mut responses = limited.responses[..1].to_vec();
    responses[0]
        .headers
        .insert("retry-after".into(), "0".into());
    responses.push(stream_fixture.responses[0].clone());
    let server = Server::start(responses).await;
    let driver = Retry::new(OPENAI.driver(&server), quick_retry(3));
    let stream = driver
        .chat_stream(stream_fixture.call.as_ref().unwrap())
        .await
        .unwrap();
    let streamed = collect_stream(stream, "gpt-4o-mini").await.unwrap();
    assert_eq!(streamed, stream_fixture.expect.unwrap());
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn tls_is_used_for_https_and_a_failed_handshake_is_a_transport_error() {
    // The scripted server speaks plain HTTP, so the rustls handshake fails: proof that the
    // https URL goes through the ring-backed TLS client, with no panic and no key in the error.
    let server = Server::start(Vec::new()).await;
    let url = server.url.replace("http://", "https://");
    let driver = AnthropicDriver::new(DriverConfig::new("tls", url).with_key(KEY)).unwrap();
    let error = driver
        .chat(&load("anthropic", "plain").call.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Transport(_)), "{error:?}");
    assert_no_key(&error);
}

#[tokio::test]
async fn gemini_thought_signatures_go_back_with_their_calls() {
    for (first, streamed) in [("tool_call", false), ("tool_stream", true)] {
        let asked = load("gemini", first);
        let followup = load("gemini", "tool_followup");
        let server = Server::start(vec![
            asked.responses[0].clone(),
            followup.responses[0].clone(),
        ])
        .await;
        let driver = GEMINI.driver(&server);
        let answer = if streamed {
            let stream = driver
                .chat_stream(asked.call.as_ref().unwrap())
                .await
                .unwrap();
            collect_stream(stream, "gemini-2.5-flash").await.unwrap()
        } else {
            driver.chat(asked.call.as_ref().unwrap()).await.unwrap()
        };
        // The follow-up carries the call the driver just returned.
        let mut call = followup.call.clone().unwrap();
        call.messages[1] = answer.message.clone();
        driver.chat(&call).await.unwrap();

        let seen = server.requests();
        let part = &seen[1].body["contents"][1]["parts"][0];
        assert_eq!(
            part["functionCall"]["name"], "get_weather",
            "{first}: {part}"
        );
        assert_eq!(
            part["thoughtSignature"], "CiQB0e2Kb7xkOuwpcFhXcB3dYnQ5bJpN0Hw2m1Vt3gWfDsk+7cQ=",
            "{first}"
        );
    }
}
