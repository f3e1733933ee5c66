//! The gyrus HTTP API: one router, one security stack, two transports.
//!
//! [`app`] builds the API as a single service with the stack described in [`stack`]; the
//! daemon serves it on TCP ([`serve_tcp`], bearer tokens) and on the owner's Unix socket
//! ([`serve_unix`], `SO_PEERCRED`). Routes are registered only through the table in
//! [`routes`], which is what the OpenAPI document ([`ApiDoc`]) and the route-walking test are
//! checked against. The checklist every endpoint follows is `docs/api-security.md`.

mod auth;
mod error;
mod extract;
mod guard;
mod metrics;
mod peer;
pub mod routes;
pub mod stack;
mod state;

use std::future::Future;

use axum::ServiceExt as _;
use tokio::net::{TcpListener, UnixListener};

pub use auth::PUBLIC_PATHS;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use extract::ApiJson;
pub use metrics::Metrics;
pub use peer::Peer;
pub use routes::{ApiDoc, RouteInfo, Who};
pub use stack::{App, app};
pub use state::{ApiState, ApiStateInit, ApiStateRef, PartStatus};

/// Serves `app` on a TCP listener until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve_tcp(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` on a Unix socket until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve_unix(
    listener: UnixListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
}
