//! Per-agent spending limits over a rolling window: dollars and tokens.
//!
//! Pure bookkeeping: the caller passes the time (milliseconds on any clock that does not run
//! backwards, the Unix epoch in the daemon), so tests move time by hand.

use std::collections::{HashMap, VecDeque};

/// One agent's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimit {
    /// Most US dollars spent in one window (`None`: no limit).
    pub max_cost_usd: Option<f64>,
    /// Most tokens (input and output) in one window (`None`: no limit).
    pub max_tokens: Option<u64>,
    /// The window's length in milliseconds: spending older than this no longer counts.
    pub window_ms: u64,
}

impl BudgetLimit {
    /// The default window: one day.
    pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;
}

/// Which limit a call would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The dollar limit.
    Cost,
    /// The token limit.
    Tokens,
}

/// A call that would take an agent over its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    /// The agent.
    pub agent: String,
    /// Which limit.
    pub limit_kind: Limit,
    /// Spent in the window so far plus the estimate (USD or tokens).
    pub would: f64,
    /// The limit.
    pub limit: f64,
    /// The window's length in milliseconds.
    pub window_ms: u64,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = window_text(self.window_ms);
        match self.limit_kind {
            Limit::Cost => write!(
                f,
                "agent {:?} would spend ${:.4} in {window}, over its limit of ${:.4}",
                self.agent, self.would, self.limit
            ),
            Limit::Tokens => write!(
                f,
                "agent {:?} would use {} tokens in {window}, over its limit of {}",
                self.agent, self.would, self.limit
            ),
        }
    }
}

impl std::error::Error for BudgetExceeded {}

fn window_text(ms: u64) -> String {
    match ms {
        ms if ms > 0 && ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms > 0 && ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms => format!("{} s", ms as f64 / 1000.0),
    }
}

/// Spending limits per agent and what each agent spent recently.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    limits: HashMap<String, BudgetLimit>,
    default: Option<BudgetLimit>,
    /// Per agent: (when, USD, tokens), oldest first.
    spent: HashMap<String, VecDeque<(u64, f64, u64)>>,
}

impl Budgets {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `agent`'s limits.
    pub fn limit(&mut self, agent: impl Into<String>, limit: BudgetLimit) -> &mut Self {
        self.limits.insert(agent.into(), limit);
        self
    }

    /// Sets the limits of every agent without its own.
    pub fn default_limit(&mut self, limit: BudgetLimit) -> &mut Self {
        self.default = Some(limit);
        self
    }

    /// The limits that apply to `agent`.
    pub fn limit_of(&self, agent: &str) -> Option<&BudgetLimit> {
        self.limits.get(agent).or(self.default.as_ref())
    }

    /// What `agent` spent in its window ending at `now`: (USD, tokens).
    pub fn spent(&self, agent: &str, now: u64) -> (f64, u64) {
        let window = self.limit_of(agent).map_or(0, |l| l.window_ms);
        self.spent.get(agent).map_or((0.0, 0), |entries| {
            entries
                .iter()
                .filter(|(at, _, _)| in_window(*at, window, now))
                .fold((0.0, 0), |(cost, tokens), &(_, c, t)| {
                    (cost + c, tokens.saturating_add(t))
                })
        })
    }

    /// Whether `agent` may spend `estimated_cost` USD and `estimated_tokens` more at `now`.
    pub fn check(
        &self,
        agent: &str,
        estimated_cost: f64,
        estimated_tokens: u64,
        now: u64,
    ) -> Result<(), BudgetExceeded> {
        let Some(limit) = self.limit_of(agent) else {
            return Ok(());
        };
        let (cost, tokens) = self.spent(agent, now);
        let exceeded = |limit_kind, would: f64, max: f64| BudgetExceeded {
            agent: agent.to_owned(),
            limit_kind,
            would,
            limit: max,
            window_ms: limit.window_ms,
        };
        if let Some(max) = limit.max_cost_usd {
            let would = cost + estimated_cost.max(0.0);
            if would > max {
                return Err(exceeded(Limit::Cost, would, max));
            }
        }
        if let Some(max) = limit.max_tokens {
            let would = tokens.saturating_add(estimated_tokens);
            if would > max {
                return Err(exceeded(Limit::Tokens, would as f64, max as f64));
            }
        }
        Ok(())
    }

    /// Records that `agent` spent `cost` USD and `tokens` at `now` (times recorded in order),
    /// and forgets what left the window. Agents without limits are not tracked.
    pub fn record(&mut self, agent: &str, cost: f64, tokens: u64, now: u64) {
        let Some(limit) = self.limit_of(agent) else {
            return;
        };
        let window = limit.window_ms;
        let entries = self.spent.entry(agent.to_owned()).or_default();
        while entries
            .front()
            .is_some_and(|(at, _, _)| !in_window(*at, window, now))
        {
            entries.pop_front();
        }
        entries.push_back((now, cost.max(0.0), tokens));
    }
}

/// Whether spending at `at` still counts at `now`: the window is `(now - window, now]`.
fn in_window(at: u64, window: u64, now: u64) -> bool {
    at <= now && at.saturating_add(window) > now
}
