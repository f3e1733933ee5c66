//! Gateway overhead benchmark: what `POST /v1/chat/completions` adds to a model call.
//!
//! A scripted OpenAI-compatible server on loopback (`tests/support/scripted.rs`) answers at
//! once. The same non-streamed request goes to it directly and through a real daemon's
//! gateway, whose one cortex is an `openai` cortex at that server, each over its own
//! keep-alive HTTP/1.1 connection, in interleaved rounds (direct, gateway, direct, …) so
//! that drift of the machine hits both alike. The difference is the gateway: authentication,
//! the middleware stack, the wire mapping both ways, the scheduler slot, the route log, and
//! the driver's own HTTP client.
//!
//! The request names its cortex (`model: "gyrus/stub"`): that is what this measures.
//! `gyrus/auto` adds the router's choice, which embeds the request text first (about
//! 10-20 ms on a small CPU); that is the router's cost, measured by `gyrus-cortex`'s route
//! benchmark, not the gateway's. Should the frontal lobe embed for a named cortex too, it
//! shows here as overhead.
//!
//! Reported: median and p99 of each path, and the overhead at each (gateway quantile minus
//! direct quantile). Targets: overhead median <= 0.2 ms, p99 <= 0.5 ms (reported, not
//! asserted). A third, diagnostic path sends the same request with a blank user message,
//! which the frontal lobe does not embed: the gap between the two gateway rows is the cost of
//! embedding the request text.
//!
//! Run with `cargo bench -p gyrus-cli --bench gateway` (or `cargo xtask bench`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/scripted.rs"]
mod scripted;
#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use scripted::{KeepAlive, Scripted};
use serde_json::json;
use support::Daemon;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 200;
const WARMUP: usize = 100;

/// The daemon's rate limit would otherwise refuse a benchmark's worth of requests.
const CONFIG: &str = "[api.rate_limit]\nper_second = 1000000\nburst = 1000000\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(client: &mut KeepAlive, token: Option<&str>, body: &[u8]) -> Duration {
    let start = Instant::now();
    let reply = client.post("/v1/chat/completions", token, body);
    let took = start.elapsed();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    took
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a little.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, per_round, warmup) = if quick {
        (2, 10, 5)
    } else {
        (ROUNDS, PER_ROUND, WARMUP)
    };

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = Scripted::start_with(false);
    std::fs::create_dir_all(home.join("user")).unwrap();
    let registry = home.join("user/cortices.toml");
    std::fs::write(
        &registry,
        format!(
            "[[cortex]]\nname = \"stub\"\ndriver = \"openai\"\nmodel = \"{}\"\ntier = \"tactical\"\nurl = \"{}\"\n",
            scripted::MODEL,
            server.base_url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&registry, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&home, Some(CONFIG), &[("GYRUS_LOG", "warn")]);
    let token = daemon.create_token("bench");

    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello in five words."},
    ]);
    let direct_body = json!({"model": scripted::MODEL, "messages": messages, "max_tokens": 16})
        .to_string()
        .into_bytes();
    let gateway_body = json!({"model": "gyrus/stub", "messages": messages, "max_tokens": 16})
        .to_string()
        .into_bytes();
    let blank_body = json!({
        "model": "gyrus/stub",
        "messages": [{"role": "system", "content": "Say hello in five words."}, {"role": "user", "content": ""}],
        "max_tokens": 16,
    })
    .to_string()
    .into_bytes();

    let mut direct = KeepAlive::connect(server.addr);
    let mut gateway = KeepAlive::connect(daemon.addr);
    for _ in 0..warmup {
        timed(&mut direct, None, &direct_body);
        timed(&mut gateway, Some(&token), &gateway_body);
        timed(&mut gateway, Some(&token), &blank_body);
    }

    let mut direct_times = Vec::with_capacity(rounds * per_round);
    let mut gateway_times = Vec::with_capacity(rounds * per_round);
    let mut blank_times = Vec::with_capacity(rounds * per_round);
    for _ in 0..rounds {
        for _ in 0..per_round {
            direct_times.push(timed(&mut direct, None, &direct_body));
        }
        for _ in 0..per_round {
            gateway_times.push(timed(&mut gateway, Some(&token), &gateway_body));
        }
        for _ in 0..per_round {
            blank_times.push(timed(&mut gateway, Some(&token), &blank_body));
        }
    }
    direct_times.sort();
    gateway_times.sort();
    blank_times.sort();

    println!(
        "gyrus gateway overhead: {rounds} interleaved rounds x {per_round} requests per path, \
         keep-alive HTTP/1.1, non-streamed, model gyrus/stub (a named cortex), {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let row = |name: &str, sorted: &[Duration]| {
        println!(
            "{name:<38} median {:>8.3} ms   p99 {:>8.3} ms   min {:>8.3} ms",
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.99)),
            ms(sorted[0])
        );
    };
    row("direct to the scripted server", &direct_times);
    row("through /v1/chat/completions", &gateway_times);
    let over = |p: f64| ms(percentile(&gateway_times, p)) - ms(percentile(&direct_times, p));
    let (median, p99) = (over(0.5), over(0.99));
    println!(
        "{:<38} median {median:>8.3} ms   p99 {p99:>8.3} ms",
        "overhead (gateway - direct)"
    );
    row("diagnostic: blank text, no embedding", &blank_times);
    println!(
        "{:<38} median {:>8.3} ms",
        "diagnostic: embedding the text",
        ms(percentile(&gateway_times, 0.5)) - ms(percentile(&blank_times, 0.5))
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: overhead median <= 0.2 ms {} ({median:.3} ms); p99 <= 0.5 ms {} ({p99:.3} ms)",
        verdict(median <= 0.2),
        verdict(p99 <= 0.5)
    );
}
