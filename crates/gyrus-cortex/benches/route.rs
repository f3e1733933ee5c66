//! The router's decision time on this machine's CPU: p50 and p99 of `Router::decide` for
//! requests a reactive skill answers by rule, requests it answers by meaning (embedding given,
//! so the encoder's time is left out and reported on its own), and requests the predictor
//! routes to a model (over a history of synthetic past requests).
//!
//! `cargo bench -p gyrus-cortex --bench route` runs it in full; under `cargo test --benches`
//! (no `--bench` argument) it decides a few requests of each kind and checks the decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gyrus_cortex::predict::{Features, Outcome};
use gyrus_cortex::route::{AvailableCortex, RouteRequest, Router, SkillIndex, Tier};
use gyrus_cortex::types::Price;

/// Target for a reactive decision's p99.
const REACTIVE_P99: Duration = Duration::from_micros(50);
/// Past requests the predictor holds in the predictor-routed case.
const HISTORY: usize = 2000;

const RULE: &[&str] = &[
    "how much disk space is free?",
    "what's my free disk space",
    "how much RAM is used",
    "what's the uptime",
    "show me recent audit events",
    "list processes",
];
const MEANING: &[&str] = &[
    "is my hard disk almost full?",
    "how much storage do I still have",
    "how long has this computer been running",
    "show me the programs that are running",
];
const MODEL: &[&str] = &[
    "explain quantum computing",
    "write a poem about disks",
    "refactor this function to use iterators",
    "what is the capital of France?",
];

fn cortices() -> Vec<AvailableCortex> {
    let cortex = |name: &str, tier, price| AvailableCortex {
        name: name.into(),
        tier,
        healthy: true,
        price,
    };
    vec![
        cortex("smol", Tier::Operational, Price::default()),
        cortex("qwen", Tier::Tactical, Price::default()),
        cortex(
            "claude",
            Tier::Strategic,
            Price {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
            },
        ),
    ]
}

/// A small xorshift generator: synthetic history without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn time_decisions(
    router: &Router,
    requests: &[RouteRequest],
    rounds: usize,
    check: impl Fn(&gyrus_cortex::route::Decision),
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(rounds * requests.len());
    for _ in 0..rounds {
        for request in requests {
            let started = Instant::now();
            let decision = router.decide(request);
            times.push(started.elapsed());
            check(&decision);
        }
    }
    percentiles(times)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 5000 } else { 5 };
    let encoder = pocket_encoder::Encoder::new().unwrap();

    let started = Instant::now();
    let index = SkillIndex::new(&encoder).unwrap();
    let index_time = started.elapsed();

    // The encoder on its own, one text per call as the router's caller does it.
    let texts: Vec<&str> = RULE.iter().chain(MEANING).chain(MODEL).copied().collect();
    let mut encode_times = Vec::new();
    let mut embeddings = Vec::new();
    for _ in 0..if full { 10 } else { 1 } {
        embeddings.clear();
        for text in &texts {
            let started = Instant::now();
            embeddings.push(encoder.embed(&[text]).unwrap().remove(0));
            encode_times.push(started.elapsed());
        }
    }
    let embedding_of =
        |text: &str| embeddings[texts.iter().position(|t| *t == text).unwrap()].clone();
    let request = |text: &str, embedding: Option<Vec<f32>>| RouteRequest {
        text: text.into(),
        embedding,
        agent: "owner".into(),
        available: cortices(),
        now: 1,
        ..RouteRequest::default()
    };

    let router = Router::new(index.clone());
    let rule: Vec<RouteRequest> = RULE
        .iter()
        .map(|t| request(t, Some(embedding_of(t))))
        .collect();
    let meaning: Vec<RouteRequest> = MEANING
        .iter()
        .map(|t| request(t, Some(embedding_of(t))))
        .collect();
    let rule_times = time_decisions(&router, &rule, rounds, |d| {
        assert!(
            matches!(
                d.skill().map(|s| &s.by),
                Some(gyrus_cortex::route::MatchedBy::Rule(_))
            ),
            "{d:?}"
        );
    });
    let meaning_times = time_decisions(&router, &meaning, rounds, |d| {
        assert!(
            matches!(
                d.skill().map(|s| &s.by),
                Some(gyrus_cortex::route::MatchedBy::Embedding { .. })
            ),
            "{d:?}"
        );
    });

    // A predictor with a synthetic history of 384-d requests: random directions, outcomes
    // that favour the cheap tiers for half the space.
    let mut router = Router::new(index);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dimension = embeddings[0].len();
    let started = Instant::now();
    for _ in 0..HISTORY {
        let v: Vec<f32> = (0..dimension).map(|_| (rng.next() - 0.5) as f32).collect();
        let easy = v[0] > 0.0;
        let outcomes: Vec<Outcome> = (1..4)
            .map(|tier| Outcome {
                tier,
                success: tier == 3 || easy && rng.next() < 0.9,
            })
            .collect();
        router
            .predictor_mut()
            .observe(Features::of("synthetic request", &v), &outcomes)
            .unwrap();
    }
    router.predictor_mut().fit();
    let fit_time = started.elapsed();
    let model: Vec<RouteRequest> = MODEL
        .iter()
        .map(|t| request(t, Some(embedding_of(t))))
        .collect();
    let model_times = time_decisions(&router, &model, rounds.div_ceil(10), |d| {
        assert_eq!(d.kind(), "cortex", "{d:?}");
    });

    if !full {
        println!("route: smoke run ok; `cargo bench -p gyrus-cortex --bench route` for numbers");
        return;
    }
    let (encode_p50, encode_p99) = percentiles(encode_times);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "skill index: {} skills embedded in {index_time:.1?}",
        router.skills().skills().len()
    );
    println!(
        "encoder (one text, excluded below): p50 {:.0} µs, p99 {:.0} µs",
        us(encode_p50),
        us(encode_p99)
    );
    for (name, (p50, p99)) in [
        ("reactive, rule", rule_times),
        ("reactive, embedding", meaning_times),
        ("predictor-routed", model_times),
    ] {
        println!(
            "decide {name:20} p50 {:7.1} µs  p99 {:7.1} µs",
            us(p50),
            us(p99)
        );
    }
    println!("predictor: {HISTORY} past requests, observe + fit in {fit_time:.1?}");
    let worst = rule_times.1.max(meaning_times.1);
    println!(
        "reactive p99 {:.1} µs against a target of {:.0} µs: {}",
        us(worst),
        us(REACTIVE_P99),
        if worst <= REACTIVE_P99 {
            "met"
        } else {
            "MISSED"
        }
    );
}
