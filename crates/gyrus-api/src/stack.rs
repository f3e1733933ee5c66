//! The middleware stack every route gets, in one place.
//!
//! Outermost first (a request passes down this list, a response back up it):
//!
//! | layer | why |
//! |---|---|
//! | normalize errors | every error leaves as `{"error":{"code","message"}}` |
//! | sensitive headers | `Authorization`/`Cookie` print as `Sensitive` in any log |
//! | request id | `x-request-id` set (or kept) and echoed back |
//! | tracing | one span per request: method, path (never the query), request id |
//! | security headers | nosniff, no framing, no caching, no referrer, CSP `default-src 'none'` |
//! | metrics | counts and times every request, refused ones included |
//! | catch panic | a bug answers 500 instead of dropping the connection |
//! | host/origin guard | DNS rebinding and foreign origins get 403 |
//! | load shed + concurrency limit | over `max_concurrent_requests`: 503 at once |
//! | timeout | over `request_timeout_secs`: 408 |
//! | authentication + rate limit | principal or 401; bucket per principal: 429 |
//! | body limit | over `body_limit_bytes`: 413, chunked bodies included |
//!
//! The stack wraps the whole router rather than being added with `Router::layer`, which would
//! give each route its own copy (and its own concurrency budget).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::{self, ApiError};
use crate::{ApiStateRef, auth, metrics};

/// The complete API as one service, ready for [`crate::serve_tcp`] and [`crate::serve_unix`].
pub type App = BoxCloneService<Request, Response, Infallible>;

fn span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The path only: a query string may carry something a client should not have sent.
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), id)
}

async fn overloaded(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the daemon is at api.max_concurrent_requests; retry shortly",
        )
    } else {
        ApiError::internal(error)
    }
}

fn panicked(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the daemon's log has the details",
    )
    .into_response()
}

/// Headers every response carries unless a handler set its own: the API serves data, never
/// pages, so nothing may sniff, frame, cache or refer.
async fn security_headers<B>(mut response: Response<B>) -> Response<B> {
    const HEADERS: [(HeaderName, &str); 6] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Builds the API: the router inside the full stack.
pub fn app(state: ApiStateRef) -> App {
    stack(crate::routes::router().with_state(state.clone()), state)
}

/// Wraps `router` in the stack. Separate from [`app`] so tests can put a slow route inside.
pub(crate) fn stack(router: axum::Router, state: ApiStateRef) -> App {
    let config = &state.config;
    let service = ServiceBuilder::new()
        .layer(middleware::map_response(error::normalize))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::map_response(security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::guard_host,
        ))
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(config.max_concurrent_requests)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .service(router);
    BoxCloneService::new(service)
}
