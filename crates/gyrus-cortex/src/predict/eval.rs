//! Scoring a two-tier router offline, the way RouteLLM does.
//!
//! A router gives each prompt a score (higher: more in need of the strong model). A threshold
//! sends every prompt scoring above it to the strong model and the rest to the weak one;
//! sweeping the threshold from above the highest score down to below the lowest traces
//! accuracy against the share `x` of prompts sent to the strong model, from the weak model's
//! accuracy at `x = 0` to the strong model's at `x = 1`. Prompts with equal scores move
//! together (no threshold splits them); between two such steps the curve is linear, which is
//! also what breaking the tie at random would give on average.
//!
//! - `PGR(x) = (acc(x) − acc_weak) / (acc_strong − acc_weak)`, the performance gap recovered.
//! - APGR: the area under `PGR(x)` over `x ∈ [0, 1]` (trapezoids between sweep points). A
//!   router that knows nothing scores 0.5 on average; the oracle scores more than 1 when the
//!   weak model is sometimes right where the strong one is wrong.
//! - `CPT(p)`: the smallest strong share at which `PGR` reaches `p` (interpolated on the curve).

/// One step of the sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The share of prompts sent to the strong model, in `[0, 1]`.
    pub strong_share: f64,
    /// The accuracy of the routed mix.
    pub accuracy: f64,
}

/// Bad input to the sweep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// No prompts.
    #[error("no prompts to score")]
    Empty,
    /// The scores and the two correctness columns differ in length.
    #[error("{scores} scores, {weak} weak and {strong} strong outcomes: lengths must match")]
    Length {
        /// Number of scores.
        scores: usize,
        /// Number of weak-model outcomes.
        weak: usize,
        /// Number of strong-model outcomes.
        strong: usize,
    },
    /// A score is NaN or infinite.
    #[error("score of prompt {0} is not finite")]
    NotFinite(usize),
}

/// The accuracy curve of one router on one set of prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    points: Vec<Point>,
    weak: f64,
    strong: f64,
}

/// APGR and the costs to reach 50% and 80% of the gap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Average performance gap recovered.
    pub apgr: f64,
    /// The strong share needed to recover half the gap.
    pub cpt50: f64,
    /// The strong share needed to recover 80% of the gap.
    pub cpt80: f64,
}

impl Curve {
    /// Sweeps the threshold over `scores`, given whether the weak and the strong model answered
    /// each prompt correctly.
    pub fn sweep(scores: &[f64], weak: &[bool], strong: &[bool]) -> Result<Self, EvalError> {
        if scores.len() != weak.len() || scores.len() != strong.len() {
            return Err(EvalError::Length {
                scores: scores.len(),
                weak: weak.len(),
                strong: strong.len(),
            });
        }
        if scores.is_empty() {
            return Err(EvalError::Empty);
        }
        if let Some(bad) = scores.iter().position(|s| !s.is_finite()) {
            return Err(EvalError::NotFinite(bad));
        }
        let n = scores.len() as f64;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut correct = weak.iter().filter(|&&w| w).count() as i64;
        let weak_accuracy = correct as f64 / n;
        let mut points = vec![Point {
            strong_share: 0.0,
            accuracy: weak_accuracy,
        }];
        let mut sent = 0usize;
        for group in order.chunk_by(|&a, &b| scores[a] == scores[b]) {
            for &i in group {
                correct += i64::from(strong[i]) - i64::from(weak[i]);
            }
            sent += group.len();
            points.push(Point {
                strong_share: sent as f64 / n,
                accuracy: correct as f64 / n,
            });
        }
        let strong_accuracy = strong.iter().filter(|&&s| s).count() as f64 / n;
        Ok(Self {
            points,
            weak: weak_accuracy,
            strong: strong_accuracy,
        })
    }

    /// The sweep's steps, from strong share 0 to 1.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The weak model's accuracy alone.
    pub fn weak_accuracy(&self) -> f64 {
        self.weak
    }

    /// The strong model's accuracy alone.
    pub fn strong_accuracy(&self) -> f64 {
        self.strong
    }

    /// The share of the gap that `accuracy` recovers; `None` when the models are equally good.
    pub fn pgr(&self, accuracy: f64) -> Option<f64> {
        let gap = self.strong - self.weak;
        (gap.abs() > 1e-12).then(|| (accuracy - self.weak) / gap)
    }

    /// The area under `PGR(x)`; `None` when the models are equally good.
    pub fn apgr(&self) -> Option<f64> {
        let mut area = 0.0;
        for pair in self.points.windows(2) {
            let (a, b) = (self.pgr(pair[0].accuracy)?, self.pgr(pair[1].accuracy)?);
            area += (pair[1].strong_share - pair[0].strong_share) * (a + b) / 2.0;
        }
        Some(area)
    }

    /// The smallest strong share at which `PGR` reaches `recovered`; `None` when it never does
    /// or the models are equally good.
    pub fn cpt(&self, recovered: f64) -> Option<f64> {
        let pgr: Option<Vec<(f64, f64)>> = self
            .points
            .iter()
            .map(|p| Some((p.strong_share, self.pgr(p.accuracy)?)))
            .collect();
        first_crossing(&pgr?, recovered)
    }

    /// The smallest strong share at which the accuracy reaches `target`; `None` when it never
    /// does.
    pub fn share_for_accuracy(&self, target: f64) -> Option<f64> {
        let points: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.strong_share, p.accuracy))
            .collect();
        first_crossing(&points, target)
    }

    /// APGR, CPT(50%) and CPT(80%); `None` when the models are equally good.
    pub fn summary(&self) -> Option<Summary> {
        Some(Summary {
            apgr: self.apgr()?,
            cpt50: self.cpt(0.5)?,
            cpt80: self.cpt(0.8)?,
        })
    }
}

/// The first `x` at which the piecewise-linear curve through `points` reaches `target`.
fn first_crossing(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut previous: Option<(f64, f64)> = None;
    for &(x, y) in points {
        if y >= target {
            return Some(match previous {
                Some((x0, y0)) if y > y0 => x0 + (target - y0) / (y - y0) * (x - x0),
                _ => x,
            });
        }
        previous = Some((x, y));
    }
    None
}

/// The oracle's scores: the strong model first where only it is right, last where only the weak
/// one is.
pub fn oracle_scores(weak: &[bool], strong: &[bool]) -> Vec<f64> {
    weak.iter()
        .zip(strong)
        .map(|(&w, &s)| f64::from(u8::from(s)) - f64::from(u8::from(w)))
        .collect()
}

/// A random router's scores: a seeded, reproducible permutation in effect.
pub fn random_scores(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as f64
        })
        .collect()
}

/// The random router's summary, averaged over `runs` seeded orderings; `None` when the models
/// are equally good.
pub fn random_summary(
    weak: &[bool],
    strong: &[bool],
    runs: u64,
) -> Result<Option<Summary>, EvalError> {
    let runs = runs.max(1);
    let mut total = Summary {
        apgr: 0.0,
        cpt50: 0.0,
        cpt80: 0.0,
    };
    for seed in 0..runs {
        let curve = Curve::sweep(&random_scores(weak.len(), seed), weak, strong)?;
        let Some(summary) = curve.summary() else {
            return Ok(None);
        };
        total.apgr += summary.apgr;
        total.cpt50 += summary.cpt50;
        total.cpt80 += summary.cpt80;
    }
    let runs = runs as f64;
    Ok(Some(Summary {
        apgr: total.apgr / runs,
        cpt50: total.cpt50 / runs,
        cpt80: total.cpt80 / runs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Weak right on prompt 0 only, strong on 0, 1, 2: acc 0.25 against 0.75.
    const WEAK: [bool; 4] = [true, false, false, false];
    const STRONG: [bool; 4] = [true, true, true, false];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn oracle_on_a_toy_set() {
        let curve = Curve::sweep(&oracle_scores(&WEAK, &STRONG), &WEAK, &STRONG).unwrap();
        assert_eq!(curve.weak_accuracy(), 0.25);
        assert_eq!(curve.strong_accuracy(), 0.75);
        // Prompts 1 and 2 move together (x = 0.5, full gap), then the rest (x = 1, no change):
        // PGR (0, 0), (0.5, 1), (1, 1) has area 0.25 + 0.5.
        assert_eq!(curve.points().len(), 3);
        assert!(close(curve.apgr().unwrap(), 0.75));
        assert!(close(curve.cpt(0.5).unwrap(), 0.25));
        assert!(close(curve.cpt(0.8).unwrap(), 0.4));
        // 95% of the strong accuracy (0.7125) is reached at x = 0.4625.
        assert!(close(
            curve.share_for_accuracy(0.95 * 0.75).unwrap(),
            0.4625
        ));
        assert_eq!(curve.share_for_accuracy(0.8), None);
    }

    #[test]
    fn a_ranking_by_hand() {
        // Order 0 (no change), 2 (+1), 3 (no change), 1 (+1): PGR 0, 0, .5, .5, 1.
        let curve = Curve::sweep(&[0.9, 0.1, 0.5, 0.3], &WEAK, &STRONG).unwrap();
        let s = curve.summary().unwrap();
        assert!(close(s.apgr, 0.375), "{s:?}");
        assert!(close(s.cpt50, 0.5), "{s:?}");
        assert!(close(s.cpt80, 0.9), "{s:?}");
    }

    #[test]
    fn a_constant_router_is_the_diagonal() {
        let curve = Curve::sweep(&[0.3; 4], &WEAK, &STRONG).unwrap();
        let s = curve.summary().unwrap();
        assert!(
            close(s.apgr, 0.5) && close(s.cpt50, 0.5) && close(s.cpt80, 0.8),
            "{s:?}"
        );
    }

    #[test]
    fn the_reverse_oracle_is_worst() {
        let reverse: Vec<f64> = oracle_scores(&WEAK, &STRONG).iter().map(|s| -s).collect();
        let curve = Curve::sweep(&reverse, &WEAK, &STRONG).unwrap();
        // Nothing is gained until the last half: PGR (0, 0), (0.5, 0), (1, 1).
        assert!(close(curve.apgr().unwrap(), 0.25));
        assert!(close(curve.cpt(0.5).unwrap(), 0.75));
    }

    #[test]
    fn random_routers_average_one_half() {
        // Labels from a fixed pseudo-random stream, weak right 40%, strong 80%.
        let draw = |seed, share: f64| -> Vec<bool> {
            let cut = share * u64::MAX as f64;
            random_scores(2000, seed).iter().map(|&x| x < cut).collect()
        };
        let (weak, strong) = (draw(98, 0.4), draw(99, 0.8));
        let s = random_summary(&weak, &strong, 100).unwrap().unwrap();
        assert!((s.apgr - 0.5).abs() < 0.02, "{s:?}");
        assert!((s.cpt50 - 0.5).abs() < 0.05, "{s:?}");
        assert!((s.cpt80 - 0.8).abs() < 0.05, "{s:?}");
        let oracle = Curve::sweep(&oracle_scores(&weak, &strong), &weak, &strong).unwrap();
        assert!(oracle.apgr().unwrap() > 0.9);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Curve::sweep(&[], &[], &[]), Err(EvalError::Empty));
        assert!(matches!(
            Curve::sweep(&[1.0], &[true, false], &[true]),
            Err(EvalError::Length { .. })
        ));
        assert_eq!(
            Curve::sweep(&[0.0, f64::NAN], &[true, false], &[true, true]),
            Err(EvalError::NotFinite(1))
        );
        // Equally good models leave PGR undefined.
        let same = Curve::sweep(&[0.1, 0.2], &[true, false], &[false, true]).unwrap();
        assert_eq!(same.apgr(), None);
        assert_eq!(same.summary(), None);
    }
}
