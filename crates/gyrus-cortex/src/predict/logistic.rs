//! A small logistic regression, trained by plain full-batch gradient descent.
//!
//! Inputs are standardised with the training mean and spread (kept in the model), the loss is
//! the mean log-loss plus an L2 penalty on the weights (not the bias). A handful of features and
//! a few thousand rows train in milliseconds, so there is no need for anything cleverer.

/// How the regression is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    /// Full passes over the data.
    pub epochs: usize,
    /// Step size on the standardised inputs.
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
}

impl Default for Training {
    fn default() -> Self {
        Self {
            epochs: 400,
            learning_rate: 0.5,
            l2: 1e-3,
        }
    }
}

/// A trained model: `P(y) = sigmoid(bias + Σ weight_j · (x_j − mean_j) / scale_j)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    weights: Vec<f64>,
    bias: f64,
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Logistic {
    /// Trains on `rows` (each of the same width) and their labels. `None` when there is nothing
    /// to learn from: no rows, ragged rows, or labels all of one class.
    pub fn train(rows: &[Vec<f64>], labels: &[bool], training: &Training) -> Option<Self> {
        let width = rows.first()?.len();
        if rows.len() != labels.len()
            || rows.iter().any(|r| r.len() != width)
            || labels.iter().all(|&y| y)
            || labels.iter().all(|&y| !y)
        {
            return None;
        }
        let n = rows.len() as f64;
        let mut mean = vec![0.0; width];
        for row in rows {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += finite(*x) / n;
            }
        }
        let mut scale = vec![0.0; width];
        for row in rows {
            for ((s, m), x) in scale.iter_mut().zip(&mean).zip(row) {
                *s += (finite(*x) - m).powi(2) / n;
            }
        }
        // A constant column gets scale 1, so it standardises to 0 and carries no weight.
        for s in &mut scale {
            *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
        }
        let standard: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((x, m), s)| (finite(*x) - m) / s)
                    .collect()
            })
            .collect();

        // Start the bias at the base rate's log-odds, which is the optimum with no features.
        let positive = labels.iter().filter(|&&y| y).count() as f64;
        let mut bias = (positive / (n - positive)).ln();
        let mut weights = vec![0.0; width];
        let mut gradient = vec![0.0; width];
        for _ in 0..training.epochs {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            let mut bias_gradient = 0.0;
            for (x, &y) in standard.iter().zip(labels) {
                let z = bias + dot(&weights, x);
                let error = sigmoid(z) - f64::from(u8::from(y));
                bias_gradient += error;
                for (g, xj) in gradient.iter_mut().zip(x) {
                    *g += error * xj;
                }
            }
            bias -= training.learning_rate * bias_gradient / n;
            for (w, g) in weights.iter_mut().zip(&gradient) {
                *w -= training.learning_rate * (g / n + training.l2 * *w);
            }
        }
        let model = Self {
            weights,
            bias,
            mean,
            scale,
        };
        model.is_finite().then_some(model)
    }

    /// The probability of a positive label for `row` (the width it was trained on; missing
    /// columns count as the training mean, extra ones are ignored).
    pub fn probability(&self, row: &[f64]) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .zip(&self.mean)
                .zip(&self.scale)
                .zip(row)
                .map(|(((w, m), s), x)| w * (finite(*x) - m) / s)
                .sum::<f64>();
        sigmoid(z)
    }

    /// The weights on the standardised inputs (the bias excluded), for explanations.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    fn is_finite(&self) -> bool {
        self.bias.is_finite() && self.weights.iter().all(|w| w.is_finite())
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The logistic function, written so that neither tail overflows.
pub fn sigmoid(z: f64) -> f64 {
    if z.is_nan() {
        0.5
    } else if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The log-odds of `p`, clamped away from 0 and 1 so it stays finite.
pub fn logit(p: f64) -> f64 {
    let p = if p.is_nan() {
        0.5
    } else {
        p.clamp(1e-4, 1.0 - 1e-4)
    };
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_threshold_on_one_feature() {
        let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![f64::from(i) / 200.0, 0.3]).collect();
        let labels: Vec<bool> = (0..200).map(|i| i >= 100).collect();
        let model = Logistic::train(&rows, &labels, &Training::default()).unwrap();
        assert!(model.probability(&[0.9, 0.3]) > 0.9);
        assert!(model.probability(&[0.1, 0.3]) < 0.1);
        // The constant column carries no weight.
        assert!(model.weights()[1].abs() < 1e-9);
    }

    #[test]
    fn refuses_one_class_and_ragged_input() {
        let rows = vec![vec![1.0], vec![2.0]];
        assert!(Logistic::train(&rows, &[true, true], &Training::default()).is_none());
        assert!(Logistic::train(&[], &[], &Training::default()).is_none());
        let ragged = vec![vec![1.0], vec![2.0, 3.0]];
        assert!(Logistic::train(&ragged, &[true, false], &Training::default()).is_none());
    }

    #[test]
    fn sigmoid_and_logit_stay_finite() {
        for z in [
            f64::NEG_INFINITY,
            -1e300,
            -800.0,
            0.0,
            800.0,
            f64::INFINITY,
            f64::NAN,
        ] {
            let p = sigmoid(z);
            assert!((0.0..=1.0).contains(&p), "{z} -> {p}");
            assert!(logit(p).is_finite());
        }
    }
}
