//! The router's tier predictor: how likely each tier is to succeed on a request.
//!
//! The router picks the cheapest tier predicted to succeed. This module is the prediction, and
//! is pure: it does no I/O, holds past requests in memory and is tested on synthetic data.
//!
//! - Tiers are indices in cost order, `0` the cheapest (reactive, operational, tactical,
//!   strategic for the four tiers of the design).
//! - [`Features::of`] turns a request (text + sentence embedding) into what the predictor sees.
//! - [`Predictor::observe`] stores a past request with the outcomes known for it (not every
//!   tier need have been tried).
//! - [`Predictor::predict`] gives `P(success)` per tier; [`Predictor::cheapest`] the first tier
//!   at or above a threshold.
//! - Per tier, the estimate is a cosine k-nearest-neighbour success rate shrunk to the tier's
//!   base rate ([`KnnEstimate`]); after [`Predictor::fit`], a small logistic regression per tier
//!   combines that estimate with the cheap text features (length, code, math, tool words,
//!   questions). `fit` also picks each tier's `k`, temperature and prior weight by
//!   leave-one-out log-loss on the stored requests. Before `fit` (or for a tier with too little
//!   data) the kNN estimate is the prediction; with no history at all, it is the prior.
//! - [`eval`] scores a router offline (threshold sweep, APGR, CPT), as RouteLLM does.
//!
//! Cost: stored embeddings are kept as bytes (one `i8` per coordinate and a scale, a quarter of
//! `f32`'s memory traffic); a prediction is one byte dot product per stored request, one partial
//! sort, and a regression of eleven inputs per tier. Over 7,000 stored 384-d requests that is
//! about 0.3 to 0.6 ms on one core of the development machine (the `routellm` bench prints it).
//! `fit` is quadratic in the stored requests (leave-one-out neighbours), bounded by
//! [`Config::fit_rows`]: about 6 s for 7,000.

pub mod eval;
mod features;
mod knn;
mod logistic;

pub use features::{Features, TEXT_FEATURE_NAMES, TEXT_FEATURES};
pub use knn::{KnnEstimate, KnnParams};
pub use logistic::{Logistic, Training};

/// A tier's outcome on a past request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The tier index, 0 the cheapest.
    pub tier: usize,
    /// Whether the tier's answer was good (passed validation, was accepted).
    pub success: bool,
}

/// Bad input to the predictor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredictError {
    /// An embedding's dimension differs from the first one the predictor saw.
    #[error("embedding has {got} dimensions, the predictor holds {expected}-dimensional ones")]
    Dimension {
        /// The predictor's dimension.
        expected: usize,
        /// The request's.
        got: usize,
    },
    /// An outcome names a tier the predictor does not have.
    #[error("outcome for tier {tier}, but the predictor has {tiers} tiers")]
    Tier {
        /// The tier named.
        tier: usize,
        /// How many tiers the predictor has.
        tiers: usize,
    },
    /// A prior is not a probability.
    #[error("prior {0} is not a probability in [0, 1]")]
    Prior(String),
}

/// How the predictor estimates and learns.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The kNN knobs used until `fit` tunes them (and always, when `tune` is off).
    pub knn: KnnParams,
    /// Whether `fit` picks `k`, temperature and prior weight per tier by leave-one-out log-loss.
    pub tune: bool,
    /// Whether `fit` trains the regression on top of the kNN estimate.
    pub regression: bool,
    /// How `fit` trains the regression.
    pub training: Training,
    /// The fewest requests with a known outcome (and both outcomes seen) a tier needs before
    /// `fit` tunes or trains anything for it.
    pub min_fit: usize,
    /// At most this many of the most recent requests serve as `fit`'s training examples
    /// (neighbours still come from all of them); bounds `fit`'s quadratic cost.
    pub fit_rows: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            knn: KnnParams::default(),
            tune: true,
            regression: true,
            training: Training::default(),
            min_fit: 20,
            fit_rows: 8192,
        }
    }
}

/// The pseudo-observations behind a tier's prior in its base rate.
const PRIOR_COUNT: f64 = 2.0;
/// The regression's inputs besides the text features: logit of the kNN estimate, log of its
/// mass, the nearest similarity.
const KNN_INPUTS: usize = 3;
/// The candidate `k`, temperatures and prior weights `fit` chooses from.
/// (`GRID_NEIGHBOURS` ascending: `tune` reads them off one pass over the neighbours.)
const GRID_NEIGHBOURS: [usize; 6] = [4, 8, 16, 32, 64, 128];
const GRID_TEMPERATURES: [f64; 6] = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
const GRID_PRIOR_WEIGHTS: [f64; 3] = [0.5, 2.0, 8.0];

/// Predicts per tier the probability of success from past requests with known outcomes.
#[derive(Debug, Clone)]
pub struct Predictor {
    config: Config,
    tiers: usize,
    priors: Vec<f64>,
    dimension: Option<usize>,
    /// Row-major, one quantised unit (or zero) embedding per stored request.
    codes: Vec<i8>,
    scales: Vec<f32>,
    text: Vec<[f64; TEXT_FEATURES]>,
    /// Row-major, one entry per stored request and tier: `None` where the tier was not tried.
    labels: Vec<Option<bool>>,
    /// Per tier: (successes, trials).
    counts: Vec<(u64, u64)>,
    knn: Vec<KnnParams>,
    models: Vec<Option<Logistic>>,
}

impl Predictor {
    /// A predictor for `tiers` tiers (at least one), priors 0.5, default [`Config`].
    pub fn new(tiers: usize) -> Self {
        Self::with_config(tiers, Config::default())
    }

    /// A predictor with the given configuration.
    pub fn with_config(tiers: usize, config: Config) -> Self {
        let tiers = tiers.max(1);
        Self {
            knn: vec![config.knn; tiers],
            config,
            tiers,
            priors: vec![0.5; tiers],
            dimension: None,
            codes: Vec::new(),
            scales: Vec::new(),
            text: Vec::new(),
            labels: Vec::new(),
            counts: vec![(0, 0); tiers],
            models: vec![None; tiers],
        }
    }

    /// Sets the prior success probability per tier (what an empty history predicts). Missing
    /// tiers keep theirs.
    pub fn with_priors(mut self, priors: &[f64]) -> Result<Self, PredictError> {
        for (slot, &p) in self.priors.iter_mut().zip(priors) {
            if !(0.0..=1.0).contains(&p) {
                return Err(PredictError::Prior(p.to_string()));
            }
            *slot = p;
        }
        Ok(self)
    }

    /// How many tiers it predicts.
    pub fn tiers(&self) -> usize {
        self.tiers
    }

    /// How many past requests it holds.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether it holds no past request.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The kNN knobs in use per tier (tuned by the last `fit`).
    pub fn knn_params(&self) -> &[KnnParams] {
        &self.knn
    }

    /// Stores a past request and its known outcomes (a later outcome for the same tier wins).
    /// The regression learns from it at the next [`Predictor::fit`]; the kNN estimate uses it
    /// at once.
    pub fn observe(
        &mut self,
        features: Features,
        outcomes: &[Outcome],
    ) -> Result<(), PredictError> {
        self.check_dimension(features.embedding())?;
        if let Some(bad) = outcomes.iter().find(|o| o.tier >= self.tiers) {
            return Err(PredictError::Tier {
                tier: bad.tier,
                tiers: self.tiers,
            });
        }
        let mut row = vec![None; self.tiers];
        for outcome in outcomes {
            row[outcome.tier] = Some(outcome.success);
        }
        for (tier, label) in row.iter().enumerate() {
            if let Some(success) = label {
                self.counts[tier].0 += u64::from(*success);
                self.counts[tier].1 += 1;
            }
        }
        self.dimension = Some(features.embedding().len());
        let quantised = knn::Quantised::of(features.embedding());
        self.codes.extend_from_slice(&quantised.codes);
        self.scales.push(quantised.scale);
        self.text.push(*features.text());
        self.labels.extend(row);
        Ok(())
    }

    /// Per tier, the base rate: the observed success rate shrunk to the prior.
    pub fn base_rates(&self) -> Vec<f64> {
        (0..self.tiers).map(|t| self.base_rate(t, None)).collect()
    }

    /// Per tier, what the nearest past requests say (no regression).
    pub fn knn(&self, features: &Features) -> Result<Vec<KnnEstimate>, PredictError> {
        self.check_dimension(features.embedding())?;
        let similarities = self.similarities(features.embedding());
        let ks: Vec<usize> = self.knn.iter().map(|p| p.neighbours).collect();
        Ok(self
            .neighbourhoods(&similarities, &ks)
            .iter()
            .enumerate()
            .map(|(tier, neighbours)| {
                knn::estimate(neighbours, &self.knn[tier], self.base_rate(tier, None))
            })
            .collect())
    }

    /// Per tier, the probability that it succeeds on the request.
    pub fn predict(&self, features: &Features) -> Result<Vec<f64>, PredictError> {
        let estimates = self.knn(features)?;
        Ok(estimates
            .iter()
            .zip(&self.models)
            .map(|(estimate, model)| match model {
                Some(model) => model.probability(&regression_row(estimate, features.text())),
                None => estimate.probability,
            })
            .collect())
    }

    /// The cheapest tier whose probability is at least `threshold` (the most expensive tier
    /// when none is), with the probabilities behind the choice.
    pub fn cheapest(
        &self,
        features: &Features,
        threshold: f64,
    ) -> Result<(usize, Vec<f64>), PredictError> {
        let probabilities = self.predict(features)?;
        let tier = probabilities
            .iter()
            .position(|&p| p >= threshold)
            .unwrap_or(self.tiers - 1);
        Ok((tier, probabilities))
    }

    /// Tunes each tier's kNN knobs and trains its regression on the stored requests, each
    /// scored by its neighbours other than itself (leave-one-out), so the regression learns how
    /// far to trust the kNN estimate on requests it has not seen.
    pub fn fit(&mut self) {
        let rows = self.len();
        let first = rows.saturating_sub(self.config.fit_rows.max(1));
        let max_k = GRID_NEIGHBOURS
            .iter()
            .copied()
            .chain([self.config.knn.neighbours])
            .max()
            .unwrap_or(1);
        // Per tier and fit row: the row's leave-one-out neighbours (up to `max_k`).
        let mut neighbourhoods: Vec<Vec<Vec<(f32, bool)>>> =
            vec![Vec::with_capacity(rows - first); self.tiers];
        for chunk_start in (first..rows).step_by(BLOCK) {
            let chunk: Vec<usize> = (chunk_start..rows.min(chunk_start + BLOCK)).collect();
            for (&row, similarities) in chunk.iter().zip(self.block_similarities(&chunk)) {
                let ks: Vec<usize> = (0..self.tiers)
                    .map(|tier| {
                        if self.label(row, tier).is_some() {
                            max_k
                        } else {
                            0
                        }
                    })
                    .collect();
                for (per_row, found) in neighbourhoods
                    .iter_mut()
                    .zip(self.neighbourhoods(&similarities, &ks))
                {
                    per_row.push(found);
                }
            }
        }
        for (tier, neighbourhoods) in neighbourhoods.iter().enumerate() {
            let examples: Vec<(usize, bool)> = (first..rows)
                .filter_map(|row| self.label(row, tier).map(|y| (row, y)))
                .collect();
            let positives = examples.iter().filter(|e| e.1).count();
            if examples.len() < self.config.min_fit.max(2)
                || positives == 0
                || positives == examples.len()
            {
                self.knn[tier] = self.config.knn;
                self.models[tier] = None;
                continue;
            }
            let estimate_all = |params: &KnnParams| -> Vec<KnnEstimate> {
                examples
                    .iter()
                    .map(|&(row, y)| {
                        knn::estimate(
                            &neighbourhoods[row - first],
                            params,
                            self.base_rate(tier, Some(y)),
                        )
                    })
                    .collect()
            };
            let params = if self.config.tune {
                let bases: Vec<f64> = examples
                    .iter()
                    .map(|&(_, y)| self.base_rate(tier, Some(y)))
                    .collect();
                let rows: Vec<&[(f32, bool)]> = examples
                    .iter()
                    .map(|&(row, _)| neighbourhoods[row - first].as_slice())
                    .collect();
                tune(&rows, &examples, &bases)
            } else {
                self.config.knn
            };
            let model = if self.config.regression {
                let inputs: Vec<Vec<f64>> = estimate_all(&params)
                    .iter()
                    .zip(&examples)
                    .map(|(estimate, &(row, _))| regression_row(estimate, &self.text[row]))
                    .collect();
                let labels: Vec<bool> = examples.iter().map(|e| e.1).collect();
                Logistic::train(&inputs, &labels, &self.config.training)
            } else {
                None
            };
            self.knn[tier] = params;
            self.models[tier] = model;
        }
    }

    fn check_dimension(&self, embedding: &[f32]) -> Result<(), PredictError> {
        match self.dimension {
            Some(expected) if expected != embedding.len() => Err(PredictError::Dimension {
                expected,
                got: embedding.len(),
            }),
            _ => Ok(()),
        }
    }

    fn label(&self, row: usize, tier: usize) -> Option<bool> {
        self.labels.get(row * self.tiers + tier).copied().flatten()
    }

    /// The tier's success rate shrunk to its prior; `leave_out` removes one observation with
    /// that outcome (the request being scored in `fit`).
    fn base_rate(&self, tier: usize, leave_out: Option<bool>) -> f64 {
        let (mut successes, mut trials) = self.counts[tier];
        if let Some(success) = leave_out {
            successes = successes.saturating_sub(u64::from(success));
            trials = trials.saturating_sub(1);
        }
        (successes as f64 + PRIOR_COUNT * self.priors[tier]) / (trials as f64 + PRIOR_COUNT)
    }

    /// The similarity of `embedding` to every stored request.
    fn similarities(&self, embedding: &[f32]) -> Vec<f32> {
        let dimension = embedding.len();
        if dimension == 0 {
            return vec![0.0; self.len()];
        }
        let query = knn::Quantised::of(embedding);
        self.codes
            .chunks_exact(dimension)
            .zip(&self.scales)
            .map(|(codes, &scale)| knn::similarity(&query, codes, scale))
            .collect()
    }

    /// For each stored row in `rows`, its similarity to every stored request but itself
    /// (`NEG_INFINITY`), computed a block at a time so each stored embedding is read once per
    /// block.
    fn block_similarities(&self, rows: &[usize]) -> Vec<Vec<f32>> {
        let dimension = self.dimension.unwrap_or(0);
        let mut out = vec![vec![0.0f32; self.len()]; rows.len()];
        if dimension > 0 {
            let queries: Vec<knn::Quantised> = rows
                .iter()
                .map(|&row| knn::Quantised {
                    codes: self.codes[row * dimension..(row + 1) * dimension].to_vec(),
                    scale: self.scales[row],
                })
                .collect();
            for (j, (codes, &scale)) in self
                .codes
                .chunks_exact(dimension)
                .zip(&self.scales)
                .enumerate()
            {
                for (q, query) in queries.iter().enumerate() {
                    out[q][j] = knn::similarity(query, codes, scale);
                }
            }
        }
        for (q, &row) in rows.iter().enumerate() {
            out[q][row] = f32::NEG_INFINITY;
        }
        out
    }

    /// Per tier, the `ks[tier]` most similar stored requests with a known outcome on it, most
    /// similar first (`NEG_INFINITY` similarities are skipped).
    ///
    /// One partial sort finds the few most similar requests overall, and each tier takes its
    /// neighbours from those; only a tier left short while more requests remain unread scans
    /// them all (where outcomes of that tier are rare).
    fn neighbourhoods(&self, similarities: &[f32], ks: &[usize]) -> Vec<Vec<(f32, bool)>> {
        let want = ks.iter().copied().max().unwrap_or(0);
        let by_similarity = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0);
        let mut candidates: Vec<(f32, u32)> = similarities
            .iter()
            .zip(0u32..)
            .filter(|(s, _)| **s > f32::NEG_INFINITY)
            .map(|(&s, row)| (s, row))
            .collect();
        let total = candidates.len();
        let read = want.saturating_mul(PRESELECT).min(total);
        if read > 0 && read < total {
            candidates.select_nth_unstable_by(read - 1, by_similarity);
            candidates.truncate(read);
        }
        candidates.sort_unstable_by(by_similarity);
        ks.iter()
            .enumerate()
            .map(|(tier, &k)| {
                let mut found: Vec<(f32, bool)> = candidates
                    .iter()
                    .filter_map(|&(s, row)| self.label(row as usize, tier).map(|y| (s, y)))
                    .take(k)
                    .collect();
                if found.len() < k && read < total {
                    found = knn::top(
                        similarities
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| **s > f32::NEG_INFINITY)
                            .filter_map(|(row, &s)| self.label(row, tier).map(|y| (s, y)))
                            .collect(),
                        k,
                    );
                }
                found
            })
            .collect()
    }
}

/// How many times a tier's `k` requests `neighbourhoods` reads from the most similar overall
/// before scanning everything for that tier.
const PRESELECT: usize = 4;

/// Fit rows scored per block in `fit`.
const BLOCK: usize = 64;

fn regression_row(estimate: &KnnEstimate, text: &[f64; TEXT_FEATURES]) -> Vec<f64> {
    let mut row = Vec::with_capacity(KNN_INPUTS + TEXT_FEATURES);
    row.push(logistic::logit(estimate.probability));
    row.push(estimate.mass.ln_1p());
    row.push(estimate.nearest);
    row.extend_from_slice(text);
    row
}

/// The knobs of the grid with the least log-loss of the kNN estimate over `examples` (each
/// with its neighbours, most similar first, and its base rate).
fn tune(neighbourhoods: &[&[(f32, bool)]], examples: &[(usize, bool)], bases: &[f64]) -> KnnParams {
    const K: usize = GRID_NEIGHBOURS.len();
    const M: usize = GRID_PRIOR_WEIGHTS.len();
    let mut best = (f64::INFINITY, KnnParams::default());
    for &temperature in &GRID_TEMPERATURES {
        // Per (k, m): the summed log-loss. The weights depend on τ only, so one pass over each
        // neighbourhood serves every k (prefix sums) and m.
        let mut loss = [[0.0f64; M]; K];
        for ((neighbours, &(_, y)), &base) in neighbourhoods.iter().zip(examples).zip(bases) {
            let (mut mass, mut successes) = (0.0, 0.0);
            let mut k = 0;
            let mut record = |k: usize, mass: f64, successes: f64| {
                for (m, &prior_weight) in GRID_PRIOR_WEIGHTS.iter().enumerate() {
                    let p = ((successes + prior_weight * base) / (mass + prior_weight))
                        .clamp(1e-6, 1.0 - 1e-6);
                    loss[k][m] -= if y { p.ln() } else { (1.0 - p).ln() };
                }
            };
            for (j, &(similarity, success)) in neighbours.iter().enumerate() {
                let w = knn::weight(similarity, temperature);
                mass += w;
                if success {
                    successes += w;
                }
                while k < K && GRID_NEIGHBOURS[k] == j + 1 {
                    record(k, mass, successes);
                    k += 1;
                }
                if k == K {
                    break;
                }
            }
            // Fewer neighbours than k: the larger k see the same sums.
            for rest in k..K {
                record(rest, mass, successes);
            }
        }
        for (k, row) in loss.iter().enumerate() {
            for (m, &total) in row.iter().enumerate() {
                if total < best.0 {
                    best = (
                        total,
                        KnnParams {
                            neighbours: GRID_NEIGHBOURS[k],
                            temperature,
                            prior_weight: GRID_PRIOR_WEIGHTS[m],
                        },
                    );
                }
            }
        }
    }
    best.1
}

#[cfg(test)]
fn log_loss(probabilities: impl Iterator<Item = f64>, labels: impl Iterator<Item = bool>) -> f64 {
    let (mut total, mut n) = (0.0, 0.0);
    for (p, y) in probabilities.zip(labels) {
        let p = p.clamp(1e-6, 1.0 - 1e-6);
        total -= if y { p.ln() } else { (1.0 - p).ln() };
        n += 1.0;
    }
    if n > 0.0 { total / n } else { 0.0 }
}

#[cfg(test)]
mod tests;
