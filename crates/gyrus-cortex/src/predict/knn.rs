//! The nearest-neighbour estimate: how often the most similar past requests succeeded on a tier.
//!
//! Neighbour `j` with cosine similarity `s_j` weighs `w_j = exp((s_j − 1) / τ)`: 1 for an
//! identical request, falling off with distance at a rate set by the temperature `τ`. The
//! estimate is the weighted success rate shrunk towards the tier's base rate by `m`
//! pseudo-observations: `p = (Σ w_j y_j + m · base) / (Σ w_j + m)`. Weights are absolute, not
//! normalised, so a neighbourhood of far-away requests (small `Σ w_j`) gives back the base
//! rate, and an empty history gives the prior.

/// The knobs of the estimate for one tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnParams {
    /// How many neighbours count (`k`).
    pub neighbours: usize,
    /// The similarity temperature `τ` (> 0).
    pub temperature: f64,
    /// The pseudo-observations `m` of the base rate (> 0).
    pub prior_weight: f64,
}

impl Default for KnnParams {
    fn default() -> Self {
        Self {
            neighbours: 32,
            temperature: 0.1,
            prior_weight: 1.0,
        }
    }
}

/// What the neighbours of one request say about one tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnEstimate {
    /// The shrunk success rate `p`.
    pub probability: f64,
    /// The total neighbour weight `Σ w_j`: how much evidence stands behind `p`.
    pub mass: f64,
    /// The similarity of the nearest neighbour with a known outcome (0 when there is none).
    pub nearest: f64,
}

/// The `k` best `(similarity, success)` pairs of `candidates`, most similar first.
pub(crate) fn top(mut candidates: Vec<(f32, bool)>, k: usize) -> Vec<(f32, bool)> {
    let by_similarity = |a: &(f32, bool), b: &(f32, bool)| b.0.total_cmp(&a.0);
    if k == 0 {
        return Vec::new();
    }
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, by_similarity);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(by_similarity);
    candidates
}

/// The estimate from `neighbours` (most similar first; only the first `params.neighbours`
/// count) and the tier's `base` rate.
pub(crate) fn estimate(neighbours: &[(f32, bool)], params: &KnnParams, base: f64) -> KnnEstimate {
    let temperature = params.temperature;
    let prior_weight = params.prior_weight.max(1e-9);
    let (mut mass, mut successes) = (0.0, 0.0);
    for &(similarity, success) in neighbours.iter().take(params.neighbours) {
        let weight = weight(similarity, temperature);
        mass += weight;
        if success {
            successes += weight;
        }
    }
    KnnEstimate {
        probability: (successes + prior_weight * base) / (mass + prior_weight),
        mass,
        nearest: neighbours
            .first()
            .map_or(0.0, |n| f64::from(n.0).clamp(-1.0, 1.0)),
    }
}

/// A neighbour's weight `exp((s − 1) / τ)`; a non-finite similarity counts as −1.
pub(crate) fn weight(similarity: f32, temperature: f64) -> f64 {
    let similarity = f64::from(similarity);
    let similarity = if similarity.is_finite() {
        similarity.min(1.0)
    } else {
        -1.0
    };
    ((similarity - 1.0) / temperature.max(1e-6)).exp()
}

/// An embedding stored as signed bytes and one scale, `x ≈ scale · q`: a quarter of the memory
/// of `f32`, and so a quarter of the memory traffic of a scan, which is what bounds it. For
/// unit vectors the error of a cosine is about 1e-3, far below what moves a neighbour's weight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Quantised {
    pub(crate) codes: Vec<i8>,
    pub(crate) scale: f32,
}

impl Quantised {
    pub(crate) fn of(embedding: &[f32]) -> Self {
        let max = embedding
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f32, |m, x| m.max(x.abs()));
        if max <= 0.0 {
            return Self {
                codes: vec![0; embedding.len()],
                scale: 0.0,
            };
        }
        let scale = max / 127.0;
        let codes = embedding
            .iter()
            .map(|&x| {
                let x = if x.is_finite() { x } else { 0.0 };
                // In range by construction; `as` saturates anyway.
                (x / scale).round().clamp(-127.0, 127.0) as i8
            })
            .collect();
        Self { codes, scale }
    }
}

/// The approximate dot product of `a` (codes and scale) with stored `codes` of scale `scale`.
pub(crate) fn similarity(a: &Quantised, codes: &[i8], scale: f32) -> f32 {
    dot_i8(&a.codes, codes) as f32 * a.scale * scale
}

/// The dot product of two equally long byte vectors (at most 133,000 long, so no overflow),
/// in sixteen-wide blocks of 16-bit products so the compiler vectorises it.
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let ((a_blocks, a_tail), (b_blocks, b_tail)) = (a.as_chunks::<16>(), b.as_chunks::<16>());
    let mut lanes = [0i32; 16];
    for (x, y) in a_blocks.iter().zip(b_blocks) {
        for i in 0..16 {
            lanes[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    let tail: i32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    lanes.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keeps_the_most_similar_in_order() {
        let found = top(
            vec![(0.1, false), (0.9, true), (0.5, false), (0.7, true)],
            2,
        );
        assert_eq!(found, vec![(0.9, true), (0.7, true)]);
        assert!(top(vec![(0.1, true)], 0).is_empty());
        assert_eq!(top(vec![(0.1, true)], 5), vec![(0.1, true)]);
    }

    #[test]
    fn estimate_shrinks_towards_the_base_rate() {
        let params = KnnParams {
            neighbours: 4,
            temperature: 0.1,
            prior_weight: 1.0,
        };
        // Identical neighbours, all successes: weight 1 each, so p = (3 + 0.2) / (3 + 1).
        let close = estimate(&[(1.0, true); 3], &params, 0.2);
        assert!((close.probability - 0.8).abs() < 1e-9, "{close:?}");
        assert!((close.mass - 3.0).abs() < 1e-9);
        // Far neighbours barely move it off the base rate.
        let far = estimate(&[(0.0, true); 3], &params, 0.2);
        assert!((far.probability - 0.2).abs() < 1e-3, "{far:?}");
        // No neighbours: the base rate itself.
        let none = estimate(&[], &params, 0.2);
        assert_eq!(none.probability, 0.2);
        assert_eq!(none.nearest, 0.0);
        let nan = estimate(&[(f32::NAN, true)], &params, 0.2);
        assert!(nan.probability.is_finite());
    }

    #[test]
    fn quantised_similarity_is_close_to_the_cosine() {
        let mut state = 17u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for dimension in [1, 7, 16, 384, 385] {
            let unit = |v: Vec<f32>| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
            };
            let a = unit((0..dimension).map(|_| next()).collect());
            let b = unit((0..dimension).map(|_| next()).collect());
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let (qa, qb) = (Quantised::of(&a), Quantised::of(&b));
            let approximate = similarity(&qa, &qb.codes, qb.scale);
            assert!(
                (approximate - exact).abs() < 0.01,
                "{dimension}: {approximate} vs {exact}"
            );
        }
        let zero = Quantised::of(&[0.0, f32::NAN]);
        assert_eq!(zero.scale, 0.0);
        assert_eq!(similarity(&zero, &[5, 5], 1.0), 0.0);
    }
}
