//! The gyrus HTTP API: one router, one security stack, two transports.
//!
//! [`app`] builds the API as a single service with the stack described in [`stack`]; the
//! daemon serves it on TCP ([`serve`], bearer tokens) and on the owner's Unix socket
//! (the same [`serve`], `SO_PEERCRED`). Routes are registered only through the table in
//! [`routes`], which is what the OpenAPI document ([`ApiDoc`]) and the route-walking test are
//! checked against. The checklist every endpoint follows is `docs/api-security.md`.

mod auth;
mod error;
mod extract;
mod guard;
pub mod mcp;
mod metrics;
mod peer;
pub mod routes;
pub mod stack;
mod state;

use std::future::Future;

use axum::ServiceExt as _;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

pub use auth::PUBLIC_PATHS;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use extract::ApiJson;
pub use metrics::Metrics;
pub use peer::Peer;
pub use routes::{ApiDoc, RouteInfo, Who};
pub use stack::{App, app};
pub use state::{ApiState, ApiStateInit, ApiStateRef, PartStatus};

/// Serves `app` on `listener` (a `tokio::net::TcpListener` or `UnixListener`) until
/// `shutdown` resolves, then lets in-flight requests finish. Each request carries the
/// connection's [`Peer`], which decides how it may authenticate.
pub async fn serve<L>(
    listener: L,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    Peer: for<'a> Connected<IncomingStream<'a, L>>,
{
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
}
