//! Walks every registered route: each must be in the OpenAPI document (and the document must
//! list nothing that is not registered), and each must refuse a request without a token unless
//! it is on the public allowlist.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use gyrus_api::{ApiDoc, ApiState, ApiStateInit, PUBLIC_PATHS, Peer, routes};
use gyrus_home::{Config, Home, Layer};
use gyrus_policy::TokenStore;
use http_body_util::BodyExt;
use tower::ServiceExt;
use utoipa::OpenApi;

fn app(dir: &tempfile::TempDir) -> gyrus_api::App {
    let home = Home::new(dir.path());
    home.init().unwrap();
    let tokens = TokenStore::open(&home.layer(Layer::User).join("tokens.json")).unwrap();
    let listen: SocketAddr = "127.0.0.1:7878".parse().unwrap();
    let kernel = std::sync::Arc::new(
        gyrus_kernel::Kernel::open(&home, "http://127.0.0.1:7878".into()).unwrap(),
    );
    let tools =
        std::sync::Arc::new(gyrus_tools::builtin(gyrus_tools::ToolEnv::new(home.clone())).unwrap());
    let sessions = std::sync::Arc::new(
        gyrus_sessions::Manager::open(
            &gyrus_sessions::store_path(&home),
            gyrus_sessions::ManagerConfig::default(),
        )
        .unwrap(),
    );
    gyrus_api::app(ApiState::new(ApiStateInit {
        frontal: None,
        kernel,
        tools,
        sessions,
        home,
        config: Config::default().api,
        tokens,
        listen,
        owner_uid: 1000,
        version: "test",
    }))
}

/// Fills `{param}` segments so the path matches its route.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

async fn anonymous(
    app: &gyrus_api::App,
    method: Method,
    path: &str,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:7878")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(Peer::Tcp("127.0.0.1:40000".parse().unwrap())));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn every_route_is_documented_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let table = routes::table();
    assert!(!table.is_empty());

    let spec = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        registered, documented,
        "route table and OpenAPI document differ"
    );

    for route in &table {
        let (status, body) = anonymous(&app, route.method.clone(), &concrete(route.path)).await;
        if route.public {
            assert_eq!(
                status,
                StatusCode::OK,
                "{} {} is public",
                route.method,
                route.path
            );
            assert!(PUBLIC_PATHS.contains(&route.path));
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {} answered without a token",
                route.method,
                route.path
            );
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Public routes are exactly the allowlist.
    let public: BTreeSet<&str> = table.iter().filter(|r| r.public).map(|r| r.path).collect();
    assert_eq!(public, PUBLIC_PATHS.iter().copied().collect());
}

#[tokio::test]
async fn unknown_paths_need_a_token_before_they_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let (status, body) = anonymous(&app, Method::GET, "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_socket_peer_must_be_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    for (uid, expected) in [
        (Some(1000), StatusCode::OK),
        (Some(1001), StatusCode::FORBIDDEN),
        (None, StatusCode::FORBIDDEN),
    ] {
        let mut request = Request::get("/api/v1/tokens").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(Peer::Unix { uid }));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), expected, "uid {uid:?}");
    }
}
