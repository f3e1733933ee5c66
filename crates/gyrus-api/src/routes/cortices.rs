//! The configured cortices (`user/cortices.toml`) through the API: list them with their
//! health, add and remove one (owner actions, decided and audited like grants), and test one
//! with a short request. No route takes or returns a key: a cortex names where its key is
//! found (an environment variable of the daemon, or a file under `user/`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use gyrus_cortex::registry::{CortexSpec, DriverKind, KeySource, RegistryError, Tier};
use gyrus_cortex::types::Price;
use gyrus_frontal::{CortexStatus, TestReport};
use gyrus_policy::Principal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::consent::{audited, blocking, owner_action};
use crate::routes::frontal::{frontal, frontal_error, registry_error};

/// Body fields that would carry a key itself; refused with a pointer to `key_env`/`key_file`.
const SECRET_FIELDS: &[&str] = &[
    "key", "api_key", "apikey", "api-key", "secret", "token", "password",
];

/// `POST /api/v1/cortices`: one cortex, in the flat form of `gyrus cortex add`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCortex {
    /// The name, `[a-z0-9][a-z0-9._-]{0,62}`; the model id `gyrus/<name>` selects it.
    pub name: String,
    /// `openai`, `anthropic`, `gemini`, `ollama` or `local`.
    pub driver: String,
    /// The vendor's model name; for `local` a `.gguf` path or an alias (`smollm2`).
    pub model: String,
    /// `reactive`, `operational`, `tactical` or `strategic`.
    pub tier: String,
    /// The base URL; none takes the driver's default.
    pub url: Option<String>,
    /// The environment variable of the daemon that holds the key.
    pub key_env: Option<String>,
    /// The file under `user/` that holds the key (mode 0600).
    pub key_file: Option<String>,
    /// Calls it takes at once (1 to 256); none takes the driver's default.
    pub max_concurrency: Option<u32>,
    /// USD per million input tokens (with `price_out`).
    pub price_in: Option<f64>,
    /// USD per million output tokens (with `price_in`).
    pub price_out: Option<f64>,
}

/// The configured cortices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CortexList {
    /// Every configured cortex with its health; never a key.
    #[schema(value_type = Vec<Object>)]
    pub cortices: Vec<CortexStatus>,
    /// Why `user/cortices.toml` cannot be read, when it cannot (then no cortex is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_error: Option<String>,
}

/// One cortex.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CortexBody {
    /// The cortex with its health.
    #[schema(value_type = Object)]
    pub cortex: CortexStatus,
}

/// A removed cortex.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemovedCortex {
    /// Its name.
    pub removed: String,
}

/// The spec `body` describes, checked; every error says what to change.
fn spec_of(body: AddCortex) -> Result<CortexSpec, ApiError> {
    let invalid = |m: String| ApiError::bad_request("invalid_cortex", m);
    let driver: DriverKind = body
        .driver
        .parse()
        .map_err(|e: RegistryError| invalid(e.to_string()))?;
    let tier: Tier = body
        .tier
        .parse()
        .map_err(|e: gyrus_cortex::tier::UnknownTier| invalid(e.to_string()))?;
    let mut spec = CortexSpec::new(body.name, driver, body.model, tier);
    spec.url = body.url;
    spec.key = match (body.key_env, body.key_file) {
        (None, None) => KeySource::None,
        (Some(var), None) => KeySource::Env(var),
        (None, Some(path)) => KeySource::File(path.into()),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give key_env or key_file, not both: the key is found in one place".into(),
            ));
        }
    };
    if let Some(n) = body.max_concurrency {
        spec.max_concurrency = n;
    }
    spec.price = match (body.price_in, body.price_out) {
        (None, None) => None,
        (Some(input_per_mtok), Some(output_per_mtok)) => Some(Price {
            input_per_mtok,
            output_per_mtok,
        }),
        _ => {
            return Err(invalid(
                "give both price_in and price_out (USD per million tokens), or neither".into(),
            ));
        }
    };
    spec.validate().map_err(registry_error)?;
    Ok(spec)
}

/// What the audit trail records of an added cortex: where its key is found, never a key.
fn audit_args(spec: &CortexSpec) -> Value {
    let key = match &spec.key {
        KeySource::None => Value::Null,
        KeySource::Env(var) => json!(format!("env:{var}")),
        KeySource::File(path) => json!(format!("file:{}", path.display())),
    };
    json!({
        "name": spec.name,
        "driver": spec.driver.as_str(),
        "model": spec.model,
        "tier": spec.tier.as_str(),
        "url": spec.url,
        "key": key,
        "max_concurrency": spec.max_concurrency,
        "price_in": spec.price.map(|p| p.input_per_mtok),
        "price_out": spec.price.map(|p| p.output_per_mtok),
    })
}

/// Whether `name` could be a cortex's name; one that cannot is unknown, not a bad resource.
fn plausible_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Lists the configured cortices with their health (the owner and the owner's devices).
#[utoipa::path(get, path = "/api/v1/cortices", tag = "cortices",
    responses((status = 200, description = "The cortices, and the registry file's error if it has one", body = CortexList),
              (status = 403, description = "Not the owner or a device", body = ErrorBody),
              (status = 503, description = "No frontal lobe", body = ErrorBody)))]
pub(crate) async fn list(State(state): State<ApiStateRef>) -> Result<Json<CortexList>, ApiError> {
    let frontal = frontal(&state)?;
    // `list` may re-read the file after an edit.
    let (cortices, registry_error) = tokio::task::spawn_blocking(move || frontal.list())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(CortexList {
        cortices,
        registry_error,
    }))
}

/// Adds a cortex (owner only), decided and audited; the file gets it atomically.
#[utoipa::path(post, path = "/api/v1/cortices", tag = "cortices", request_body = AddCortex,
    responses((status = 201, description = "Added, with its health", body = CortexBody),
              (status = 400, description = "A bad field, or a key in the body", body = ErrorBody),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 409, description = "A cortex of that name exists", body = ErrorBody),
              (status = 503, description = "No frontal lobe", body = ErrorBody)))]
pub(crate) async fn add(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<CortexBody>), ApiError> {
    if let Some(field) = body
        .as_object()
        .and_then(|o| SECRET_FIELDS.iter().find(|f| o.contains_key(**f)))
    {
        return Err(ApiError::bad_request(
            "key_in_body",
            format!(
                "`{field}` is refused: keys are never sent to gyrus; use key_env (an environment \
                 variable of the daemon that holds the key) or key_file (a file under user/, \
                 mode 0600)"
            ),
        ));
    }
    let body: AddCortex = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("invalid request body: {e}")))?;
    let spec = spec_of(body)?;
    let frontal = frontal(&state)?;
    let args = audit_args(&spec);
    let cortex = blocking(&state, move |k| {
        let name = spec.name.clone();
        let request = owner_action(
            &principal,
            "cortex.add",
            format!("cortex:{name}"),
            format!("add cortex {name}"),
        )?;
        audited(k, &request, &args, || {
            frontal.add(spec).map_err(frontal_error)
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CortexBody { cortex })))
}

/// Removes a cortex (owner only), decided and audited; calls waiting for it fail.
#[utoipa::path(delete, path = "/api/v1/cortices/{name}", tag = "cortices",
    params(("name" = String, Path, description = "The cortex's name")),
    responses((status = 200, description = "Removed", body = RemovedCortex),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such cortex", body = ErrorBody),
              (status = 503, description = "No frontal lobe", body = ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<ApiStateRef>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<RemovedCortex>, ApiError> {
    let frontal = frontal(&state)?;
    if !plausible_name(&name) {
        return Err(registry_error(RegistryError::NotFound(name)));
    }
    let removed = blocking(&state, move |k| {
        let request = owner_action(
            &principal,
            "cortex.remove",
            format!("cortex:{name}"),
            format!("remove cortex {name}"),
        )?;
        audited(k, &request, &Value::Null, || {
            frontal.remove(&name).map_err(frontal_error)
        })
    })
    .await?;
    Ok(Json(RemovedCortex {
        removed: removed.name,
    }))
}

/// Sends a cortex a short request (owner only): 200 with what came back, ok or not.
#[utoipa::path(post, path = "/api/v1/cortices/{name}/test", tag = "cortices",
    params(("name" = String, Path, description = "The cortex's name")),
    responses((status = 200, description = "The test's outcome: `ok`, the reply and latency, or the error", body = Object),
              (status = 403, description = "Not the owner", body = ErrorBody),
              (status = 404, description = "No such cortex", body = ErrorBody),
              (status = 503, description = "No frontal lobe", body = ErrorBody)))]
pub(crate) async fn test(
    State(state): State<ApiStateRef>,
    Path(name): Path<String>,
) -> Result<Json<TestReport>, ApiError> {
    let frontal = frontal(&state)?;
    frontal.test(&name).await.map(Json).map_err(frontal_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> AddCortex {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn specs_are_checked_with_the_registrys_messages() {
        let spec = spec_of(body(json!({
            "name": "big", "driver": "anthropic", "model": "claude-sonnet-4-5",
            "tier": "strategic", "key_env": "ANTHROPIC_API_KEY", "price_in": 3.0, "price_out": 15.0
        })));
        let spec = spec.unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(spec.key, KeySource::Env("ANTHROPIC_API_KEY".into()));
        assert_eq!(
            spec.max_concurrency,
            DriverKind::Anthropic.default_max_concurrency()
        );
        let err = |v: Value| match spec_of(body(v)) {
            Ok(_) => panic!("accepted"),
            Err(e) => (e.status, e.message),
        };
        let (status, message) =
            err(json!({"name": "a", "driver": "nope", "model": "m", "tier": "tactical"}));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("unknown driver `nope`"), "{message}");
        let (_, message) =
            err(json!({"name": "a", "driver": "ollama", "model": "m", "tier": "huge"}));
        assert!(message.contains("unknown tier `huge`"), "{message}");
        let (_, message) = err(json!({"name": "a", "driver": "ollama", "model": "m",
            "tier": "tactical", "price_in": 1.0}));
        assert!(message.contains("price_out"), "{message}");
    }

    #[test]
    fn names_that_cannot_exist_are_unknown() {
        assert!(plausible_name("small"));
        assert!(plausible_name("llama3.1_8b"));
        for bad in ["", "..", "-a", "A", "a/b", &"a".repeat(64)] {
            assert!(!plausible_name(bad), "{bad}");
        }
    }
}
