//! The predictor on synthetic data: each test can fail if the learning does not happen.

use super::*;

/// A reproducible stream of uniform numbers in `[0, 1)`.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn vector(&mut self, dimension: usize) -> Vec<f32> {
        (0..dimension).map(|_| (self.next() - 0.5) as f32).collect()
    }
}

const DIMENSION: usize = 16;

fn brier(predictions: &[f64], labels: &[bool]) -> f64 {
    predictions
        .iter()
        .zip(labels)
        .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / predictions.len() as f64
}

#[test]
fn empty_history_gives_the_priors() {
    let mut predictor = Predictor::new(2).with_priors(&[0.2, 0.9]).unwrap();
    let request = Features::of("hello", &[1.0, 0.0]);
    assert_eq!(predictor.predict(&request).unwrap(), vec![0.2, 0.9]);
    predictor.fit();
    assert_eq!(predictor.predict(&request).unwrap(), vec![0.2, 0.9]);
    assert_eq!(predictor.cheapest(&request, 0.5).unwrap().0, 1);
    assert_eq!(predictor.cheapest(&request, 0.1).unwrap().0, 0);
    // Nothing reaches 0.95: the most expensive tier.
    assert_eq!(predictor.cheapest(&request, 0.95).unwrap().0, 1);
    assert!(Predictor::new(2).with_priors(&[1.5]).is_err());
}

#[test]
fn a_tier_never_tried_keeps_its_prior() {
    let mut predictor = Predictor::new(3).with_priors(&[0.5, 0.5, 0.7]).unwrap();
    let mut stream = Stream(1);
    for i in 0..50 {
        let outcomes = [
            Outcome {
                tier: 0,
                success: i % 2 == 0,
            },
            Outcome {
                tier: 1,
                success: true,
            },
        ];
        predictor
            .observe(Features::of("q", &stream.vector(DIMENSION)), &outcomes)
            .unwrap();
    }
    predictor.fit();
    let p = predictor
        .predict(&Features::of("q", &stream.vector(DIMENSION)))
        .unwrap();
    assert_eq!(p[2], 0.7);
    // Tier 1 always succeeded: no regression (one class), and the kNN estimate is high.
    assert!(p[1] > 0.9, "{p:?}");
}

#[test]
fn knn_beats_the_base_rate_on_clustered_data() {
    // Eight clusters; the cheap tier succeeds 90% of the time in even clusters, 10% in odd.
    let mut stream = Stream(7);
    let centres: Vec<Vec<f32>> = (0..8).map(|_| stream.vector(DIMENSION)).collect();
    let sample = |stream: &mut Stream| {
        let cluster = (stream.next() * 8.0) as usize % 8;
        let noise = stream.vector(DIMENSION);
        let embedding: Vec<f32> = centres[cluster]
            .iter()
            .zip(&noise)
            .map(|(c, n)| c + 0.3 * n)
            .collect();
        let rate = if cluster.is_multiple_of(2) { 0.9 } else { 0.1 };
        (embedding, stream.next() < rate)
    };
    let mut predictor = Predictor::new(1);
    for _ in 0..800 {
        let (embedding, success) = sample(&mut stream);
        let outcome = Outcome { tier: 0, success };
        predictor
            .observe(Features::of("same text", &embedding), &[outcome])
            .unwrap();
    }
    let base = predictor.base_rates()[0];
    assert!((base - 0.5).abs() < 0.1, "{base}");
    let test: Vec<(Vec<f32>, bool)> = (0..400).map(|_| sample(&mut stream)).collect();
    let labels: Vec<bool> = test.iter().map(|t| t.1).collect();
    let score = |predictor: &Predictor| -> f64 {
        let predictions: Vec<f64> = test
            .iter()
            .map(|(e, _)| predictor.predict(&Features::of("same text", e)).unwrap()[0])
            .collect();
        brier(&predictions, &labels)
    };
    let base_brier = brier(&vec![base; labels.len()], &labels);
    let before_fit = score(&predictor);
    predictor.fit();
    let after_fit = score(&predictor);
    // The best possible Brier score here is 0.09 (the label noise); the base rate's is 0.25.
    assert!(
        before_fit < base_brier - 0.08,
        "{before_fit} vs {base_brier}"
    );
    assert!(after_fit < 0.12, "{after_fit}");
}

#[test]
fn the_regression_learns_a_separable_text_rule() {
    // Embeddings say nothing; the cheap tier succeeds exactly on requests without code.
    let mut stream = Stream(3);
    let prose = [
        "What is the capital of France?",
        "Tell me a joke about cats.",
    ];
    let code = [
        "```rust\nfn main() { println!(\"hi\"); }\n```",
        "Fix this: def f(x): return x == 1 && y;",
    ];
    let request = |stream: &mut Stream| {
        let is_code = stream.next() < 0.5;
        let pick = (stream.next() * 2.0) as usize % 2;
        let text = if is_code { code[pick] } else { prose[pick] };
        (Features::of(text, &stream.vector(DIMENSION)), !is_code)
    };
    let mut predictor = Predictor::new(2);
    for _ in 0..300 {
        let (features, success) = request(&mut stream);
        let outcomes = [
            Outcome { tier: 0, success },
            Outcome {
                tier: 1,
                success: true,
            },
        ];
        predictor.observe(features, &outcomes).unwrap();
    }
    predictor.fit();
    let mut right = 0;
    for _ in 0..200 {
        let (features, success) = request(&mut stream);
        let (tier, p) = predictor.cheapest(&features, 0.5).unwrap();
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
        if (tier == 0) == success {
            right += 1;
        }
    }
    assert!(right >= 195, "{right} of 200 routed right");
}

#[test]
fn degenerate_input_predicts_no_nan() {
    let mut predictor = Predictor::new(2);
    let zero = vec![0.0f32; DIMENSION];
    let nan = vec![f32::NAN; DIMENSION];
    for i in 0..40 {
        let embedding = if i % 2 == 0 { &zero } else { &nan };
        let outcomes = [
            Outcome {
                tier: 0,
                success: i % 3 == 0,
            },
            Outcome {
                tier: 1,
                success: true,
            },
        ];
        predictor
            .observe(Features::of("", embedding), &outcomes)
            .unwrap();
    }
    predictor.fit();
    for request in [Features::of("", &zero), Features::of("?", &nan)] {
        let p = predictor.predict(&request).unwrap();
        assert!(
            p.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)),
            "{p:?}"
        );
    }
    // An empty embedding everywhere works too (text features only).
    let mut textual = Predictor::new(1);
    for i in 0..30 {
        let outcome = Outcome {
            tier: 0,
            success: i % 2 == 0,
        };
        textual.observe(Features::of("x", &[]), &[outcome]).unwrap();
    }
    textual.fit();
    let p = textual.predict(&Features::of("x", &[])).unwrap();
    assert!(p[0].is_finite());
}

#[test]
fn bad_input_is_an_error() {
    let mut predictor = Predictor::new(2);
    let outcome = Outcome {
        tier: 0,
        success: true,
    };
    predictor
        .observe(Features::of("a", &[1.0, 0.0]), &[outcome])
        .unwrap();
    assert_eq!(
        predictor.observe(Features::of("a", &[1.0]), &[outcome]),
        Err(PredictError::Dimension {
            expected: 2,
            got: 1
        })
    );
    assert!(matches!(
        predictor.predict(&Features::of("a", &[1.0, 0.0, 0.0])),
        Err(PredictError::Dimension { .. })
    ));
    let bad = Outcome {
        tier: 2,
        success: true,
    };
    assert_eq!(
        predictor.observe(Features::of("a", &[1.0, 0.0]), &[bad]),
        Err(PredictError::Tier { tier: 2, tiers: 2 })
    );
    // Nothing half-stored.
    assert_eq!(predictor.len(), 1);
}

#[test]
fn tuning_picks_the_grid_point_with_the_least_log_loss() {
    let mut stream = Stream(11);
    let neighbourhoods: Vec<Vec<(f32, bool)>> = (0..60)
        .map(|_| {
            let count = (stream.next() * 70.0) as usize;
            let mut n: Vec<(f32, bool)> = (0..count)
                .map(|_| (stream.next() as f32, stream.next() < 0.6))
                .collect();
            n.sort_by(|a, b| b.0.total_cmp(&a.0));
            n
        })
        .collect();
    let examples: Vec<(usize, bool)> = (0..60).map(|i| (i, stream.next() < 0.6)).collect();
    let bases: Vec<f64> = (0..60).map(|_| 0.4 + 0.2 * stream.next()).collect();
    let rows: Vec<&[(f32, bool)]> = neighbourhoods.iter().map(Vec::as_slice).collect();
    let chosen = tune(&rows, &examples, &bases);
    let loss_of = |params: &KnnParams| {
        log_loss(
            rows.iter()
                .zip(&bases)
                .map(|(n, &base)| knn::estimate(n, params, base).probability),
            examples.iter().map(|e| e.1),
        )
    };
    let chosen_loss = loss_of(&chosen);
    for &neighbours in &GRID_NEIGHBOURS {
        for &temperature in &GRID_TEMPERATURES {
            for &prior_weight in &GRID_PRIOR_WEIGHTS {
                let params = KnnParams {
                    neighbours,
                    temperature,
                    prior_weight,
                };
                assert!(
                    chosen_loss <= loss_of(&params) + 1e-9,
                    "{chosen:?} vs {params:?}"
                );
            }
        }
    }
}
