//! Every route the API serves, registered through one table so that the table, the router
//! and the OpenAPI document cannot silently disagree (a test walks the table against both).

pub(crate) mod agents;
mod audit;
mod consent;
mod cortices;
pub(crate) mod frontal;
mod ipc;
mod openai;
mod sessions;
mod system;
mod tokens;
pub(crate) mod tools;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use gyrus_policy::Principal;
use utoipa::OpenApi;

use crate::ApiStateRef;
use crate::auth::PUBLIC_PATHS;
use crate::error::{ApiError, ErrorBody, ErrorDetail};

/// Who may call a route once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Any principal: the owner or any valid token.
    Anyone,
    /// The owner or the owner's devices (API tokens), but not agents or sessions: for what
    /// shows everything that happened.
    Devices,
    /// Only the owner (over the Unix socket): minting or revoking credentials must not be
    /// something a credential can do.
    Owner,
}

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path template, e.g. `/api/v1/tokens/{name}`.
    pub path: &'static str,
    /// Who may call it.
    pub who: Who,
    /// Whether it answers without a principal (listed in `PUBLIC_PATHS`).
    pub public: bool,
}

/// The methods routes use (HEAD is answered for every GET by axum).
#[derive(Debug, Clone, Copy)]
enum Verb {
    Get,
    Post,
    Delete,
}

struct Routes {
    router: Router<ApiStateRef>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn add<H, T>(mut self, verb: Verb, path: &'static str, who: Who, handler: H) -> Self
    where
        H: axum::handler::Handler<T, ApiStateRef>,
        T: 'static,
    {
        let (method, filter) = match verb {
            Verb::Get => (Method::GET, MethodFilter::GET),
            Verb::Post => (Method::POST, MethodFilter::POST),
            Verb::Delete => (Method::DELETE, MethodFilter::DELETE),
        };
        let mut endpoint = on(filter, handler);
        match who {
            Who::Anyone => {}
            Who::Devices => endpoint = endpoint.route_layer(middleware::from_fn(require_device)),
            Who::Owner => endpoint = endpoint.route_layer(middleware::from_fn(require_owner)),
        }
        self.router = self.router.route(path, endpoint);
        self.table.push(RouteInfo {
            public: PUBLIC_PATHS.contains(&path),
            method,
            path,
            who,
        });
        self
    }
}

fn routes() -> Routes {
    // One MCP endpoint (one set of sessions) behind all three methods.
    let mcp = crate::mcp::Endpoint::new();
    Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add(Verb::Get, "/healthz", Who::Anyone, system::healthz)
    .add(Verb::Get, "/metrics", Who::Anyone, system::metrics)
    .add(
        Verb::Get,
        "/openapi.json",
        Who::Anyone,
        system::openapi_json,
    )
    .add(Verb::Get, "/api/v1/status", Who::Anyone, system::status)
    .add(Verb::Get, "/api/v1/tokens", Who::Owner, tokens::list)
    .add(Verb::Post, "/api/v1/tokens", Who::Owner, tokens::create)
    .add(
        Verb::Delete,
        "/api/v1/tokens/{name}",
        Who::Owner,
        tokens::revoke,
    )
    .add(Verb::Get, "/api/v1/agents", Who::Anyone, agents::list)
    .add(Verb::Post, "/api/v1/agents", Who::Owner, agents::spawn)
    .add(
        Verb::Get,
        "/api/v1/agents/{name}",
        Who::Anyone,
        agents::show,
    )
    .add(
        Verb::Delete,
        "/api/v1/agents/{name}",
        Who::Owner,
        agents::remove,
    )
    .add(
        Verb::Post,
        "/api/v1/agents/{name}/stop",
        Who::Owner,
        agents::stop,
    )
    .add(
        Verb::Post,
        "/api/v1/agents/{name}/start",
        Who::Owner,
        agents::start,
    )
    .add(
        Verb::Get,
        "/api/v1/agents/{name}/logs",
        Who::Owner,
        agents::logs,
    )
    .add(
        Verb::Post,
        "/api/v1/decisions",
        Who::Anyone,
        consent::decide,
    )
    .add(
        Verb::Get,
        "/api/v1/grants",
        Who::Owner,
        consent::list_grants,
    )
    .add(Verb::Post, "/api/v1/grants", Who::Owner, consent::add_grant)
    .add(
        Verb::Delete,
        "/api/v1/grants/{id}",
        Who::Owner,
        consent::revoke_grant,
    )
    .add(
        Verb::Get,
        "/api/v1/approvals",
        Who::Devices,
        consent::approvals,
    )
    .add(
        Verb::Get,
        "/api/v1/approvals/{id}",
        Who::Anyone,
        consent::approval,
    )
    .add(
        Verb::Post,
        "/api/v1/approvals/{id}/approve",
        Who::Owner,
        consent::approve,
    )
    .add(
        Verb::Post,
        "/api/v1/approvals/{id}/deny",
        Who::Owner,
        consent::deny,
    )
    .add(Verb::Post, "/api/v1/messages", Who::Anyone, ipc::send)
    .add(Verb::Get, "/api/v1/messages", Who::Anyone, ipc::receive)
    .add(Verb::Post, "/api/v1/messages/ack", Who::Anyone, ipc::ack)
    .add(
        Verb::Post,
        "/api/v1/messages/request",
        Who::Anyone,
        ipc::request,
    )
    .add(Verb::Get, "/api/v1/events", Who::Devices, ipc::events)
    .add(Verb::Get, "/api/v1/audit", Who::Devices, audit::tail)
    .add(
        Verb::Get,
        "/api/v1/audit/verify",
        Who::Devices,
        audit::verify,
    )
    .add(
        Verb::Get,
        "/api/v1/audit/tree-head",
        Who::Anyone,
        audit::tree_head,
    )
    .add(
        Verb::Get,
        "/api/v1/audit/proof/inclusion",
        Who::Anyone,
        audit::inclusion,
    )
    .add(
        Verb::Get,
        "/api/v1/audit/proof/consistency",
        Who::Anyone,
        audit::consistency,
    )
    .add(Verb::Get, "/api/v1/cortices", Who::Devices, cortices::list)
    .add(Verb::Post, "/api/v1/cortices", Who::Owner, cortices::add)
    .add(
        Verb::Delete,
        "/api/v1/cortices/{name}",
        Who::Owner,
        cortices::remove,
    )
    .add(
        Verb::Post,
        "/api/v1/cortices/{name}/test",
        Who::Owner,
        cortices::test,
    )
    .add(Verb::Post, "/api/v1/ask", Who::Anyone, frontal::ask)
    .add(
        Verb::Post,
        "/api/v1/route/explain",
        Who::Anyone,
        frontal::explain,
    )
    .add(Verb::Get, "/api/v1/routes", Who::Devices, frontal::routes)
    .add(Verb::Get, "/api/v1/tools", Who::Anyone, tools::list)
    .add(
        Verb::Get,
        "/api/v1/tools/{name}",
        Who::Anyone,
        tools::describe,
    )
    .add(
        Verb::Post,
        "/api/v1/tools/{name}/call",
        Who::Anyone,
        tools::call,
    )
    .add(
        Verb::Post,
        "/api/v1/undo/{action_id}",
        Who::Anyone,
        tools::undo,
    )
    .add(Verb::Get, "/api/v1/sessions", Who::Devices, sessions::list)
    .add(
        Verb::Post,
        "/api/v1/sessions",
        Who::Devices,
        sessions::register,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/hook",
        Who::Devices,
        sessions::hook,
    )
    .add(
        Verb::Get,
        "/api/v1/sessions/conflicts",
        Who::Devices,
        sessions::conflicts,
    )
    .add(
        Verb::Get,
        "/api/v1/sessions/board",
        Who::Devices,
        sessions::board,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/board",
        Who::Devices,
        sessions::post,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/check",
        Who::Devices,
        sessions::check,
    )
    .add(
        Verb::Get,
        "/api/v1/sessions/{id}",
        Who::Devices,
        sessions::show,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/{id}/heartbeat",
        Who::Devices,
        sessions::heartbeat,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/{id}/end",
        Who::Devices,
        sessions::end,
    )
    .add(
        Verb::Post,
        "/api/v1/sessions/{id}/messages",
        Who::Devices,
        sessions::send,
    )
    .add(Verb::Get, "/api/v1/audit/{seq}", Who::Devices, audit::show)
    .add(
        Verb::Get,
        "/api/v1/audit/{seq}/why",
        Who::Devices,
        audit::why,
    )
    // The OpenAI-compatible gateway (routes/openai.rs), for any token: the caller is the
    // agent its calls are queued and budgeted for.
    .add(Verb::Get, "/v1/models", Who::Anyone, openai::models)
    .add(
        Verb::Post,
        "/v1/chat/completions",
        Who::Anyone,
        openai::chat_completions,
    )
    .add(
        Verb::Post,
        "/v1/embeddings",
        Who::Anyone,
        openai::embeddings,
    )
    // MCP streamable HTTP (crate::mcp): every tool, called as the authenticated principal.
    .add(Verb::Post, "/mcp", Who::Anyone, mcp.clone())
    .add(Verb::Get, "/mcp", Who::Anyone, mcp.clone())
    .add(Verb::Delete, "/mcp", Who::Anyone, mcp)
}

/// The route table (for tests and documentation).
pub fn table() -> Vec<RouteInfo> {
    routes().table
}

/// The router with every route, and a JSON 404 for everything else.
pub(crate) fn router() -> Router<ApiStateRef> {
    routes()
        .router
        .route_layer(middleware::from_fn(crate::metrics::expose_route))
        .fallback(|| async { ApiError::not_found("no such route; GET /openapi.json lists them") })
}

async fn require_device(request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        Some(Principal::Owner { .. } | Principal::Token { .. }) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "devices_only",
            "only the owner and the owner's device tokens may do this, not agents or sessions",
        )
        .into_response(),
    }
}

async fn require_owner(request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        Some(p) if p.is_owner() => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "only the owner may do this: run the command on the host as the daemon's user (it uses the Unix socket)",
        )
        .into_response(),
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gyrus API",
        description = "The gyrus daemon's HTTP API. Every route but /healthz needs `Authorization: Bearer <token>` (or the owner's Unix socket). Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        system::healthz,
        system::metrics,
        system::openapi_json,
        system::status,
        tokens::list,
        tokens::create,
        tokens::revoke,
        agents::list,
        agents::spawn,
        agents::show,
        agents::remove,
        agents::stop,
        agents::start,
        agents::logs,
        consent::decide,
        consent::list_grants,
        consent::add_grant,
        consent::revoke_grant,
        consent::approvals,
        consent::approval,
        consent::approve,
        consent::deny,
        ipc::send,
        ipc::receive,
        ipc::ack,
        ipc::request,
        ipc::events,
        audit::tail,
        audit::verify,
        audit::tree_head,
        audit::inclusion,
        audit::consistency,
        audit::show,
        audit::why,
        cortices::list,
        cortices::add,
        cortices::remove,
        cortices::test,
        frontal::ask,
        frontal::explain,
        frontal::routes,
        tools::list,
        tools::describe,
        tools::call,
        tools::undo,
        sessions::hook,
        sessions::list,
        sessions::register,
        sessions::show,
        sessions::heartbeat,
        sessions::end,
        sessions::send,
        sessions::conflicts,
        sessions::board,
        sessions::post,
        sessions::check,
        openai::models,
        openai::chat_completions,
        openai::embeddings,
        crate::mcp::post_doc,
        crate::mcp::get_doc,
        crate::mcp::delete_doc,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "system", description = "Health, status, metrics and this document"),
        (name = "tokens", description = "API tokens for devices and thin clients"),
        (name = "agents", description = "Agents: spawned from manifests, supervised, stopped, removed"),
        (name = "consent", description = "The consent broker: decisions, grants, approvals"),
        (name = "ipc", description = "Semantic IPC: messages by intent, durable agent mailboxes, the kernel event stream"),
        (name = "tools", description = "Typed tools: list, describe, call through the consent broker, undo"),
        (name = "sessions", description = "The session manager: LLM client sessions (Claude Code, Codex, Gemini CLI, Aider), their hooks, path leases, the board, messages, conflict prediction"),
        (name = "audit", description = "The tamper-evident audit trail: entries, why, verify, signed tree heads, RFC 6962 proofs"),
        (name = "frontal", description = "The frontal lobe: ask (the agent loop: reactive skills, cortices, tools through the broker), route explain, the route log"),
        (name = "cortices", description = "The configured cortices (model endpoints): list with health, add, remove, test; keys are never sent, only where they are found"),
        (name = "gateway", description = "The OpenAI-compatible gateway: /v1/models, /v1/chat/completions (streamed or not, with tools) and /v1/embeddings, for any OpenAI client with base_url http://<daemon>/v1 and a gyrus token as its key; errors in OpenAI's shape"),
        (name = "mcp", description = "Every tool over MCP (streamable HTTP), decided and audited like the tools routes"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
