//! `net.http`: one HTTP or HTTPS request, decided per destination.
//!
//! The broker decides `net.http` on `host:<host>:<port>` before the call runs. Then:
//!
//! - **The address connected to is the address checked.** The tool resolves the host itself,
//!   checks every address, and hands ureq exactly those addresses through a resolver that
//!   cannot look anything up again, so a DNS answer that changes between the check and the
//!   connection (DNS rebinding) changes nothing. Proxies from the environment are ignored.
//! - **Special addresses** (loopback, private, link-local, CGNAT, metadata… see
//!   [`addr::classify`]) are reached only when the URL names them as they are: an IP
//!   literal (`http://127.0.0.1:8080/`) or `localhost` (which always means 127.0.0.1 and ::1,
//!   never a DNS answer). Then the grant the broker checked names that address, so the
//!   owner allowed exactly it. A name that resolves to a special address is refused
//!   ("resolves to a private address"), because no grant on a public name can be read as
//!   consent to reach the local network. Unspecified, broadcast, multicast and reserved
//!   addresses are refused always, and metadata host names (`metadata.google.internal`) by
//!   name.
//! - **Redirects are followed by hand**, at most five. Each hop is checked like the first
//!   (scheme, address rule) and, when it goes to another `host:port`, scheme or method, put
//!   to the broker again under the call's principal, intent and plan: a redirect from an
//!   allowed host cannot lead anywhere the caller was not allowed to go. `Authorization`,
//!   `Cookie` and `Proxy-Authorization` are dropped once a redirect leaves the original
//!   origin, and stay dropped.
//!
//! Header values are never logged.

pub mod addr;
pub mod target;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use gyrus_bus::Subject;
use gyrus_kernel::Recorded;
use gyrus_policy::{ActionRequest, Outcome};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ureq::http;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::env::ToolEnv;
use crate::registry::Tools;
use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};
use target::{Host, Target};

/// The most redirects one call follows.
pub const MAX_REDIRECTS: usize = 5;
/// The default and the largest `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The largest `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// The default `max_response_bytes`.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// The largest `max_response_bytes`.
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;
/// The most request headers.
pub const MAX_HEADERS: usize = 64;

/// Registers `net.http`.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(Http));
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
}

impl Method {
    /// As sent: `GET`, `POST`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

fn yes() -> bool {
    true
}

/// Arguments of `net.http`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// The HTTP method.
    #[serde(default)]
    pub method: Method,
    /// The URL, `http://` or `https://`. Loopback, private and link-local addresses are
    /// reached only when the URL names them literally (`http://127.0.0.1:8080/`, or
    /// `localhost`) and a grant covers `host:<that address>:<port>`.
    pub url: String,
    /// Request headers by name. `Host`, `Content-Length`, `Transfer-Encoding`, `Connection`
    /// and other hop-by-hop headers are set by the tool and refused here. `Authorization` and
    /// `Cookie` are dropped when a redirect leaves the URL's origin.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body, as text (sent as UTF-8).
    #[serde(default)]
    pub body: Option<String>,
    /// The request body as base64, for binary data; not together with `body`.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// How long the whole call may take, redirects included, in milliseconds (at most
    /// 120000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most response body bytes kept; a longer body is cut and `truncated` set (at most
    /// 8 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Whether to follow redirects (at most 5). Each one to another host is decided by the
    /// broker again.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
}

/// The response of `net.http`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HttpOutput {
    /// The status code of the last response.
    pub status: u16,
    /// Its headers, names lowercase, each with its values in order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body: UTF-8 text, or base64 when `body_base64` is true.
    pub body: String,
    /// True when `body` is base64 because the bytes are not UTF-8.
    pub body_base64: bool,
    /// True when the body was longer than `max_response_bytes` and was cut.
    pub truncated: bool,
    /// The URL of the last response.
    pub final_url: String,
    /// Every URL a redirect led to, in order.
    pub redirects: Vec<String>,
    /// How long the call took, in milliseconds.
    pub duration_ms: u64,
}

/// `net.http`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

/// A request checked and ready to send.
struct Prepared {
    target: Target,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
    max_body: u64,
}

/// Headers the tool sets itself or that only make sense hop by hop.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Headers that carry credentials, dropped when a redirect leaves the origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

fn prepare(args: &HttpArgs) -> Result<Prepared, ToolError> {
    let target =
        Target::parse(&args.url).map_err(|e| ToolError::InvalidArgs(format!("url: {e}")))?;
    if !(1..=MAX_TIMEOUT_MS).contains(&args.timeout_ms) {
        return Err(ToolError::InvalidArgs(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        )));
    }
    if args.max_response_bytes > MAX_RESPONSE_BYTES {
        return Err(ToolError::InvalidArgs(format!(
            "max_response_bytes must be at most {MAX_RESPONSE_BYTES}"
        )));
    }
    if args.headers.len() > MAX_HEADERS {
        return Err(ToolError::InvalidArgs(format!(
            "at most {MAX_HEADERS} headers"
        )));
    }
    let mut headers = Vec::with_capacity(args.headers.len());
    for (name, value) in &args.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ToolError::InvalidArgs(format!(
                "header name {name:?} is not a valid HTTP header name"
            ))
        })?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(ToolError::InvalidArgs(format!(
                "header {name} is set by the tool; leave it out"
            )));
        }
        // The value is not quoted back: it may be a secret.
        let value = http::HeaderValue::from_str(value).map_err(|_| {
            ToolError::InvalidArgs(format!(
                "the value of header {name} has characters HTTP does not allow (control characters or non-ASCII)"
            ))
        })?;
        headers.push((name, value));
    }
    let body = match (&args.body, &args.body_base64) {
        (Some(_), Some(_)) => {
            return Err(ToolError::InvalidArgs(
                "give body or body_base64, not both".into(),
            ));
        }
        (Some(text), None) => Some(text.clone().into_bytes()),
        (None, Some(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| ToolError::InvalidArgs(format!("body_base64 is not base64: {e}")))?,
        ),
        (None, None) => None,
    };
    if body.is_some() && args.method == Method::Head {
        return Err(ToolError::InvalidArgs("a HEAD request has no body".into()));
    }
    Ok(Prepared {
        target,
        headers,
        body,
        timeout: Duration::from_millis(args.timeout_ms),
        max_body: args.max_response_bytes,
    })
}

fn requirement(target: &Target, method: Method) -> Result<Requirement, ToolError> {
    let mut req = Requirement::new(Http::NAME, target.resource())?
        .with_attr("method", method.as_str())
        .with_attr("scheme", target.scheme.as_str());
    if let Host::Ip(ip) = target.host
        && let Some(class) = addr::classify(ip)
    {
        req = req.with_attr("address_class", class);
    }
    Ok(req)
}

impl TypedTool for Http {
    type Args = HttpArgs;
    type Output = HttpOutput;
    const NAME: &'static str = "net.http";
    const DESCRIPTION: &'static str = "Sends one HTTP or HTTPS request and returns the response (status, headers, body up to a limit), following up to 5 redirects, each one decided again. Loopback and private addresses only when the URL names them literally.";
    const RISK: Risk = Risk::Irreversible;

    fn timeout(&self) -> Duration {
        Duration::from_millis(MAX_TIMEOUT_MS + 5_000)
    }

    fn max_output_bytes(&self) -> usize {
        // Base64 of the largest body, with room for headers and JSON escapes.
        48 << 20
    }

    fn requirements(&self, args: &HttpArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        let prepared = prepare(args)?;
        Ok(vec![requirement(&prepared.target, args.method)?])
    }

    fn run(&self, cx: &CallContext<'_>, args: HttpArgs) -> Result<Ran<HttpOutput>, ToolError> {
        let started = Instant::now();
        let prepared = prepare(&args)?;
        let deadline = (started + prepared.timeout).min(cx.deadline);
        let origin = prepared.target.clone();
        let mut hop = Hop {
            target: prepared.target,
            method: args.method,
            headers: prepared.headers,
            body: prepared.body,
        };
        // What the broker has allowed in this call: (resource, scheme, method).
        let mut allowed = vec![decided_key(&hop.target, hop.method)];
        let mut redirects = Vec::new();
        let mut pending: Option<(Recorded, ActionRequest)> = None;
        loop {
            let sent = send(&hop, deadline);
            if let Some((recorded, request)) = pending.take() {
                let outcome = match &sent {
                    Ok(resp) => format!("ok: {}", resp.status().as_u16()),
                    Err(e) => format!("error: {e}"),
                };
                cx.kernel
                    .outcome(&recorded, &request, &outcome)
                    .map_err(|e| ToolError::Internal(e.to_string()))?;
            }
            let mut response = sent?;
            let status = response.status().as_u16();
            tracing::debug!(method = hop.method.as_str(), url = %hop.target.url(), status, "net.http");
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let (true, true, Some(location)) =
                (args.follow_redirects, is_redirect(status), location)
            {
                if redirects.len() >= MAX_REDIRECTS {
                    return Err(ToolError::Failed(format!(
                        "{} redirected more than {MAX_REDIRECTS} times; the last hop was {}",
                        origin.url(),
                        hop.target.url()
                    )));
                }
                let next = hop.target.join(&location).map_err(|e| {
                    ToolError::Failed(format!(
                        "{} redirected to {location:?}, which is refused: {e}",
                        hop.target.url()
                    ))
                })?;
                let from = hop.target.url();
                hop = hop.redirect(next, status, &origin);
                redirects.push(hop.target.url());
                let key = decided_key(&hop.target, hop.method);
                if !allowed.contains(&key) {
                    pending = Some(decide_hop(cx, &hop, &from)?);
                    allowed.push(key);
                }
                continue;
            }
            let headers = response_headers(response.headers());
            let (body, body_base64, truncated) = if hop.method == Method::Head {
                (String::new(), false, false)
            } else {
                read_body(&mut response, prepared.max_body, &hop.target)?
            };
            return Ok(Ran::output(HttpOutput {
                status,
                headers,
                body,
                body_base64,
                truncated,
                final_url: hop.target.url(),
                redirects,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }));
        }
    }
}

/// One request on the way: where, how, with what.
struct Hop {
    target: Target,
    method: Method,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Option<Vec<u8>>,
}

impl Hop {
    /// The request a redirect with `status` to `next` asks for (RFC 9110, section 15.4):
    /// 303 turns anything but HEAD into a body-less GET, and so do 301 and 302 for POST, as
    /// every client does; 307 and 308 keep the method and body.
    fn redirect(mut self, next: Target, status: u16, origin: &Target) -> Hop {
        let to_get = match status {
            303 => self.method != Method::Head,
            301 | 302 => self.method == Method::Post,
            _ => false,
        };
        if to_get {
            self.method = Method::Get;
            self.body = None;
            self.headers
                .retain(|(name, _)| !matches!(name.as_str(), "content-type" | "content-encoding"));
        }
        if !origin.same_origin(&next) {
            self.headers
                .retain(|(name, _)| !CREDENTIAL_HEADERS.contains(&name.as_str()));
        }
        self.target = next;
        self
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn decided_key(target: &Target, method: Method) -> (String, &'static str, &'static str) {
    (target.resource(), target.scheme.as_str(), method.as_str())
}

/// Puts a redirect hop to the broker, as its own audited decision; anything but *allow*
/// ends the call with the reason.
fn decide_hop(
    cx: &CallContext<'_>,
    hop: &Hop,
    from: &str,
) -> Result<(Recorded, ActionRequest), ToolError> {
    let req = requirement(&hop.target, hop.method)?;
    let action = Subject::new(Http::NAME).map_err(ToolError::internal)?;
    let mut request = ActionRequest::new(
        cx.principal.clone(),
        action,
        req.resource.clone(),
        cx.intent,
        cx.intent_source.clone(),
    )
    .with_attr("tool", Http::NAME.into())
    .with_attr("risk", Http::RISK.as_str().into())
    .with_attr("redirected_from", from.into());
    for (k, v) in req.attrs {
        request = request.with_attr(k, v);
    }
    if let Some(plan) = cx.plan_id {
        request = request.with_plan(plan);
    }
    let digest_args = serde_json::json!({
        "method": hop.method.as_str(),
        "url": hop.target.url(),
        "redirected_from": from,
        "action_id": cx.action_id,
    });
    let recorded = cx
        .kernel
        .decide(&request, &digest_args)
        .map_err(|e| ToolError::Internal(e.to_string()))?;
    let url = hop.target.url();
    match recorded.decision.outcome {
        Outcome::Allow => Ok((recorded, request)),
        Outcome::Deny => Err(ToolError::Failed(format!(
            "{from} redirected to {url}, and net.http on {} was denied (audit entry {}): {}; a grant on {} would allow following it",
            req.resource, recorded.seq, recorded.decision.reason, req.resource
        ))),
        Outcome::Ask => {
            let id = recorded.consent.as_ref().map_or("?", |c| c.id.as_str());
            Err(ToolError::Failed(format!(
                "{from} redirected to {url}; net.http on {} needs the owner's approval first (consent request {id}): `gyrus approve {id}`, then call again",
                req.resource
            )))
        }
    }
}

/// A resolver that answers with the addresses it was given, whatever it is asked: the
/// addresses `net.http` checked are the only ones ureq can connect to.
#[derive(Debug)]
struct Pinned(Vec<SocketAddr>);

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for addr in self.0.iter().take(16) {
            out.push(*addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// The addresses `target` may be reached at, checked against the special-address rule.
fn resolve_checked(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, ToolError> {
    let port = target.port;
    let name = match &target.host {
        Host::Ip(ip) => {
            if let Some(class) = addr::classify(*ip)
                && addr::never_connectable(class)
            {
                return Err(ToolError::Failed(format!(
                    "{} is a {class} address; nothing can be reached there over HTTP{}",
                    target.host,
                    if class == "unspecified" {
                        " (for this machine, use 127.0.0.1 or [::1])"
                    } else {
                        ""
                    }
                )));
            }
            // Named literally: the grant the broker checked names exactly this address.
            return Ok(vec![SocketAddr::new(*ip, port)]);
        }
        Host::Name(name) => name,
    };
    if addr::is_localhost(name) {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    if addr::is_metadata_name(name) {
        return Err(ToolError::Failed(format!(
            "{name} is a cloud metadata service and is refused by name; to reach one, write its address in the URL (http://169.254.169.254/) and grant net.http on host:169.254.169.254:80"
        )));
    }
    let addrs = lookup(name, port, deadline)?;
    if addrs.is_empty() {
        return Err(ToolError::Failed(format!(
            "{name} does not resolve to any address"
        )));
    }
    for a in &addrs {
        if let Some(class) = addr::classify(a.ip()) {
            let literal = Target {
                host: Host::Ip(a.ip()),
                ..target.clone()
            };
            return Err(ToolError::Failed(format!(
                "{name} resolves to a {class} address ({}); gyrus reaches such addresses only when the URL names them literally ({}) and a grant covers {}",
                a.ip(),
                literal.url(),
                literal.resource()
            )));
        }
    }
    Ok(addrs)
}

/// DNS through the system resolver, bounded by `deadline` (the lookup thread is left to
/// finish on its own if it hangs).
fn lookup(name: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, ToolError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let host = name.to_string();
    std::thread::Builder::new()
        .name("net.http-dns".into())
        .spawn(move || {
            let _ = tx.send(
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>()),
            );
        })
        .map_err(|e| ToolError::Internal(format!("cannot start a DNS lookup: {e}")))?;
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(ToolError::Failed(format!("cannot resolve {name}: {e}"))),
        Err(_) => Err(ToolError::Timeout(millis(wait))),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn send(hop: &Hop, deadline: Instant) -> Result<http::Response<ureq::Body>, ToolError> {
    let url = hop.target.url();
    let addrs = resolve_checked(&hop.target, deadline)?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ToolError::Timeout(0));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .save_redirect_history(false)
        .proxy(None)
        .timeout_global(Some(remaining))
        .user_agent(concat!("gyrus/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(0)
        .build();
    let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), Pinned(addrs));
    let mut builder = http::Request::builder()
        .method(hop.method.as_str())
        .uri(url.as_str());
    for (name, value) in &hop.headers {
        builder = builder.header(name, value);
    }
    let sent = match &hop.body {
        Some(body) => builder.body(body.clone()).map(|req| agent.run(req)),
        None => builder.body(()).map(|req| agent.run(req)),
    };
    let sent =
        sent.map_err(|e| ToolError::Failed(format!("cannot build the request to {url}: {e}")))?;
    sent.map_err(|e| match e {
        ureq::Error::Timeout(_) => ToolError::Timeout(millis(remaining)),
        ureq::Error::Io(io) => ToolError::Failed(format!("request to {url} failed: {io}")),
        ureq::Error::ConnectionFailed => ToolError::Failed(format!("could not connect to {url}")),
        other => ToolError::Failed(format!("request to {url} failed: {other}")),
    })
}

fn response_headers(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        out.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// Reads at most `max` bytes of the body: the text (or base64), whether it is base64, and
/// whether it was cut.
fn read_body(
    response: &mut http::Response<ureq::Body>,
    max: u64,
    target: &Target,
) -> Result<(String, bool, bool), ToolError> {
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                ToolError::Timeout(0)
            } else {
                ToolError::Failed(format!(
                    "reading the body from {} failed: {e}",
                    target.url()
                ))
            }
        })?;
    let truncated = bytes.len() as u64 > max;
    if truncated {
        bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    Ok(encode_body(bytes, truncated))
}

/// The body as text when it is UTF-8 (a character cut in half at the limit is dropped), as
/// base64 otherwise.
fn encode_body(bytes: Vec<u8>, truncated: bool) -> (String, bool, bool) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, false, truncated),
        Err(e) => {
            let err = e.utf8_error();
            let bytes = e.into_bytes();
            if truncated && err.error_len().is_none() {
                let valid = String::from_utf8_lossy(&bytes[..err.valid_up_to()]).into_owned();
                (valid, false, truncated)
            } else {
                (
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                    true,
                    truncated,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> HttpArgs {
        serde_json::from_value(serde_json::json!({ "url": url })).unwrap()
    }

    #[test]
    fn defaults_and_requirements() {
        let a = args("http://Example.com:8080/x");
        assert_eq!(a.method, Method::Get);
        assert!(a.follow_redirects);
        assert_eq!(a.timeout_ms, DEFAULT_TIMEOUT_MS);
        let req = requirement(&prepare(&a).unwrap().target, a.method).unwrap();
        assert_eq!(req.action.as_str(), "net.http");
        assert_eq!(req.resource, "host:example.com:8080");
        assert_eq!(req.attrs["method"], "GET");
        assert_eq!(req.attrs["scheme"], "http");
        assert!(!req.attrs.contains_key("address_class"));
        let lo = args("http://127.0.0.1:9/");
        let req = requirement(&prepare(&lo).unwrap().target, lo.method).unwrap();
        assert_eq!(req.attrs["address_class"], "loopback");
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_decided() {
        let bad = [
            (
                serde_json::json!({"url": "http://a.example/", "headers": {"Host": "b.example"}}),
                "set by the tool",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "headers": {"bad name": "x"}}),
                "not a valid HTTP header name",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "headers": {"x-token": "a\nb"}}),
                "control characters",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "body": "x", "body_base64": "eA=="}),
                "not both",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "body_base64": "***"}),
                "not base64",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "timeout_ms": 0}),
                "timeout_ms",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "max_response_bytes": 1u64 << 40}),
                "max_response_bytes",
            ),
            (
                serde_json::json!({"url": "http://a.example/", "method": "HEAD", "body": "x"}),
                "HEAD",
            ),
            (
                serde_json::json!({"url": "gopher://a.example/"}),
                "only http and https",
            ),
        ];
        for (value, why) in bad {
            let a: HttpArgs = serde_json::from_value(value.clone()).unwrap();
            let err = prepare(&a).err().unwrap().to_string();
            assert!(err.contains(why), "{value}: {err}");
            // A secret in a header value is never echoed.
            assert!(!err.contains("a\nb"));
        }
        assert!(
            serde_json::from_value::<HttpArgs>(serde_json::json!({"url": "x", "nope": 1})).is_err()
        );
        assert!(
            serde_json::from_value::<HttpArgs>(serde_json::json!({"url": "x", "method": "TRACE"}))
                .is_err()
        );
    }

    #[test]
    fn literal_special_addresses_are_used_as_they_are_and_names_never_reach_them() {
        let far = Instant::now() + Duration::from_secs(5);
        let lo = Target::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            resolve_checked(&lo, far).unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        let v6 = Target::parse("http://[::1]:8080/").unwrap();
        assert_eq!(
            resolve_checked(&v6, far).unwrap(),
            vec!["[::1]:8080".parse().unwrap()]
        );
        let localhost = Target::parse("http://localhost:8080/").unwrap();
        let addrs = resolve_checked(&localhost, far).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        for (url, why) in [
            ("http://0.0.0.0:8080/", "unspecified"),
            ("http://[::]:8080/", "unspecified"),
            ("http://255.255.255.255/", "broadcast"),
            ("http://224.0.0.1/", "multicast"),
            ("http://metadata.google.internal/", "metadata service"),
        ] {
            let t = Target::parse(url).unwrap();
            let err = resolve_checked(&t, far).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn redirects_change_method_and_drop_credentials_off_origin() {
        let origin = Target::parse("http://a.example/").unwrap();
        let hop = |method| Hop {
            target: origin.clone(),
            method,
            headers: vec![
                (
                    http::header::AUTHORIZATION,
                    http::HeaderValue::from_static("Bearer s"),
                ),
                (http::header::COOKIE, http::HeaderValue::from_static("c=1")),
                (
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                ),
            ],
            body: Some(b"x".to_vec()),
        };
        let names = |h: &Hop| {
            h.headers
                .iter()
                .map(|(n, _)| n.as_str().to_string())
                .collect::<Vec<_>>()
        };
        let same = Target::parse("http://a.example/next").unwrap();
        let other = Target::parse("http://b.example/next").unwrap();

        let h = hop(Method::Post).redirect(same.clone(), 307, &origin);
        assert_eq!((h.method, h.body.is_some()), (Method::Post, true));
        assert_eq!(names(&h), ["authorization", "cookie", "content-type"]);

        let h = hop(Method::Post).redirect(same.clone(), 302, &origin);
        assert_eq!((h.method, h.body.is_some()), (Method::Get, false));
        assert_eq!(names(&h), ["authorization", "cookie"]);

        let h = hop(Method::Put).redirect(other.clone(), 303, &origin);
        assert_eq!(h.method, Method::Get);
        assert!(names(&h).is_empty());

        let h = hop(Method::Head).redirect(other.clone(), 303, &origin);
        assert_eq!(h.method, Method::Head);

        // Back on the origin after leaving it: the credentials stay dropped.
        let h = hop(Method::Get)
            .redirect(other, 302, &origin)
            .redirect(same, 302, &origin);
        assert_eq!(names(&h), ["content-type"]);
    }

    #[test]
    fn bodies_are_text_when_they_can_be() {
        assert_eq!(
            encode_body(b"hello".to_vec(), false),
            ("hello".into(), false, false)
        );
        assert_eq!(
            encode_body(vec![0xff, 0x00], false),
            ("/wA=".into(), true, false)
        );
        // "é" is two bytes; cut after the first, the half character is dropped.
        assert_eq!(
            encode_body(vec![b'a', 0xc3], true),
            ("a".into(), false, true)
        );
        assert_eq!(
            encode_body(vec![b'a', 0xc3], false),
            ("YcM=".into(), true, false)
        );
    }
}
