//! API tokens: list, create and revoke, all owner only: managing credentials must not be
//! something a credential can do, and a device has no need to see the others.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gyrus_policy::{TokenError, TokenInfo, TokenStore};
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Every token ever created, oldest first (hashes are never shown).
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 letters, digits, '.', '_' or '-'.
    pub name: String,
    /// Lifetime such as `30d`, `12h`, `1y`; omit for a token that does not expire.
    #[serde(default)]
    pub expires: Option<String>,
}

/// The new token. `secret` is shown this once; only its SHA-256 is kept.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token's record.
    pub token: TokenInfo,
    /// The token itself: `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// `DELETE /api/v1/tokens/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokedToken {
    /// The revoked token's record.
    pub token: TokenInfo,
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::InvalidName(_) | TokenError::InvalidExpiry => {
            ApiError::bad_request("invalid_body", e.to_string())
        }
        TokenError::NameTaken(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        TokenError::NotFound(_) => ApiError::not_found(e.to_string()),
        TokenError::Random(_) | TokenError::Store { .. } => ApiError::internal(e),
    }
}

/// Runs a change to the token store on the blocking pool: it writes and fsyncs a file.
async fn with_store<T: Send + 'static>(
    state: &ApiStateRef,
    f: impl FnOnce(&mut TokenStore) -> Result<T, TokenError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = state.tokens.write().map_err(ApiError::internal)?;
        f(&mut store).map_err(token_error)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Lists tokens (owner only).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, description = "All tokens", body = TokenList),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
    ))]
pub(crate) async fn list(State(state): State<ApiStateRef>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state
        .tokens
        .read()
        .map_err(ApiError::internal)?
        .list(SystemTime::now());
    Ok(Json(TokenList { tokens }))
}

/// Creates a token (owner only).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedToken),
        (status = 400, description = "Bad name, expiry or body", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 409, description = "An active token has that name", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<ApiStateRef>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let ttl = body.expires.as_deref().map(parse_expiry).transpose()?;
    let (token, secret) = with_store(&state, move |s| {
        s.create(&body.name, ttl, SystemTime::now())
    })
    .await?;
    tracing::info!(name = %token.name, id = %token.id, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            secret: secret.expose().to_string(),
        }),
    ))
}

/// Revokes a token (owner only); it stops working on the next request.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "Revoked", body = RevokedToken),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No active token has that name", body = ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
) -> Result<Json<RevokedToken>, ApiError> {
    let token = with_store(&state, move |s| s.revoke(&name, SystemTime::now())).await?;
    tracing::info!(name = %token.name, id = %token.id, "token revoked");
    Ok(Json(RevokedToken { token }))
}

/// `30d`, `12h`, `90m`, `1y`, … (humantime's syntax).
fn parse_expiry(text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("invalid expires {text:?}: {e}; use a duration such as 30d, 12h or 1y"),
        )
    })
}
