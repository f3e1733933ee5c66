//! The tier predictor through its public interface, on real sentence embeddings from the
//! bundled encoder: requests for code and maths need the expensive tier, small talk does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gyrus_cortex::predict::eval::{self, Curve};
use gyrus_cortex::predict::{Features, Outcome, Predictor};

const EASY: &[&str] = &[
    "What is the capital of {}?",
    "Say good morning to {} for me.",
    "What time is it in {} right now?",
    "Tell me a short joke about {}.",
    "Is {} a nice place to visit?",
];
const HARD: &[&str] = &[
    "Write a Rust function that parses {} timestamps and returns a Result; handle errors.",
    "```python\ndef load(path):\n    return open(path).read()\n```\nWhy does this leak a file handle when reading {}?",
    "Calculate the integral of x^3 * sin(x) from 0 to 2 and explain each step for {}.",
    "Prove that the sum of the first n odd numbers is n^2, using {} as the running example.",
    "Implement a lock-free queue in C++ for {} with compare_exchange and explain the memory orders.",
];
const FILLERS: &[&str] = &[
    "France", "Kenya", "Peru", "Japan", "Norway", "Canada", "Chile", "Egypt", "Spain", "India",
];

/// (text, cheap tier succeeds) for every template and filler.
fn requests() -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for filler in FILLERS {
        for template in EASY {
            out.push((template.replace("{}", filler), true));
        }
        for template in HARD {
            out.push((template.replace("{}", filler), false));
        }
    }
    out
}

#[test]
fn routes_hard_requests_up_and_easy_ones_down() {
    let encoder = pocket_encoder::Encoder::new().unwrap();
    let requests = requests();
    let texts: Vec<&str> = requests.iter().map(|(t, _)| t.as_str()).collect();
    let embeddings = encoder.embed(&texts).unwrap();
    // Fillers 0..6 train, 6..10 test: the test requests are new sentences.
    let split = 6 * (EASY.len() + HARD.len());

    let mut predictor = Predictor::new(2).with_priors(&[0.5, 0.9]).unwrap();
    let fresh = Features::of(texts[split], &embeddings[split]);
    assert_eq!(predictor.predict(&fresh).unwrap(), vec![0.5, 0.9]);
    for ((text, easy), embedding) in requests[..split].iter().zip(&embeddings) {
        let outcomes = [
            Outcome {
                tier: 0,
                success: *easy,
            },
            Outcome {
                tier: 1,
                success: true,
            },
        ];
        predictor
            .observe(Features::of(text, embedding), &outcomes)
            .unwrap();
    }
    predictor.fit();

    let mut scores = Vec::new();
    let mut weak = Vec::new();
    let mut right = 0;
    for ((text, easy), embedding) in requests[split..].iter().zip(&embeddings[split..]) {
        let features = Features::of(text, embedding);
        let (tier, probabilities) = predictor.cheapest(&features, 0.5).unwrap();
        if (tier == 0) == *easy {
            right += 1;
        }
        scores.push(1.0 - probabilities[0]);
        weak.push(*easy);
    }
    let total = requests.len() - split;
    assert!(right == total, "{right} of {total} routed right");

    // As a router scored like RouteLLM: every hard request ranks above every easy one, so the
    // curve is the oracle's.
    let strong = vec![true; weak.len()];
    let ours = Curve::sweep(&scores, &weak, &strong).unwrap();
    let oracle = Curve::sweep(&eval::oracle_scores(&weak, &strong), &weak, &strong).unwrap();
    assert!((ours.apgr().unwrap() - oracle.apgr().unwrap()).abs() < 1e-9);
}
