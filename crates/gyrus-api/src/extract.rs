//! `ApiJson<T>`: the only way a handler reads a JSON body.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body. Unlike axum's `Json`, every failure is an [`ApiError`] in the uniform
/// shape with a reason: 415 without a JSON content type, 413 over the body limit (also for
/// chunked bodies, whose size is only known while reading), 400 for malformed JSON and 400,
/// naming the field, for a body that does not fit the type. Request types use
/// `#[serde(deny_unknown_fields)]`, so a misspelt field is an error rather than ignored.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than api.body_limit_bytes",
                )
            }
            other => ApiError::bad_request("bad_request", format!("cannot read the body: {other}")),
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a body, sorting syntax errors from data errors.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::bad_request("invalid_body", format!("invalid request body: {e}"))
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("malformed_json", format!("malformed JSON: {e}"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse::<Body>(b"{\"name\":").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let e = parse::<Body>(b"{\"name\":\"a\",\"nmae\":1}").unwrap_err();
        assert_eq!(e.code, "invalid_body");
        assert!(e.message.contains("unknown field `nmae`"), "{}", e.message);
        let e = parse::<Body>(b"{}").unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
        assert!(parse::<Body>(b"{\"name\":\"a\"}").is_ok());
    }
}
