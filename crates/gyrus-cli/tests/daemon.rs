//! End-to-end: the real daemon on a temporary home and port, driven over TCP, its Unix socket
//! and the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustix::process::Signal;
use support::{Daemon, gyrus};

/// Small limits so the tests can cross them.
const TIGHT: &str = r#"
[api]
body_limit_bytes = 1024

[api.rate_limit]
per_second = 1
burst = 5
"#;

#[test]
fn healthz_is_public_and_status_needs_a_valid_unrevoked_token() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);

    let health = daemon.get("/healthz", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let none = daemon.get("/api/v1/status", None);
    assert_eq!((none.status, none.code()), (401, "unauthorized".into()));
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = daemon.get("/api/v1/status", Some("gyrus_0000"));
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized".into()));
    let basic = daemon.tcp(
        "GET /api/v1/status HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz",
        b"",
    );
    assert_eq!(basic.status, 401);

    let token = daemon.create_token("laptop");
    let ok = daemon.get("/api/v1/status", Some(&token));
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["pid"], daemon.pid());

    let out = daemon.cli(&["token", "revoke", "laptop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = daemon.get("/api/v1/status", Some(&token));
    assert_eq!(revoked.status, 401);
    assert!(
        revoked.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[test]
fn bodies_over_the_limit_get_413_also_when_chunked() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), Some(TIGHT), &[]);
    let token = daemon.create_token("t");
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(1024));
    assert_eq!(big.len(), 1024 + 11);
    let exactly = format!("{{\"name\":\"{}\"}}", "a".repeat(1024 - 11));
    assert_eq!(exactly.len(), 1024);

    // Declared length, over TCP with a token: refused before any handler runs.
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
        1025
    );
    let r = daemon.tcp(&head, &big.as_bytes()[..1025]);
    assert_eq!((r.status, r.code()), (413, "payload_too_large".into()));

    // Same over the socket, as the owner.
    let r = daemon.unix(
        "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1025",
        &big.as_bytes()[..1025],
    );
    assert_eq!((r.status, r.code()), (413, "payload_too_large".into()));

    // Chunked: the size is only known while reading.
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let r = daemon.unix(
        "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        chunked.as_bytes(),
    );
    assert_eq!((r.status, r.code()), (413, "payload_too_large".into()));

    // At the limit exactly, the body is read (and the name rejected for its length).
    let r = daemon.unix(
        "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1024",
        exactly.as_bytes(),
    );
    assert_eq!((r.status, r.code()), (400, "invalid_body".into()));
}

#[test]
fn bad_json_gets_400_with_a_reason() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let post = |body: &str, content_type: &str| {
        daemon.unix(
            &format!(
                "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
                body.len()
            ),
            body.as_bytes(),
        )
    };
    let r = post("{\"name\": ", "application/json");
    assert_eq!((r.status, r.code()), (400, "malformed_json".into()));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );

    let r = post("{\"name\": \"x\", \"nmae\": \"y\"}", "application/json");
    assert_eq!((r.status, r.code()), (400, "invalid_body".into()));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nmae`")
    );

    let r = post(
        "{\"name\": \"x\", \"expires\": \"soon\"}",
        "application/json",
    );
    assert_eq!((r.status, r.code()), (400, "invalid_body".into()));

    let r = post("name=x", "application/x-www-form-urlencoded");
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type".into()));

    let r = post("{\"name\": \"ok\"}", "application/json");
    assert_eq!(r.status, 201);
    assert!(r.json()["secret"].as_str().unwrap().starts_with("gyrus_"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn foreign_host_and_origin_headers_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let port = daemon.addr.port();

    let r = daemon.tcp(
        &format!("GET /healthz HTTP/1.1\r\nHost: rebind.attacker.example:{port}"),
        b"",
    );
    assert_eq!((r.status, r.code()), (403, "host_not_allowed".into()));
    let r = daemon.tcp(
        &format!("GET /healthz HTTP/1.1\r\nHost: localhost:{port}"),
        b"",
    );
    assert_eq!(r.status, 200);
    let r = daemon.tcp(
        &format!(
            "GET /healthz HTTP/1.1\r\nOrigin: http://attacker.example\r\nHost: 127.0.0.1:{port}"
        ),
        b"",
    );
    assert_eq!((r.status, r.code()), (403, "origin_not_allowed".into()));
    let r = daemon.tcp(
        &format!(
            "GET /healthz HTTP/1.1\r\nOrigin: http://127.0.0.1:{port}\r\nHost: 127.0.0.1:{port}"
        ),
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_burst_over_the_rate_limit_gets_429() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), Some(TIGHT), &[]);
    let token = daemon.create_token("t");
    // The bucket holds 5 and refills at 1/s: the first 5 pass, and 50 requests cannot all
    // pass unless each took a second.
    let statuses: Vec<u16> = (0..50)
        .map(|_| daemon.get("/api/v1/status", Some(&token)).status)
        .collect();
    assert!(statuses[..5].iter().all(|&s| s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = daemon.get("/api/v1/status", Some(&token));
    assert_eq!(
        (limited.status, limited.code()),
        (429, "rate_limited".into())
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Unauthenticated guessing is limited per address, too.
    let guesses: Vec<u16> = (0..50)
        .map(|_| daemon.get("/api/v1/status", Some("gyrus_x")).status)
        .collect();
    assert!(guesses.contains(&429), "{guesses:?}");
}

#[test]
fn status_json_over_the_socket_describes_the_daemon() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let out = daemon.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pid"], daemon.pid());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["home"], home.path().display().to_string());
    assert_eq!(v["listen"], daemon.addr.to_string());
    let layers: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["core", "user", "memory", "runtime"]);
    let user = &v["layers"][1];
    assert!(
        user["bytes"].as_u64().unwrap() > 0,
        "user/gyrus.toml counts: {user}"
    );
    let parts: Vec<&str> = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert!(
        !parts.is_empty() && parts.iter().all(|s| *s == "running" || *s == "ready"),
        "{parts:?}"
    );

    // The layers exist with mode 0700, the socket with 0600.
    use std::os::unix::fs::PermissionsExt;
    for layer in layers {
        let mode = std::fs::metadata(home.path().join(layer))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{layer}");
    }
    let mode = std::fs::metadata(home.path().join("runtime/gyrus.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The human rendering names the same things.
    let out = daemon.cli(&["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("pid {}", daemon.pid())), "{text}");
    assert!(text.contains("memory"), "{text}");
}

#[test]
fn one_daemon_per_home() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let out = gyrus(home.path())
        .args(["up", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("already running (pid {})", daemon.pid())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The refused start touched nothing: the first daemon still serves.
    assert_eq!(daemon.get("/healthz", None).status, 200);
}

#[test]
fn a_start_after_kill_9_works() {
    let home = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(home.path(), None, &[]);
    let token = first.create_token("survivor");
    first.signal(Signal::KILL);
    first.wait();
    // kill -9 left the pid file and the socket behind.
    assert!(home.path().join("runtime/gyrus.pid").exists());
    assert!(home.path().join("runtime/gyrus.sock").exists());
    let out = first.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    let second = Daemon::start(home.path(), None, &[]);
    assert_ne!(second.pid(), first.pid());
    assert_eq!(
        second.get("/api/v1/status", Some(&token)).status,
        200,
        "the acknowledged token survived"
    );
    assert!(second.cli(&["status"]).status.success());
}

#[test]
fn sigterm_exits_0_and_cleans_up() {
    let home = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(home.path(), None, &[]);
    daemon.signal(Signal::TERM);
    let status = daemon.wait();
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    for file in ["gyrus.sock", "gyrus.pid", "listen"] {
        assert!(
            !home.path().join("runtime").join(file).exists(),
            "{file} left behind"
        );
    }
    assert!(
        home.path().join("user/gyrus.toml").exists(),
        "state layers stay"
    );
}

#[test]
fn sigint_exits_0_too() {
    let home = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(home.path(), None, &[]);
    daemon.signal(Signal::INT);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.output());
    assert!(!home.path().join("runtime/gyrus.sock").exists());
}

#[test]
fn clients_without_a_daemon_say_so_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["status"][..],
        &["token", "list"],
        &["token", "create", "x"],
    ] {
        let out = gyrus(home.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("not running") && stderr.contains("gyrus up"),
            "{stderr}"
        );
    }
}

#[test]
fn a_thin_client_uses_gyrus_url_and_token() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    let token = daemon.create_token("phone");
    let elsewhere = tempfile::tempdir().unwrap();
    let url = format!("http://{}", daemon.addr);
    let remote = |token: &str, args: &[&str]| {
        gyrus(elsewhere.path())
            .env("GYRUS_URL", &url)
            .env("GYRUS_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&token, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pid"], daemon.pid());

    let out = remote("gyrus_bogus", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid token"));

    // A token can neither mint tokens nor see the others.
    for args in [
        &["token", "create", "more"][..],
        &["token", "list"],
        &["token", "revoke", "phone"],
    ] {
        let out = remote(&token, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only the owner"),
            "{args:?}"
        );
    }

    let out = gyrus(elsewhere.path())
        .env("GYRUS_URL", &url)
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GYRUS_TOKEN"));
}

#[test]
fn no_secret_reaches_the_log() {
    let home = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(home.path(), None, &[("GYRUS_LOG", "trace")]);
    let token = daemon.create_token("secretive");
    assert_eq!(daemon.get("/api/v1/status", Some(&token)).status, 200);
    assert_eq!(
        daemon
            .get(&format!("/api/v1/status?token={token}"), Some(&token))
            .status,
        200
    );
    assert_eq!(daemon.get("/metrics", Some(&token)).status, 200);
    daemon.signal(Signal::TERM);
    daemon.wait();
    let log = daemon.output();
    assert!(log.contains("request"), "trace logging was on: {log}");
    let hex = token.trim_start_matches("gyrus_");
    assert!(!log.contains(hex), "the token leaked into the log");
    let stored = std::fs::read_to_string(home.path().join("user/tokens.json")).unwrap();
    assert!(!stored.contains(hex), "the token is stored in plain text");
}

#[test]
fn metrics_are_prometheus_text_behind_auth() {
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    assert_eq!(daemon.get("/metrics", None).status, 401);
    let token = daemon.create_token("scraper");
    daemon.get("/healthz", None);
    let r = daemon.get("/metrics", Some(&token));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains(
            "gyrus_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("gyrus_auth_failures_total{reason=\"missing\"} 1"),
        "{text}"
    );
    assert!(text.contains("gyrus_uptime_seconds"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let spec = daemon.get("/openapi.json", Some(&token));
    assert_eq!(spec.status, 200);
    assert!(spec.json()["paths"]["/api/v1/status"]["get"].is_object());
}

#[test]
fn a_broken_config_stops_the_start_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("user")).unwrap();
    std::fs::write(
        home.path().join("user/gyrus.toml"),
        "[api]\nlisten_on = \"x\"\n",
    )
    .unwrap();
    let out = gyrus(home.path()).args(["up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown field `listen_on`"), "{stderr}");
    assert!(
        !home.path().join("runtime/gyrus.pid").exists(),
        "lock released"
    );
}

#[test]
fn usage_errors_are_one_line() {
    let out = std::process::Command::new(support::GYRUS)
        .args(["status", "--jsn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--jsn"), "{stderr}");
}
