//! Semantic IPC (send, receive, acknowledge) and the kernel event stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use gyrus_bus::{Envelope, EventItem, Pattern, Subject};
use gyrus_policy::Principal;
use serde::{Deserialize, Serialize};

use crate::ApiStateRef;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::agents::kernel_error;

/// `POST /api/v1/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Dotted intent, e.g. `ops.disk.cleanup`.
    pub intent: String,
    /// Any JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// An agent's name: the message goes to its durable mailbox.
    pub to: Option<String>,
    /// A schema name for the payload.
    pub schema: Option<String>,
    /// For a reply: the id of the message it answers.
    pub correlation: Option<String>,
    /// Not delivered after this many milliseconds.
    pub ttl_ms: Option<u64>,
}

/// What a send did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SentMessage {
    /// The message id.
    pub id: String,
    /// The mailbox delivery id when sent to an agent.
    pub mailbox_id: Option<u64>,
    /// In-process subscribers reached.
    pub subscribers: usize,
}

/// `GET /api/v1/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecvQuery {
    /// Intent pattern (`*` one part, `>` the rest); default `>`.
    pub pattern: Option<String>,
    /// Whose mailbox: an agent's name. An agent reads its own (and may omit this); the
    /// owner may read any agent's. Without it the owner taps in-process traffic live.
    #[serde(rename = "as")]
    pub as_agent: Option<String>,
    /// At most this many messages (default 10, at most 1,000).
    pub max: Option<usize>,
    /// Wait up to this many milliseconds for a first message (default 0; at most 60,000, and
    /// always a second less than `api.request_timeout_secs`).
    pub wait_ms: Option<u64>,
    /// Lease in milliseconds before an unacknowledged message is handed out again
    /// (default 30,000).
    pub lease_ms: Option<u64>,
    /// For the live tap: join this handler group (each message goes to one member).
    pub group: Option<String>,
}

/// One received message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Received {
    /// The delivery id to acknowledge (mailbox messages only).
    pub delivery_id: Option<u64>,
    /// Times handed out, this one included (mailbox messages only).
    pub attempts: Option<u32>,
    /// The message.
    #[schema(value_type = Object)]
    pub envelope: Envelope,
}

/// Received messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceivedList {
    /// Whose mailbox, if any.
    pub agent: Option<String>,
    /// The messages, oldest first.
    pub messages: Vec<Received>,
}

/// `POST /api/v1/messages/ack`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckMessages {
    /// Whose mailbox (as for receiving).
    #[serde(rename = "as")]
    pub as_agent: Option<String>,
    /// Delivery ids.
    pub ids: Vec<u64>,
}

/// How many were acknowledged.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Acked {
    /// Deliveries removed for good.
    pub acknowledged: usize,
}

fn bad(code: &'static str) -> impl Fn(gyrus_bus::SubjectError) -> ApiError {
    move |e| ApiError::bad_request(code, e.to_string())
}

/// Which mailbox a principal may use: an agent only its own; the owner any (by name).
fn mailbox_of(
    principal: &Principal,
    requested: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (principal, requested) {
        (Principal::Agent { name, .. }, None) => Ok(Some(name.clone())),
        (Principal::Agent { name, .. }, Some(r)) if &r == name => Ok(Some(r)),
        (Principal::Agent { .. }, Some(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an agent may only read its own mailbox",
        )),
        (Principal::Owner { .. }, requested) => Ok(requested),
        (_, _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "only the owner and agents receive messages",
        )),
    }
}

/// Sends a message: to an agent's durable mailbox with `to`, and to in-process subscribers.
#[utoipa::path(post, path = "/api/v1/messages", tag = "ipc", request_body = SendMessage,
    responses((status = 202, description = "Accepted (durable when sent to an agent)", body = SentMessage),
              (status = 400, description = "Bad intent or body", body = ErrorBody),
              (status = 404, description = "No such agent", body = ErrorBody)))]
pub(crate) async fn send(
    State(state): State<ApiStateRef>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<SentMessage>), ApiError> {
    let intent = Subject::new(body.intent).map_err(bad("invalid_intent"))?;
    let mut builder = Envelope::builder(intent, principal.id()).payload(body.payload);
    if let Some(schema) = body.schema {
        builder = builder.schema(schema);
    }
    if let Some(correlation) = body.correlation {
        builder = builder.correlation(correlation);
    }
    if let Some(ttl) = body.ttl_ms {
        builder = builder.ttl(Duration::from_millis(ttl));
    }
    let envelope = builder
        .build()
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let to = body.to;
    let kernel = state.kernel.clone();
    let sent = tokio::task::spawn_blocking(move || kernel.send(envelope, to.as_deref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(kernel_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SentMessage {
            id: sent.envelope.id,
            mailbox_id: sent.mailbox_id,
            subscribers: sent.subscribers,
        }),
    ))
}

/// Receives messages: from an agent's mailbox (leased until acknowledged), or, for the owner
/// without `as`, live from the in-process bus.
#[utoipa::path(get, path = "/api/v1/messages", tag = "ipc", params(RecvQuery),
    responses((status = 200, description = "Messages, possibly none", body = ReceivedList),
              (status = 400, description = "Bad pattern", body = ErrorBody),
              (status = 403, description = "Not yours", body = ErrorBody)))]
pub(crate) async fn receive(
    State(state): State<ApiStateRef>,
    axum::Extension(principal): axum::Extension<Principal>,
    Query(q): Query<RecvQuery>,
) -> Result<Json<ReceivedList>, ApiError> {
    let pattern =
        Pattern::new(q.pattern.unwrap_or_else(|| ">".into())).map_err(bad("invalid_pattern"))?;
    let max = q.max.unwrap_or(10).clamp(1, 1000);
    let wait = state.max_wait(q.wait_ms.unwrap_or(0));
    let lease = Duration::from_millis(q.lease_ms.unwrap_or(30_000).clamp(1, 3_600_000));
    let deadline = tokio::time::Instant::now() + wait;
    let closing = state.kernel.closing();
    tokio::pin!(closing);

    let Some(agent) = mailbox_of(&principal, q.as_agent)? else {
        // The owner's live tap on in-process traffic.
        let mut subscription = state.kernel.bus().subscribe(pattern, q.group, 1024);
        let mut messages = Vec::new();
        while messages.len() < max {
            let next = tokio::select! {
                m = subscription.recv() => m,
                _ = tokio::time::sleep_until(deadline), if messages.is_empty() => None,
                _ = &mut closing => None,
                _ = std::future::ready(()), if !messages.is_empty() => None,
            };
            let Some(envelope) = next else { break };
            messages.push(Received {
                delivery_id: None,
                attempts: None,
                envelope: (*envelope).clone(),
            });
        }
        return Ok(Json(ReceivedList {
            agent: None,
            messages,
        }));
    };

    loop {
        let kernel = state.kernel.clone();
        let (name, pattern2) = (agent.clone(), pattern.clone());
        let (id, deliveries) =
            tokio::task::spawn_blocking(move || kernel.receive(&name, Some(&pattern2), max, lease))
                .await
                .map_err(ApiError::internal)?
                .map_err(kernel_error)?;
        if !deliveries.is_empty() || tokio::time::Instant::now() >= deadline {
            let messages = deliveries
                .into_iter()
                .map(|d| Received {
                    delivery_id: Some(d.id),
                    attempts: Some(d.attempts),
                    envelope: d.envelope,
                })
                .collect();
            return Ok(Json(ReceivedList {
                agent: Some(agent),
                messages,
            }));
        }
        tokio::select! {
            _ = state.kernel.wait_mail(&id) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = &mut closing => {
                return Ok(Json(ReceivedList { agent: Some(agent), messages: Vec::new() }));
            }
        }
    }
}

/// Acknowledges mailbox deliveries; they are never delivered again.
#[utoipa::path(post, path = "/api/v1/messages/ack", tag = "ipc", request_body = AckMessages,
    responses((status = 200, description = "Acknowledged", body = Acked),
              (status = 403, description = "Not yours", body = ErrorBody)))]
pub(crate) async fn ack(
    State(state): State<ApiStateRef>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiJson(body): ApiJson<AckMessages>,
) -> Result<Json<Acked>, ApiError> {
    let agent = mailbox_of(&principal, body.as_agent)?.ok_or_else(|| {
        ApiError::bad_request("invalid_body", "say whose mailbox: \"as\": \"AGENT\"")
    })?;
    let kernel = state.kernel.clone();
    let acknowledged = tokio::task::spawn_blocking(move || kernel.acknowledge(&agent, &body.ids))
        .await
        .map_err(ApiError::internal)?
        .map_err(kernel_error)?;
    Ok(Json(Acked { acknowledged }))
}

/// `POST /api/v1/messages/request`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMessage {
    /// Dotted intent.
    pub intent: String,
    /// Any JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// An agent's name: the request goes to its durable mailbox; otherwise to live
    /// subscribers (one member per handler group).
    pub to: Option<String>,
    /// A schema name for the payload.
    pub schema: Option<String>,
    /// How long to wait for the reply, in milliseconds (default 10,000; always a second less
    /// than `api.request_timeout_secs`).
    pub timeout_ms: Option<u64>,
}

/// The reply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplyBody {
    /// The reply's envelope; its `correlation` is the request's id.
    #[schema(value_type = Object)]
    pub reply: Envelope,
}

/// Request/reply: sends the request and waits for the envelope whose `correlation` is its id
/// (the responder sends it with `POST /api/v1/messages` and `correlation`).
#[utoipa::path(post, path = "/api/v1/messages/request", tag = "ipc", request_body = RequestMessage,
    responses((status = 200, description = "The reply", body = ReplyBody),
              (status = 503, description = "No live subscriber for the intent", body = ErrorBody),
              (status = 504, description = "No reply in time", body = ErrorBody)))]
pub(crate) async fn request(
    State(state): State<ApiStateRef>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiJson(body): ApiJson<RequestMessage>,
) -> Result<Json<ReplyBody>, ApiError> {
    let intent = Subject::new(body.intent).map_err(bad("invalid_intent"))?;
    let intent_text = intent.to_string();
    let mut builder = Envelope::builder(intent, principal.id()).payload(body.payload);
    if let Some(schema) = body.schema {
        builder = builder.schema(schema);
    }
    let envelope = builder
        .build()
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let timeout = state.max_wait(body.timeout_ms.unwrap_or(10_000));
    let bus_error = |e: gyrus_bus::BusError| match e {
        gyrus_bus::BusError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_reply", e.to_string())
        }
        gyrus_bus::BusError::NoResponders { .. } | gyrus_bus::BusError::Busy { .. } => {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_responders",
                e.to_string(),
            )
        }
        other => ApiError::bad_request("invalid_body", other.to_string()),
    };
    let reply = match body.to {
        Some(to) => {
            // Wait first, then deliver, so a quick reply is not missed.
            let wait = state
                .kernel
                .bus()
                .expect_reply(&envelope.id)
                .map_err(bus_error)?;
            let kernel = state.kernel.clone();
            tokio::task::spawn_blocking(move || kernel.send(envelope, Some(&to)))
                .await
                .map_err(ApiError::internal)?
                .map_err(kernel_error)?;
            wait.wait(timeout, &intent_text).await.map_err(bus_error)?
        }
        None => state
            .kernel
            .bus()
            .request(envelope, timeout)
            .await
            .map_err(bus_error)?,
    };
    Ok(Json(ReplyBody { reply }))
}

/// `?pattern=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Event kind pattern, e.g. `kernel.agent.>` (default `>`).
    pub pattern: Option<String>,
}

/// Kernel events as server-sent events (`event:` the kind, `id:` the sequence number,
/// `data:` JSON). Resumes after `Last-Event-ID` while the events are still held.
#[utoipa::path(get, path = "/api/v1/events", tag = "ipc", params(EventsQuery),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
              (status = 400, description = "Bad pattern", body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<ApiStateRef>,
    Query(q): Query<EventsQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let pattern =
        Pattern::new(q.pattern.unwrap_or_else(|| ">".into())).map_err(bad("invalid_pattern"))?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let events = state.kernel.events();
    let stream = match after {
        Some(seq) => events.subscribe_after(pattern, seq),
        None => events.subscribe(pattern),
    };
    let closing = Box::pin(state.kernel.closing());
    let stream =
        futures_util::stream::unfold((stream, closing), |(mut stream, mut closing)| async move {
            let item = tokio::select! {
                item = stream.next() => item?,
                _ = &mut closing => return None,
            };
            let event = match item {
                EventItem::Event(e) => SseEvent::default()
                    .event(e.kind.as_str())
                    .id(e.seq.to_string())
                    .data(serde_json::to_string(&*e).unwrap_or_default()),
                EventItem::Lagged(n) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
            };
            Some((Ok(event), (stream, closing)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
