//! The record of one routing decision and what came of it, for `gyrus route explain`.
//!
//! The request's text is never stored, only its SHA-256, so the decision log can be kept and
//! shown without holding what the owner asked.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Decision, Tier};

/// One routing decision and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// When it was decided (milliseconds since the Unix epoch).
    pub at: u64,
    /// The agent that asked.
    pub agent: String,
    /// SHA-256 of the request text, lower-case hex.
    pub text_hash: String,
    /// What was decided: `skill`, `cortex`, `unservable`, `over_budget`, `exhausted`.
    pub kind: String,
    /// The tier chosen, if any.
    pub tier: Option<Tier>,
    /// The cortex chosen (or, for a reactive skill, the skill's id), if any.
    pub cortex: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The predicted probability of success per tier, cheapest first (empty when the
    /// predictor was not asked).
    pub predicted: Vec<f64>,
    /// Whether the answer was good, once known.
    pub actual_outcome: Option<bool>,
    /// Tokens used (input and output).
    pub tokens: u64,
    /// Cost in US dollars.
    pub cost: f64,
    /// Time from decision to answer.
    pub latency_ms: u64,
}

impl RouteRecord {
    /// The record of `decision` on `text` by `agent` at `at`, before its outcome is known.
    pub fn new(at: u64, agent: &str, text: &str, decision: &Decision) -> Self {
        Self {
            at,
            agent: agent.to_owned(),
            text_hash: text_hash(text),
            kind: decision.kind().to_owned(),
            tier: decision.tier(),
            cortex: decision.target().map(str::to_owned),
            reason: decision.reason().to_owned(),
            predicted: decision.predicted().to_vec(),
            actual_outcome: None,
            tokens: 0,
            cost: 0.0,
            latency_ms: 0,
        }
    }

    /// The same record with the outcome filled in.
    pub fn finished(mut self, success: bool, tokens: u64, cost: f64, latency_ms: u64) -> Self {
        self.actual_outcome = Some(success);
        self.tokens = tokens;
        self.cost = cost;
        self.latency_ms = latency_ms;
        self
    }
}

/// SHA-256 of `text`, lower-case hex.
pub fn text_hash(text: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}
