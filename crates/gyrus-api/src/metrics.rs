//! Prometheus metrics for the API, served as text at `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ApiStateRef;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The API's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
    uptime: Gauge<f64, AtomicU64>,
    resident_memory: Gauge,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::with_prefix("gyrus");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let in_flight = Gauge::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let rate_limited = Counter::default();
        let uptime = Gauge::<f64, AtomicU64>::default();
        let resident_memory = Gauge::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
            })
            .set(1);
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered",
            in_flight.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for a missing or bad token",
            auth_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the daemon started",
            uptime.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident set size of the daemon",
            resident_memory.clone(),
        );
        registry.register("build_info", "The running version", build);
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            auth_failures,
            rate_limited,
            uptime,
            resident_memory,
        }
    }

    pub(crate) fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Renders the registry in the Prometheus text format, refreshing the sampled gauges.
    pub fn render(&self, uptime_secs: f64) -> Result<String, std::fmt::Error> {
        self.uptime.set(uptime_secs);
        if let Some(rss) = resident_bytes() {
            self.resident_memory.set(rss);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The model-call scheduler's state and its wait and turnaround times, per cortex and class,
/// as OpenMetrics gauges (the scheduler keeps its own histograms; these are their summaries).
pub fn scheduler_text(stats: &gyrus_kernel::scheduler::SchedulerStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# TYPE gyrus_scheduler_{name} gauge");
        let _ = writeln!(out, "# HELP gyrus_scheduler_{name} {help}");
        for (labels, value) in rows {
            let _ = writeln!(out, "gyrus_scheduler_{name}{{{labels}}} {value}");
        }
    };
    let classes = || {
        stats.cortexes.iter().flat_map(|(cortex, c)| {
            [("interactive", c.interactive), ("background", c.background)]
                .into_iter()
                .map(move |(class, s)| {
                    (
                        format!("cortex=\"{}\",class=\"{class}\"", escape(cortex)),
                        s,
                    )
                })
        })
    };
    family(
        "queued",
        "Model calls waiting for a slot.",
        &mut classes().map(|(l, s)| (l, s.queued as f64)),
    );
    family(
        "running",
        "Model calls holding a slot.",
        &mut classes().map(|(l, s)| (l, s.running as f64)),
    );
    family(
        "completed",
        "Model calls that gave their slot back.",
        &mut classes().map(|(l, s)| (l, s.completed as f64)),
    );
    for (q, pick) in [("p50", 0usize), ("p95", 1), ("p99", 2)] {
        let at = |s: &gyrus_kernel::scheduler::Summary| {
            [s.p50_us, s.p95_us, s.p99_us][pick] as f64 / 1e6
        };
        family(
            &format!("wait_{q}_seconds"),
            "Time from asking for a slot to getting it.",
            &mut classes().map(|(l, s)| (l, at(&s.wait))),
        );
        family(
            &format!("turnaround_{q}_seconds"),
            "Time from asking for a slot to giving it back.",
            &mut classes().map(|(l, s)| (l, at(&s.turnaround))),
        );
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size, from `VmRSS` in /proc/self/status (reported in KiB whatever the page
/// size).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Carries the matched route template from inside the router out to [`record`], which runs
/// outside it and so cannot see the request's `MatchedPath` itself.
pub(crate) async fn expose_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// Counts and times every request, including those refused by outer layers. Routes are
/// labelled by template (`/api/v1/tokens/{name}`), never by raw path, so labels stay few.
pub(crate) async fn record(
    State(state): State<ApiStateRef>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let start = Instant::now();
    state.metrics.in_flight.inc();
    let response = next.run(request).await;
    state.metrics.in_flight.dec();
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
