//! `net.http` through the one call path, on a real kernel (SQLite audit trail, grants, Cedar
//! broker) in a temporary home, against real HTTP servers on 127.0.0.1: refused without a
//! grant naming the address, allowed with one, and redirects that try to leave the grant
//! refused with the reason. Loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use gyrus_audit::{Decision, EntryKind};
use gyrus_home::Home;
use gyrus_kernel::Kernel;
use gyrus_policy::{IntentSource, NewGrant, Outcome, Principal};
use gyrus_tools::{CallResult, ToolCall, ToolEnv, Tools};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    kernel: Kernel,
    tools: Tools,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let kernel = Kernel::open(&home, "http://127.0.0.1:1".into()).unwrap();
    let mut tools = Tools::new(ToolEnv::new(home)).unwrap();
    gyrus_tools::net::register(&mut tools);
    World {
        _dir: dir,
        kernel,
        tools,
    }
}

/// A device with a token: not the owner, so only grants allow it anything.
fn device() -> Principal {
    Principal::Token {
        id: "tok_net".into(),
        name: "laptop".into(),
    }
}

impl World {
    fn grant(&self, resource: &str) {
        self.kernel
            .broker()
            .grants()
            .add(
                NewGrant {
                    principal: device().id(),
                    actions: vec!["net.http".into()],
                    resources: vec![gyrus_policy::escape_resource(resource)],
                    granted_by: "owner".into(),
                    ..NewGrant::default()
                },
                SystemTime::now(),
            )
            .unwrap();
    }

    fn call(&self, args: Value) -> CallResult {
        self.tools
            .call(
                &self.kernel,
                &ToolCall {
                    principal: device(),
                    tool: "net.http".into(),
                    args,
                    intent: "fetch the status page".into(),
                    intent_source: IntentSource::Untrusted("test".into()),
                    plan_id: None,
                },
            )
            .unwrap()
    }

    /// Every audit entry, oldest first.
    fn audit(&self) -> Vec<gyrus_audit::Entry> {
        self.kernel.audit().tail(1000).unwrap()
    }
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with `respond` and keeps what
/// it saw.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(respond: impl Fn(&Seen) -> String + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let req = Seen {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let response = respond(&req);
                log.lock().unwrap().push(req);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Server { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn resource(&self) -> String {
        format!("host:127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-served-by: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn redirect(status: u16, location: &str) -> String {
    format!(
        "HTTP/1.1 {status} Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

fn error_message(r: &CallResult) -> String {
    r.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn refused_without_a_grant_naming_the_address() {
    let w = world();
    let server = Server::start(|_| ok("secret"));
    let r = w.call(json!({"url": server.url("/")}));
    assert_eq!(r.decision.outcome, Outcome::Deny);
    assert_eq!(r.error.as_ref().unwrap().code, "denied");
    assert!(r.output.is_none());
    // The refusal is in the audit trail, naming the address and port.
    let entry = w.kernel.audit().get(r.decision.seq).unwrap().unwrap();
    assert_eq!(entry.record.kind, EntryKind::Decision);
    assert_eq!(entry.record.decision, Some(Decision::Deny));
    assert_eq!(entry.record.action, "net.http");
    assert_eq!(entry.record.resource, server.resource());
    assert_eq!(entry.record.principal, "token:tok_net");
    // Nothing was sent.
    assert!(server.seen().is_empty());

    // A grant on another port of the same address does not cover it either.
    w.grant(&format!(
        "host:127.0.0.1:{}",
        server.port.wrapping_add(1).max(1)
    ));
    let r = w.call(json!({"url": server.url("/")}));
    assert_eq!(r.decision.outcome, Outcome::Deny);
    assert!(server.seen().is_empty());
}

#[test]
fn allowed_with_a_grant_and_the_response_comes_back() {
    let w = world();
    let server = Server::start(|req| match req.path.as_str() {
        "/echo" => ok(&format!("{} {}", req.method, req.body)),
        _ => ok("hello, world"),
    });
    w.grant(&server.resource());

    let r = w.call(json!({
        "url": server.url("/status?x=1"),
        "headers": {"X-Test": "yes", "Authorization": "Bearer t0ken"},
    }));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.decision.outcome, Outcome::Allow);
    let out = r.output.as_ref().unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello, world");
    assert_eq!(out["body_base64"], false);
    assert_eq!(out["truncated"], false);
    assert_eq!(out["headers"]["x-served-by"], json!(["test"]));
    assert_eq!(out["final_url"], server.url("/status?x=1"));
    assert_eq!(out["redirects"], json!([]));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/status?x=1");
    assert_eq!(seen[0].headers["x-test"], "yes");
    assert_eq!(seen[0].headers["authorization"], "Bearer t0ken");

    // Decision, then outcome, under one request id; no header value in the trail.
    let trail: Vec<_> = w
        .audit()
        .into_iter()
        .filter(|e| e.record.request_id == r.action_id)
        .collect();
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0].record.decision, Some(Decision::Allow));
    assert_eq!(trail[1].record.outcome.as_deref(), Some("ok"));
    let text = serde_json::to_string(
        &w.audit()
            .iter()
            .map(|e| &e.record.reason)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!text.contains("t0ken"));

    // A body goes out, and a long response is cut at the limit.
    let r = w.call(json!({"method": "POST", "url": server.url("/echo"), "body": "ping"}));
    assert_eq!(r.output.unwrap()["body"], "POST ping");
    let r = w.call(json!({"url": server.url("/"), "max_response_bytes": 5}));
    let out = r.output.unwrap();
    assert_eq!(out["body"], "hello");
    assert_eq!(out["truncated"], true);
}

#[test]
fn a_redirect_to_a_metadata_address_is_refused() {
    let w = world();
    let server = Server::start(|_| redirect(302, "http://169.254.169.254/latest/meta-data/"));
    w.grant(&server.resource());
    let r = w.call(json!({"url": server.url("/")}));
    assert_eq!(
        r.decision.outcome,
        Outcome::Allow,
        "the first hop was allowed"
    );
    let err = r.error.as_ref().unwrap();
    assert_eq!(err.code, "failed");
    assert!(
        err.message
            .contains("redirected to http://169.254.169.254/latest/meta-data/"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("host:169.254.169.254:80 was denied"),
        "{}",
        err.message
    );
    // The refused hop has its own decision entry, for the same principal.
    let denied = w
        .audit()
        .into_iter()
        .find(|e| e.record.resource == "host:169.254.169.254:80")
        .unwrap();
    assert_eq!(denied.record.decision, Some(Decision::Deny));
    assert_eq!(denied.record.principal, "token:tok_net");
    // And the call's own outcome says why it failed.
    let outcome = w
        .audit()
        .into_iter()
        .find(|e| e.record.request_id == r.action_id && e.record.kind == EntryKind::Outcome)
        .unwrap();
    assert!(outcome.record.outcome.unwrap().contains("169.254.169.254"));
}

#[test]
fn a_redirect_to_a_port_the_grant_does_not_name_is_refused() {
    let w = world();
    let other = Server::start(|_| ok("should not be reached"));
    let target = other.url("/inner");
    let server = Server::start(move |_| redirect(307, &target));
    w.grant(&server.resource());
    let r = w.call(json!({"url": server.url("/")}));
    let message = error_message(&r);
    assert!(
        message.contains(&format!("net.http on {} was denied", other.resource())),
        "{message}"
    );
    assert!(message.contains("a grant on"), "{message}");
    assert!(other.seen().is_empty(), "the refused hop sent nothing");
}

#[test]
fn a_redirect_to_a_granted_host_is_followed_without_credentials() {
    let w = world();
    let other = Server::start(|req| ok(&format!("{} at b", req.method)));
    let target = other.url("/b");
    let server = Server::start(move |req| match req.path.as_str() {
        "/same" => redirect(302, "/there"),
        "/there" => ok("same origin"),
        _ => redirect(303, &target),
    });
    w.grant(&server.resource());
    w.grant(&other.resource());

    let r = w.call(json!({
        "method": "POST",
        "url": server.url("/start"),
        "body": "form",
        "headers": {"Authorization": "Bearer s3cret", "Cookie": "session=1", "X-Keep": "1"},
    }));
    assert!(r.is_ok(), "{r:?}");
    let out = r.output.unwrap();
    assert_eq!(out["body"], "GET at b", "303 turns POST into GET");
    assert_eq!(out["redirects"], json!([other.url("/b")]));
    assert_eq!(out["final_url"], other.url("/b"));
    let at_b = &other.seen()[0];
    assert!(!at_b.headers.contains_key("authorization"), "{at_b:?}");
    assert!(!at_b.headers.contains_key("cookie"));
    assert_eq!(at_b.headers["x-keep"], "1");
    assert_eq!(at_b.body, "");
    // The hop to the other host was decided (allowed) and has its outcome.
    let hop: Vec<_> = w
        .audit()
        .into_iter()
        .filter(|e| e.record.resource == other.resource())
        .collect();
    assert_eq!(hop.len(), 2, "{hop:?}");
    assert_eq!(hop[0].record.decision, Some(Decision::Allow));
    assert_eq!(hop[1].record.outcome.as_deref(), Some("ok: 200"));

    // Within one origin, credentials stay.
    let r =
        w.call(json!({"url": server.url("/same"), "headers": {"Authorization": "Bearer s3cret"}}));
    assert_eq!(r.output.unwrap()["body"], "same origin");
    let last = server.seen().last().cloned().unwrap();
    assert_eq!(last.path, "/there");
    assert_eq!(last.headers["authorization"], "Bearer s3cret");
}

#[test]
fn redirects_are_bounded_and_not_followed_when_asked() {
    let w = world();
    let server = Server::start(|_| redirect(302, "/again"));
    w.grant(&server.resource());
    let r = w.call(json!({"url": server.url("/")}));
    assert!(error_message(&r).contains("more than 5 times"), "{r:?}");
    assert_eq!(server.seen().len(), 6);

    let r = w.call(json!({"url": server.url("/"), "follow_redirects": false}));
    let out = r.output.unwrap();
    assert_eq!(out["status"], 302);
    assert_eq!(out["headers"]["location"], json!(["/again"]));

    let ftp = Server::start(|_| redirect(301, "ftp://127.0.0.1/file"));
    w.grant(&ftp.resource());
    let r = w.call(json!({"url": ftp.url("/")}));
    assert!(error_message(&r).contains("only http and https"), "{r:?}");
}

#[test]
fn localhost_needs_a_grant_on_localhost() {
    let w = world();
    let server = Server::start(|_| ok("local"));
    let url = format!("http://localhost:{}/", server.port);
    // A grant on 127.0.0.1 does not name localhost: the grant must say what the URL says.
    w.grant(&server.resource());
    let r = w.call(json!({"url": url}));
    assert_eq!(r.decision.outcome, Outcome::Deny);
    w.grant(&format!("host:localhost:{}", server.port));
    let r = w.call(json!({"url": url}));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.output.unwrap()["body"], "local");
}

#[test]
fn bad_arguments_fail_before_any_decision() {
    let w = world();
    let before = w.audit().len();
    let err = w
        .tools
        .call(
            &w.kernel,
            &ToolCall {
                principal: device(),
                tool: "net.http".into(),
                args: json!({"url": "file:///etc/passwd"}),
                intent: "x".into(),
                intent_source: IntentSource::Untrusted("test".into()),
                plan_id: None,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("url:"), "{err}");
    assert_eq!(w.audit().len(), before);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let w = world();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold the connection without answering.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(10));
        drop(held);
    });
    w.grant(&format!("host:127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let r = w.call(json!({"url": format!("http://127.0.0.1:{port}/"), "timeout_ms": 300}));
    assert_eq!(r.error.as_ref().unwrap().code, "timeout", "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn https_goes_through_rustls() {
    // A plain-HTTP server: the TLS handshake fails, as an error that says so, not a panic.
    let w = world();
    let server = Server::start(|_| ok("not tls"));
    w.grant(&server.resource());
    let r =
        w.call(json!({"url": format!("https://127.0.0.1:{}/", server.port), "timeout_ms": 5000}));
    let err = r.error.as_ref().unwrap();
    assert_eq!(err.code, "failed", "{r:?}");
    assert!(err.message.contains("https://127.0.0.1"), "{}", err.message);
}

/// A name other than `localhost` that this machine's `/etc/hosts` maps to a loopback
/// address (Debian and most containers list the host name there), if there is one.
fn name_resolving_to_loopback() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut fields = line.split_whitespace();
        let ip: std::net::IpAddr = fields.next()?.parse().ok()?;
        if !ip.is_loopback() {
            return None;
        }
        fields
            .find(|n| {
                let n = n.to_ascii_lowercase();
                n != "localhost"
                    && !n.ends_with(".localhost")
                    && n.contains(|c: char| c.is_ascii_alphabetic())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .map(str::to_string)
    })
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_even_with_a_grant_on_it() {
    let Some(name) = name_resolving_to_loopback() else {
        // Nothing in /etc/hosts to try; the rule is still covered by the unit tests of
        // net::addr and by the metadata and localhost tests above.
        return;
    };
    let w = world();
    let server = Server::start(|_| ok("loopback"));
    w.grant(&format!(
        "host:{}:{}",
        name.to_ascii_lowercase(),
        server.port
    ));
    let r = w.call(json!({"url": format!("http://{name}:{}/", server.port)}));
    assert_eq!(
        r.decision.outcome,
        Outcome::Allow,
        "the name itself was granted"
    );
    let message = error_message(&r);
    assert!(
        message.contains("resolves to a loopback address"),
        "{message}"
    );
    assert!(
        message.contains("host:127."),
        "it says which grant would do: {message}"
    );
    assert!(server.seen().is_empty(), "nothing reached the server");
}
