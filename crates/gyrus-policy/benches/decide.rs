//! Decision latency of the consent broker: 1,000 grants over 100 principals, 100 owner
//! policies, a mix of allowed, denied and asked calls. Prints p50, p99 and max against the
//! target p99 <= 50 µs. `cargo bench -p gyrus-policy --bench decide` runs 100,000 decisions;
//! without `--bench` (e.g. `cargo test --benches`) it runs a quick 2,000.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gyrus_bus::subject::{Pattern, Subject};
use gyrus_policy::{
    ActionRequest, ConsentBroker, GrantStore, IntentSource, NewGrant, Outcome, Principal,
};

const PRINCIPALS: usize = 100;
const GRANTS_PER_PRINCIPAL: usize = 10;
const POLICY_FILES: usize = 10;
const POLICIES_PER_FILE: usize = 10;
const TARGET_P99: Duration = Duration::from_micros(50);

/// Which owner policies to load.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// As the owner would mostly write them: tests on the action, the resource kind, the
    /// principal type and the intent source, then anything.
    ActionsAndKinds,
    /// Adversarial: 40 of the 100 open with tests on per-request values (the agent's name,
    /// the resource's full name, tags), so screening cannot leave them out.
    PerRequest,
    /// Only the core policies.
    CoreOnly,
}

fn owner_policies(mix: Mix) -> Vec<(String, String)> {
    if mix == Mix::CoreOnly {
        return Vec::new();
    }
    (0..POLICY_FILES)
        .map(|f| {
            let text = (0..POLICIES_PER_FILE)
                .map(|p| {
                    let i = f * POLICIES_PER_FILE + p;
                    let case = match (mix, i % 5) {
                        (Mix::ActionsAndKinds, 2) => 5,
                        (Mix::ActionsAndKinds, 4) => 6,
                        (_, c) => c,
                    };
                    match case {
                        0 => format!(
                            "@id(\"o.{i}.agents-offline\")\nforbid (principal is Gyrus::Agent, action, resource)\nwhen {{ context.action like \"x{i}.*\" && resource.kind == \"host\" }};\n"
                        ),
                        1 => format!(
                            "permit (principal is Gyrus::Token, action, resource)\nwhen {{ context.action like \"y{i}.*\" && context.intent_trusted && resource.kind == \"path\" }};\n"
                        ),
                        2 => format!(
                            "@id(\"o.{i}.secrets\")\nforbid (principal, action, resource)\nwhen {{ resource.kind == \"path\" && resource.name like \"path:/secret{i}/*\" }}\nunless {{ principal is Gyrus::Owner }};\n"
                        ),
                        3 => format!(
                            "@decision(\"ask\")\npermit (principal is Gyrus::Session, action, resource)\nwhen {{ context.action == \"z{i}.run\" && context.intent_source == \"plan\" }};\n"
                        ),
                        4 => format!(
                            "forbid (principal is Gyrus::Agent, action, resource)\nwhen {{ principal.name == \"quarantined-{i}\" || (resource.hasTag(\"size\") && resource.getTag(\"size\") == \"huge{i}\") }};\n"
                        ),
                        5 => format!(
                            "@id(\"o.{i}.secrets\")\nforbid (principal, action, resource)\nwhen {{ context.action like \"svc{}.*\" && resource.kind == \"path\" && resource.name like \"path:/secret{i}/*\" }}\nunless {{ principal is Gyrus::Owner }};\n",
                            i % 10
                        ),
                        _ => format!(
                            "forbid (principal is Gyrus::Agent, action, resource)\nwhen {{ context.action == \"svc{}.delete\" && context.intent_source == \"untrusted\" }};\n",
                            i % 10
                        ),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            (format!("{f:02}-bench.cedar"), text)
        })
        .collect()
}

fn agent(p: usize) -> Principal {
    Principal::Agent {
        id: format!("ag_{p:04}"),
        name: format!("agent-{p}"),
    }
}

fn requests() -> Vec<ActionRequest> {
    let mut out = Vec::new();
    for i in 0..1000 {
        let p = i % PRINCIPALS;
        let k = (i / PRINCIPALS) % GRANTS_PER_PRINCIPAL;
        let (action, resource) = match i % 4 {
            // Covered by the principal's k-th grant.
            0 | 1 => (
                format!("svc{k}.read"),
                format!("path:/home/u/p{p}/k{k}/src/file{i}.rs"),
            ),
            // Outside every grant: deny, or ask when the manifest requested it.
            2 => (format!("svc{k}.write"), format!("path:/home/u/other/{i}")),
            _ => (
                format!("x{}.get", i % 100),
                format!("host:h{i}.example.com:443"),
            ),
        };
        let source = if i % 7 == 0 {
            IntentSource::Untrusted("tool:web.fetch".into())
        } else {
            IntentSource::Plan(format!("pl_{p}"))
        };
        out.push(
            ActionRequest::new(
                agent(p),
                Subject::new(action).unwrap_or_else(|e| panic!("{e}")),
                resource,
                "keep the build green",
                source,
            )
            .with_attr("size", serde_json::json!(i)),
        );
    }
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let decisions = if full { 100_000 } else { 2_000 };
    for (mix, label) in [
        (
            Mix::ActionsAndKinds,
            "100 owner policies on actions and resource kinds",
        ),
        (
            Mix::PerRequest,
            "100 owner policies, 40 opening on per-request values",
        ),
        (Mix::CoreOnly, "core policies only"),
    ] {
        // GYRUS_BENCH_MIX=core|actions|per-request runs one scenario, for profiling.
        let only = std::env::var("GYRUS_BENCH_MIX").ok();
        let name = match mix {
            Mix::ActionsAndKinds => "actions",
            Mix::PerRequest => "per-request",
            Mix::CoreOnly => "core",
        };
        if only.as_deref().is_none_or(|o| o == name) {
            run(mix, label, decisions);
        }
    }
}

fn run(mix: Mix, label: &str, decisions: usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let grants =
        Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap_or_else(|e| panic!("{e}")));
    let now = SystemTime::now();
    for p in 0..PRINCIPALS {
        for k in 0..GRANTS_PER_PRINCIPAL {
            grants
                .add(
                    NewGrant {
                        principal: agent(p).id(),
                        actions: vec![format!("svc{k}.read"), format!("svc{k}.list")],
                        resources: vec![format!("path:/home/u/p{p}/k{k}/**")],
                        intent: (k % 2 == 0).then(|| "keep the build green".to_string()),
                        valid_for: Some(Duration::from_secs(86_400)),
                        max_uses: (k % 3 == 0).then_some(1_000_000),
                        granted_by: "owner".into(),
                    },
                    now,
                )
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let broker = ConsentBroker::from_sources(Arc::clone(&grants), &owner_policies(mix))
        .unwrap_or_else(|e| panic!("{e}"));
    let requested = vec![Pattern::new("svc0.>").unwrap_or_else(|e| panic!("{e}"))];
    let requests = requests();

    // Warm up.
    for r in requests.iter().take(1000) {
        black_box(broker.decide(r, &requested, now));
    }
    let mut samples = Vec::with_capacity(decisions);
    let mut counts = [0usize; 3];
    let started = Instant::now();
    for i in 0..decisions {
        let r = &requests[i % requests.len()];
        let t = Instant::now();
        let d = broker.decide(r, &requested, now);
        samples.push(t.elapsed());
        counts[match d.outcome {
            Outcome::Allow => 0,
            Outcome::Deny => 1,
            Outcome::Ask => 2,
        }] += 1;
        black_box(d);
    }
    let total = started.elapsed();
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let (p50, p99, max) = (pct(0.50), pct(0.99), samples[samples.len() - 1]);
    println!(
        "decide, {label}: {decisions} decisions, {} grants over {PRINCIPALS} principals, {} owner policies",
        PRINCIPALS * GRANTS_PER_PRINCIPAL,
        broker.owner_policy_ids().len()
    );
    println!(
        "  outcomes: {} allow, {} deny, {} ask",
        counts[0], counts[1], counts[2]
    );
    println!(
        "  p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs, mean {:.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        max.as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / decisions as f64
    );
    println!(
        "  target p99 <= {} µs: {}",
        TARGET_P99.as_micros(),
        if p99 <= TARGET_P99 { "met" } else { "MISSED" }
    );
}
