//! The OpenAI-compatible gateway at `/v1`: `GET /v1/models`, `POST /v1/chat/completions`
//! (complete or streamed as server-sent events) and `POST /v1/embeddings`, so that any
//! OpenAI client (the official SDKs, LangChain, Aider, …) can use gyrus's cortices with
//! `base_url = http://<daemon>/v1` and a gyrus token as its API key.
//!
//! `model` is `gyrus/auto` (the router chooses, and escalates an answer that fails
//! validation) or `gyrus/<cortex>` (that cortex answers). Every answer says where it went in
//! the headers `x-gyrus-cortex`, `x-gyrus-tier` and `x-gyrus-route-id`. Errors come in
//! OpenAI's shape, `{"error":{"message","type","code"}}`, which its clients turn into typed
//! exceptions. The caller's principal id is the agent the call is queued and budgeted for.
//!
//! The mapping between the wire format and gyrus's canonical types is pure and lives in
//! `wire.rs`; this file is the I/O around it.

mod wire;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use gyrus_cortex::driver::{DriverError, EventStream};
use gyrus_cortex::types::StreamEvent;
use gyrus_frontal::{Frontal, FrontalError, ModelChoice, Served};
use gyrus_policy::Principal;
use serde_json::{Value, json};

pub use wire::{CompletionBody, EmbeddingsBody};

use crate::ApiStateRef;
use crate::error::ApiError;
use crate::extract::ApiJson;

/// A gateway failure in OpenAI's error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatewayError {
    status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `api_error`, ….
    kind: &'static str,
    /// A stable snake_case code.
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl GatewayError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        GatewayError {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "gateway: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal",
            "internal error; the daemon's log has the details",
        )
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "param": Value::Null,
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A body the JSON extractor refused (415, 413, malformed JSON, a missing field), in
/// OpenAI's shape.
impl From<ApiError> for GatewayError {
    fn from(e: ApiError) -> Self {
        let kind = if e.status.is_server_error() {
            "api_error"
        } else {
            "invalid_request_error"
        };
        GatewayError::new(e.status, kind, e.code, e.message)
    }
}

impl From<wire::Invalid> for GatewayError {
    fn from(e: wire::Invalid) -> Self {
        GatewayError::invalid(e.0)
    }
}

/// OpenAI's `type` and gyrus's code for a driver failure, and its status.
fn driver_error(cortex: &str, e: &DriverError) -> GatewayError {
    let message = format!("cortex `{cortex}`: {e}");
    match e {
        DriverError::RateLimited { retry_after, .. } => GatewayError {
            retry_after: retry_after.map(|d| d.as_secs().max(1)),
            ..GatewayError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limited",
                message,
            )
        },
        _ => GatewayError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_error",
            message,
        ),
    }
}

/// The HTTP answer to a frontal-lobe failure.
fn frontal_error(e: FrontalError) -> GatewayError {
    let message = e.to_string();
    match e {
        FrontalError::BadRequest(_) => GatewayError::invalid(message),
        FrontalError::UnknownCortex(_) => GatewayError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            message,
        ),
        FrontalError::Unavailable { .. } => GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "model_unavailable",
            message,
        ),
        FrontalError::Unservable { .. } => GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "unservable",
            message,
        ),
        FrontalError::OverBudget(_) => GatewayError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "over_budget",
            message,
        ),
        FrontalError::Registry(_) => GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "registry_error",
            message,
        ),
        FrontalError::Driver { cortex, source } => driver_error(&cortex, &source),
        FrontalError::Scheduler(_) => GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "scheduler",
            message,
        ),
        FrontalError::Internal(detail) => GatewayError::internal(detail),
    }
}

fn frontal(state: &ApiStateRef) -> Result<&Arc<Frontal>, GatewayError> {
    state.frontal.as_ref().ok_or_else(|| {
        GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "gateway_unavailable",
            "this API is served without the frontal lobe, so the /v1 gateway has no models: \
             run the full daemon (`gyrus up`)",
        )
    })
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The headers that say where an answer went.
fn served_headers(served: &Served) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-gyrus-cortex", served.by.clone());
    put("x-gyrus-tier", served.tier.as_str().to_owned());
    if let Some(id) = served.route_id {
        put("x-gyrus-route-id", id.to_string());
    }
    headers
}

/// Lists the model ids: `gyrus/auto`, then `gyrus/<cortex>` for every configured cortex.
#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    responses((status = 200, description = "`{object: \"list\", data: [{id, object: \"model\", created, owned_by}]}`", body = Object),
              (status = 503, description = "The daemon runs without the frontal lobe", body = Object)))]
pub(crate) async fn models(State(state): State<ApiStateRef>) -> Result<Json<Value>, GatewayError> {
    let frontal = frontal(&state)?;
    Ok(Json(wire::model_list(
        &frontal.models(),
        unix_secs(state.started_at),
    )))
}

/// A chat completion, as OpenAI's `POST /chat/completions`: a `chat.completion` object, or
/// with `stream: true` server-sent `chat.completion.chunk` events ending in `data: [DONE]`.
/// Supports tools and tool calls, `tool_choice`, `max_tokens`/`max_completion_tokens`,
/// `temperature`, `top_p`, `stop`, `seed` and `stream_options.include_usage`; other fields
/// are ignored. Only `n: 1` is supported.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway", request_body = CompletionBody,
    responses((status = 200, description = "A `chat.completion` object, or `text/event-stream` of `chat.completion.chunk` events; headers x-gyrus-cortex, x-gyrus-tier, x-gyrus-route-id say where it went", body = Object),
              (status = 400, description = "A malformed request, with the reason", body = Object),
              (status = 404, description = "No such model (GET /v1/models lists them)", body = Object),
              (status = 429, description = "Over budget, or the cortex is rate limited", body = Object),
              (status = 502, description = "The cortex failed", body = Object),
              (status = 503, description = "No cortex can serve the request", body = Object)))]
pub(crate) async fn chat_completions(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    body: Result<ApiJson<CompletionBody>, ApiError>,
) -> Result<Response, GatewayError> {
    let ApiJson(body) = body?;
    let frontal = frontal(&state)?;
    let completion = wire::completion(body)?;
    // An unknown cortex is the frontal lobe's UnknownCortex: 404 `model_not_found`.
    let choice = ModelChoice::parse(&completion.model).map_err(frontal_error)?;
    let agent = principal.id();
    let created = unix_secs(SystemTime::now());
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if completion.stream {
        let (events, served) = frontal
            .complete_stream(&agent, choice, completion.request, &principal)
            .await
            .map_err(frontal_error)?;
        let answer = wire::Answer {
            id,
            created,
            model: format!("gyrus/{}", served.by),
        };
        let writer = wire::ChunkWriter::new(answer, completion.include_usage);
        let mut response = (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(sse(events, writer, served.by.clone())),
        )
            .into_response();
        response.headers_mut().extend(served_headers(&served));
        Ok(response)
    } else {
        let (answer, served) = frontal
            .complete(&agent, choice, completion.request, &principal)
            .await
            .map_err(frontal_error)?;
        let id = wire::Answer {
            id,
            created,
            model: format!("gyrus/{}", served.by),
        };
        let mut response = Json(wire::chat_completion(&id, &answer)).into_response();
        response.headers_mut().extend(served_headers(&served));
        Ok(response)
    }
}

/// The server-sent events of a streamed answer; ends after `Done` (dropping the cortex's
/// stream, which frees its scheduler slot) or after the first failure.
fn sse(
    events: EventStream,
    writer: wire::ChunkWriter,
    cortex: String,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let head = futures_util::stream::once(std::future::ready(writer.start()));
    let rest = futures_util::stream::unfold(Some((events, writer, cortex)), |state| async move {
        let (mut events, mut writer, cortex) = state?;
        match events.next().await {
            Some(Ok(event)) => {
                let done = matches!(event, StreamEvent::Done { .. });
                let frames = writer.event(event);
                Some((frames, (!done).then_some((events, writer, cortex))))
            }
            Some(Err(e)) => {
                let error = driver_error(&cortex, &e);
                let frame = writer.failure(&error.message, error.kind, error.code);
                Some((frame, None))
            }
            None => {
                let frame = writer.failure(
                        &format!("cortex `{cortex}`: the stream ended before the answer was complete; try again"),
                        "api_error",
                        "upstream_error",
                    );
                Some((frame, None))
            }
        }
    });
    head.chain(rest)
        .filter(|frames| std::future::ready(!frames.is_empty()))
        .map(|frames| Ok(Bytes::from(frames)))
}

/// Embeds text with the bundled sentence encoder, as OpenAI's `POST /embeddings`: `input`
/// is a string or an array of strings; `encoding_format` is `float` (the default) or
/// `base64` (little-endian f32, what OpenAI's Python client asks for). Any `model` is
/// answered by the encoder, which the answer names.
#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway", request_body = EmbeddingsBody,
    responses((status = 200, description = "`{object: \"list\", data: [{object: \"embedding\", index, embedding}], model, usage}`", body = Object),
              (status = 400, description = "A malformed request, with the reason", body = Object),
              (status = 503, description = "The daemon runs without the frontal lobe", body = Object)))]
pub(crate) async fn embeddings(
    State(state): State<ApiStateRef>,
    body: Result<ApiJson<EmbeddingsBody>, ApiError>,
) -> Result<Json<Value>, GatewayError> {
    let ApiJson(body) = body?;
    let frontal = frontal(&state)?;
    let (texts, encoding) = wire::embeddings(&body)?;
    let vectors = frontal.embed(texts.clone()).await.map_err(frontal_error)?;
    if vectors.len() != texts.len() {
        return Err(GatewayError::internal(format!(
            "the encoder gave {} vectors for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    if let (Some(wanted), Some(first)) = (body.dimensions, vectors.first())
        && wanted != first.len()
    {
        return Err(GatewayError::invalid(format!(
            "`dimensions` is {wanted}, but the encoder gives {}-dimensional vectors: leave it out or set it to {}",
            first.len(),
            first.len()
        )));
    }
    Ok(Json(wire::embedding_list(
        &texts,
        &vectors,
        encoding,
        &frontal.embedding_model(),
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use gyrus_cortex::route::Tier;
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn frontal_errors_map_to_openai_statuses() {
        let cases = [
            (
                FrontalError::BadRequest("x".into()),
                400,
                "invalid_request_error",
            ),
            (
                FrontalError::UnknownCortex("x".into()),
                404,
                "invalid_request_error",
            ),
            (
                FrontalError::Unavailable {
                    name: "x".into(),
                    reason: "r".into(),
                },
                503,
                "api_error",
            ),
            (
                FrontalError::Unservable {
                    reason: "r".into(),
                    hint: "h".into(),
                },
                503,
                "api_error",
            ),
            (
                FrontalError::OverBudget("x".into()),
                429,
                "insufficient_quota",
            ),
            (
                FrontalError::Driver {
                    cortex: "c".into(),
                    source: DriverError::Server {
                        status: 500,
                        message: "m".into(),
                    },
                },
                502,
                "api_error",
            ),
            (
                FrontalError::Driver {
                    cortex: "c".into(),
                    source: DriverError::RateLimited {
                        retry_after: Some(Duration::from_secs(3)),
                        message: "m".into(),
                    },
                },
                429,
                "rate_limit_error",
            ),
            (
                FrontalError::Internal("secret detail".into()),
                500,
                "api_error",
            ),
        ];
        for (error, status, kind) in cases {
            let mapped = frontal_error(error);
            assert_eq!((mapped.status.as_u16(), mapped.kind), (status, kind));
            assert!(!mapped.message.contains("secret"), "{}", mapped.message);
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let response = frontal_error(FrontalError::Driver {
            cortex: "c".into(),
            source: DriverError::RateLimited {
                retry_after: Some(Duration::from_millis(2500)),
                message: "slow down".into(),
            },
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn served_headers_name_cortex_tier_and_route() {
        let headers = served_headers(&Served {
            by: "stub".into(),
            tier: Tier::Tactical,
            route_id: Some(9),
            reason: "forced".into(),
        });
        assert_eq!(headers["x-gyrus-cortex"], "stub");
        assert_eq!(headers["x-gyrus-tier"], "tactical");
        assert_eq!(headers["x-gyrus-route-id"], "9");
    }
}
