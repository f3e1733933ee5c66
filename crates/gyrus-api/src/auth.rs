//! Authentication and the per-principal rate limit, applied to every request.
//!
//! Unauthenticated routes are the explicit allowlist [`PUBLIC_PATHS`]; everything else,
//! including unknown paths, needs a principal. Over the Unix socket the principal is the owner,
//! proven by `SO_PEERCRED` (the socket's 0600 mode keeps others out; the uid check keeps out
//! even processes that got hold of the file). Over TCP it is the holder of a bearer token,
//! hashed and compared in constant time by [`gyrus_policy::TokenStore`].

use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use gyrus_policy::{AuthFailure, Principal};

use crate::error::ApiError;
use crate::peer::Peer;
use crate::{ApiStateRef, guard};

/// Paths answered without a principal. Keep this list short: each entry is reachable by
/// anyone who can reach the port.
pub const PUBLIC_PATHS: &[&str] = &["/healthz"];

enum Credential {
    Owner(u32),
    Stranger,
    Bearer(String),
    Malformed,
    Missing,
}

fn credential(peer: Peer, owner_uid: u32, headers: &HeaderMap) -> Credential {
    match peer {
        Peer::Unix { uid: Some(uid) } if uid == owner_uid => Credential::Owner(uid),
        Peer::Unix { .. } => Credential::Stranger,
        Peer::Tcp(_) => match headers.get(header::AUTHORIZATION) {
            None => Credential::Missing,
            Some(value) => match value.to_str().ok().and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_string())
            }) {
                Some(token) if !token.is_empty() => Credential::Bearer(token),
                _ => Credential::Malformed,
            },
        },
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Checks Host and Origin on TCP requests. The Unix socket is not reachable from a browser,
/// so it needs no such guard.
pub(crate) async fn guard_host(
    State(state): State<ApiStateRef>,
    request: Request,
    next: Next,
) -> Response {
    let peer = peer_of(&request);
    if let Peer::Tcp(_) = peer {
        let headers = request.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if let Err(e) = guard::check(
            host,
            origin,
            &state.config.allowed_hosts,
            &state.config.allowed_origins,
        ) {
            let code = match e {
                guard::GuardError::OriginNotAllowed(_) => "origin_not_allowed",
                _ => "host_not_allowed",
            };
            tracing::warn!(reason = %e.message(), "request refused by the host guard");
            return ApiError::new(StatusCode::FORBIDDEN, code, e.message()).into_response();
        }
    }
    next.run(request).await
}

fn peer_of(request: &Request) -> Peer {
    // A request without connection info (never the case when served by `serve_*`) is treated
    // as an anonymous TCP peer: it gets no privileges.
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map_or(Peer::Tcp(([0, 0, 0, 0], 0).into()), |c| c.0)
}

/// Resolves the principal, applies the rate limit to it (or to the peer address when there
/// is none), and refuses unauthenticated requests outside [`PUBLIC_PATHS`].
pub(crate) async fn authenticate(
    State(state): State<ApiStateRef>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = peer_of(&request);
    // Err((label for metrics, message for the caller)).
    let outcome: Result<Principal, (&str, &str)> = match credential(
        peer,
        state.owner_uid,
        request.headers(),
    ) {
        Credential::Owner(uid) => Ok(Principal::Owner { uid }),
        Credential::Stranger => Err(("stranger", "this socket belongs to another user")),
        Credential::Missing => Err((
            "missing",
            "a bearer token is required: Authorization: Bearer <token> (create one with `gyrus token create NAME`)",
        )),
        Credential::Malformed => Err((
            "malformed",
            "the Authorization header must be `Bearer <token>`",
        )),
        Credential::Bearer(token) => {
            let result = match state.tokens.read() {
                Ok(tokens) => tokens.authenticate(&token, SystemTime::now()),
                Err(_) => Err(AuthFailure::Unknown),
            };
            // Not a device token: perhaps an agent's (minted by the kernel at its start).
            let result = match result {
                Err(AuthFailure::Unknown) => state
                    .kernel
                    .authenticate_agent(&token)
                    .map(|(id, name)| Principal::Agent { id, name })
                    .ok_or(AuthFailure::Unknown),
                other => other,
            };
            result.map_err(|failure| {
                let message = match failure {
                    AuthFailure::Unknown => "invalid token",
                    AuthFailure::Expired => "the token has expired; create a new one",
                    AuthFailure::Revoked => "the token was revoked",
                };
                (failure.as_str(), message)
            })
        }
    };

    let key = match (&outcome, peer) {
        (Ok(principal), _) => principal.id(),
        (Err(_), Peer::Tcp(addr)) => format!("peer:{}", addr.ip()),
        (Err(_), Peer::Unix { uid: Some(uid) }) => format!("uid:{uid}"),
        (Err(_), Peer::Unix { uid: None }) => "uid:unknown".to_string(),
    };
    if let Err(not_until) = state.limiter.check_key(&key) {
        state.metrics.rate_limited();
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {secs} s (api.rate_limit in user/gyrus.toml)"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }

    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
        }
        Err(_) if PUBLIC_PATHS.contains(&request.uri().path()) => {}
        Err((label, message)) => {
            state.metrics.auth_failure(label);
            if let Peer::Unix { .. } = peer {
                return ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
            }
            return unauthorized(message);
        }
    }
    next.run(request).await
}
