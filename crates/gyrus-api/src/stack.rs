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
use axum::extract::{DefaultBodyLimit, Request};
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

/// The complete API as one service, ready for [`crate::serve`].
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
        // RequestBodyLimitLayer enforces api.body_limit_bytes; axum's own 2 MiB default for
        // extractors would otherwise cap it silently.
        .service(router.layer(DefaultBodyLimit::disable()));
    BoxCloneService::new(service)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use gyrus_home::{Config, Home};
    use gyrus_policy::TokenStore;
    use http_body_util::BodyExt;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;
    use crate::{ApiState, ApiStateInit, Peer};

    fn state(dir: &tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> ApiStateRef {
        let mut config = Config::default();
        edit(&mut config);
        let home = Home::new(dir.path());
        home.init().unwrap();
        let kernel =
            Arc::new(gyrus_kernel::Kernel::open(&home, "http://127.0.0.1:7878".into()).unwrap());
        let tools =
            Arc::new(gyrus_tools::builtin(gyrus_tools::ToolEnv::new(home.clone())).unwrap());
        let sessions = Arc::new(
            gyrus_sessions::Manager::open(
                &gyrus_sessions::store_path(&home),
                gyrus_sessions::ManagerConfig::default(),
            )
            .unwrap(),
        );
        ApiState::new(ApiStateInit {
            frontal: None,
            kernel,
            tools,
            sessions,
            tokens: TokenStore::open(&dir.path().join("user/tokens.json")).unwrap(),
            home,
            config: config.api,
            listen: "127.0.0.1:7878".parse().unwrap(),
            owner_uid: 1000,
            version: "test",
        })
    }

    fn owner_request(path: &str) -> Request {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(Peer::Unix { uid: Some(1000) }));
        request
    }

    async fn json(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_times_out_with_408() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir, |c| c.api.request_timeout_secs = 2);
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        );
        let response = stack(router, state)
            .oneshot(owner_request("/slow"))
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(body["error"]["code"], "timeout");
    }

    #[tokio::test]
    async fn requests_over_the_concurrency_limit_are_shed_with_503() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir, |c| c.api.max_concurrent_requests = 1);
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let router = {
            let (entered, release) = (entered.clone(), release.clone());
            Router::new().route(
                "/hold",
                get(move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }),
            )
        };
        let app = stack(router, state);
        let first = tokio::spawn(app.clone().oneshot(owner_request("/hold")));
        entered.notified().await;
        let (status, body) = json(app.clone().oneshot(owner_request("/hold")).await.unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "overloaded");
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_configured_body_limit_is_the_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 4 * 1024 * 1024;
        let state = state(&dir, |c| c.api.body_limit_bytes = limit);
        let router = Router::new().route(
            "/echo",
            axum::routing::post(
                |crate::ApiJson(v): crate::ApiJson<serde_json::Value>| async move {
                    v.as_str().map_or(0, str::len).to_string()
                },
            ),
        );
        let app = stack(router, state);
        let post = |len: usize| {
            // A JSON string: two quotes around len - 2 letters.
            let body = format!("\"{}\"", "a".repeat(len - 2));
            let mut request = owner_request("/echo");
            *request.method_mut() = axum::http::Method::POST;
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            *request.body_mut() = Body::from(body);
            app.clone().oneshot(request)
        };
        // 3 MiB is over axum's own 2 MiB default but within the configured 4 MiB.
        let response = post(3 * 1024 * 1024).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (status, body) = json(post(limit + 1).await.unwrap()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_the_service_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("bug");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "ok" }));
        let app = stack(router, state(&dir, |_| {}));
        let (status, body) = json(app.clone().oneshot(owner_request("/boom")).await.unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        let response = app.oneshot(owner_request("/fine")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn errors_from_the_router_are_uniform_json_and_keep_their_headers() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(state(&dir, |_| {}));
        let mut request = owner_request("/api/v1/status");
        *request.method_mut() = axum::http::Method::PUT;
        let response = app.oneshot(request).await.unwrap();
        assert!(response.headers().contains_key(header::ALLOW));
        assert!(response.headers().contains_key("x-request-id"));
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        let (status, body) = json(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}
