//! The router's decision core: who should think about a request.
//!
//! Pure: no I/O, no clock (the time is passed in), no model call. The daemon gives it a
//! request, the cortices it has and their health, and acts on the [`Decision`].
//!
//! [`Router::decide`] tries, in order:
//!
//! 1. the forced cortex, when the request names one that is configured and healthy;
//! 2. a reactive [`skill`] (disk, memory, processes, uptime, audit, grants, status), matched
//!    by rule or by meaning and answered by one read-only tool call, no model;
//! 3. the cheapest tier whose predicted `P(success)` ([`crate::predict`]) reaches the
//!    threshold among the tiers that have a healthy cortex (the highest of them when none
//!    does), moving down to a cheaper tier when the agent's [`budget`] would be exceeded;
//! 4. otherwise the request is unservable, with a hint on how to add a cortex.
//!
//! After the call, [`validate()`] checks the answer and [`Router::escalate`] moves a failed
//! request to the next tier up. Each decision becomes a [`RouteRecord`] for
//! `gyrus route explain`.

pub mod budget;
mod record;
pub mod skill;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use budget::{BudgetExceeded, BudgetLimit, Budgets, Limit};
pub use record::{RouteRecord, text_hash};
pub use skill::{MatchedBy, Skill, SkillIndex, SkillMatch, SkillThresholds};
pub use validate::{Invalid, validate};

use crate::predict::{Features, Predictor};
pub use crate::tier::Tier;
use crate::types::{Price, Usage};

/// A configured cortex as the router sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableCortex {
    /// Its name (`gyrus cortex list`).
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// Whether its last health check passed.
    pub healthy: bool,
    /// What it costs (zero for local cortices).
    #[serde(default)]
    pub price: Price,
}

/// One request to route.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteRequest {
    /// The request's text (the latest user turn).
    pub text: String,
    /// Its sentence embedding, when the caller has one (the bundled encoder's).
    pub embedding: Option<Vec<f32>>,
    /// The agent asking, whose budget pays.
    pub agent: String,
    /// Whether the answer must be able to call tools (an agent loop with tools offered):
    /// no reactive skill, and no tier below [`RouterConfig::tool_tier`].
    pub needs_tools: bool,
    /// The configured cortices, in order of preference within a tier.
    pub available: Vec<AvailableCortex>,
    /// A cortex the caller asks for by name.
    pub forced: Option<String>,
    /// Now, in milliseconds since the Unix epoch (budgets' windows are measured on it).
    pub now: u64,
}

/// How the router decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterConfig {
    /// The least predicted `P(success)` a tier needs to be chosen over a dearer one.
    pub threshold: f64,
    /// The cheapest tier that can drive tools.
    pub tool_tier: Tier,
    /// The output tokens a call is assumed to use when estimating its cost.
    pub expected_output_tokens: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            threshold: 0.7,
            tool_tier: Tier::Tactical,
            expected_output_tokens: 512,
        }
    }
}

/// The predictor's priors before any outcome is known, per tier: the reactive tier is never
/// predicted to answer by itself (it answers through skills), and a frontier model usually
/// succeeds. With the default threshold, a new router picks the tactical tier where there is
/// one, else the strategic one, else the highest available.
pub const DEFAULT_PRIORS: [f64; 4] = [0.05, 0.55, 0.75, 0.9];

/// What serves a routed request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A reactive skill: call its tool, no model.
    Skill(SkillMatch),
    /// The named cortex.
    Cortex(String),
}

/// A request sent somewhere, with what escalation needs to move it up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The tier.
    pub tier: Tier,
    /// The skill or cortex.
    pub target: Target,
    /// Why, in words.
    pub reason: String,
    /// Predicted `P(success)` per tier, cheapest first; empty when the predictor was not asked.
    pub predicted: Vec<f64>,
    /// The agent asking.
    pub agent: String,
    /// When it was decided.
    pub at: u64,
    /// The tokens the call is estimated to use.
    pub estimated_tokens: u64,
    /// The healthy cortices the request may use, in the order given; escalation climbs them.
    pub candidates: Vec<AvailableCortex>,
}

/// What the router decided.
// One per request, moved a few times: boxing the route would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Send it there.
    Route(Route),
    /// Nothing can serve it.
    Unservable {
        /// Why.
        reason: String,
        /// What the owner can do about it.
        hint: String,
    },
    /// Every cortex that could serve it would take the agent over its budget.
    OverBudget {
        /// The agent.
        agent: String,
        /// Why, in words.
        reason: String,
    },
    /// Escalation has no tier left.
    Exhausted {
        /// The highest tier tried.
        tier: Tier,
        /// Why, in words.
        reason: String,
    },
}

impl Decision {
    /// `skill`, `cortex`, `unservable`, `over_budget` or `exhausted`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Route(Route {
                target: Target::Skill(_),
                ..
            }) => "skill",
            Decision::Route(_) => "cortex",
            Decision::Unservable { .. } => "unservable",
            Decision::OverBudget { .. } => "over_budget",
            Decision::Exhausted { .. } => "exhausted",
        }
    }

    /// The route, when the request was sent somewhere.
    pub fn route(&self) -> Option<&Route> {
        match self {
            Decision::Route(route) => Some(route),
            _ => None,
        }
    }

    /// The tier chosen.
    pub fn tier(&self) -> Option<Tier> {
        self.route().map(|r| r.tier)
    }

    /// The cortex chosen (none for a reactive skill).
    pub fn cortex(&self) -> Option<&str> {
        match self.route().map(|r| &r.target) {
            Some(Target::Cortex(name)) => Some(name),
            _ => None,
        }
    }

    /// The skill chosen.
    pub fn skill(&self) -> Option<&SkillMatch> {
        match self.route().map(|r| &r.target) {
            Some(Target::Skill(found)) => Some(found),
            _ => None,
        }
    }

    /// The cortex's name or the skill's id.
    pub fn target(&self) -> Option<&str> {
        match self.route().map(|r| &r.target) {
            Some(Target::Cortex(name)) => Some(name),
            Some(Target::Skill(found)) => Some(found.skill.id),
            None => None,
        }
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Route(route) => &route.reason,
            Decision::Unservable { reason, .. }
            | Decision::OverBudget { reason, .. }
            | Decision::Exhausted { reason, .. } => reason,
        }
    }

    /// Predicted `P(success)` per tier (empty when the predictor was not asked).
    pub fn predicted(&self) -> &[f64] {
        self.route().map_or(&[], |r| &r.predicted)
    }
}

/// Bad configuration of the router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The sentence encoder failed on the skills' examples.
    #[error("embedding the skill examples failed: {0}")]
    Encoder(String),
    /// The skills and their example embeddings do not fit together.
    #[error("bad skill index: {0}")]
    Skills(String),
    /// The predictor predicts another number of tiers.
    #[error("the predictor has {got} tiers, the router needs {expected}")]
    Tiers {
        /// The router's tiers.
        expected: usize,
        /// The predictor's.
        got: usize,
    },
}

/// How to add a cortex, for unservable requests.
const ADD_CORTEX_HINT: &str = "add a cortex with `gyrus cortex add …` (the embedded model, an \
     Ollama or OpenAI-compatible server, or a frontier API key), then check it with `gyrus \
     cortex test`";

/// Decides where requests go.
#[derive(Debug, Clone)]
pub struct Router {
    config: RouterConfig,
    skills: SkillIndex,
    predictor: Predictor,
    budgets: Budgets,
}

impl Router {
    /// A router with these skills, a predictor with [`DEFAULT_PRIORS`] and no history, no
    /// budgets and the default configuration.
    pub fn new(skills: SkillIndex) -> Self {
        let predictor = Predictor::new(Tier::ALL.len());
        let predictor = match predictor.clone().with_priors(&DEFAULT_PRIORS) {
            Ok(with_priors) => with_priors,
            Err(_) => predictor,
        };
        Self {
            config: RouterConfig::default(),
            skills,
            predictor,
            budgets: Budgets::new(),
        }
    }

    /// The same router with another configuration.
    pub fn with_config(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// The same router with this predictor (one tier per [`Tier`]).
    pub fn with_predictor(mut self, predictor: Predictor) -> Result<Self, RouteError> {
        if predictor.tiers() != Tier::ALL.len() {
            return Err(RouteError::Tiers {
                expected: Tier::ALL.len(),
                got: predictor.tiers(),
            });
        }
        self.predictor = predictor;
        Ok(self)
    }

    /// The same router with these budgets.
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The skills.
    pub fn skills(&self) -> &SkillIndex {
        &self.skills
    }

    /// Replaces the skills (the daemon starts on rules alone and swaps in the embedded
    /// index once the encoder has run).
    pub fn set_skills(&mut self, skills: SkillIndex) {
        self.skills = skills;
    }

    /// The predictor.
    pub fn predictor(&self) -> &Predictor {
        &self.predictor
    }

    /// The predictor, to record outcomes and refit.
    pub fn predictor_mut(&mut self) -> &mut Predictor {
        &mut self.predictor
    }

    /// The budgets.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The budgets, to record what a call spent.
    pub fn budgets_mut(&mut self) -> &mut Budgets {
        &mut self.budgets
    }

    /// Where `request` goes.
    pub fn decide(&self, request: &RouteRequest) -> Decision {
        let min_tier = if request.needs_tools {
            self.config.tool_tier.max(Tier::Operational)
        } else {
            Tier::Operational
        };
        let candidates: Vec<AvailableCortex> = request
            .available
            .iter()
            .filter(|c| c.healthy && c.tier >= min_tier)
            .cloned()
            .collect();
        let estimated_tokens = estimate_tokens(&request.text, self.config.expected_output_tokens);
        let route = |tier, target, reason, predicted| Route {
            tier,
            target,
            reason,
            predicted,
            agent: request.agent.clone(),
            at: request.now,
            estimated_tokens,
            candidates: candidates.clone(),
        };

        let mut notes = String::new();
        if let Some(name) = &request.forced {
            match request.available.iter().find(|c| &c.name == name) {
                Some(cortex) if cortex.healthy => {
                    return match self.afford(&request.agent, cortex, estimated_tokens, request.now)
                    {
                        Ok(()) => Decision::Route(route(
                            cortex.tier,
                            Target::Cortex(name.clone()),
                            format!("forced cortex {name:?} ({})", cortex.tier),
                            Vec::new(),
                        )),
                        Err(exceeded) => Decision::OverBudget {
                            agent: request.agent.clone(),
                            reason: format!("forced cortex {name:?}: {exceeded}"),
                        },
                    };
                }
                Some(_) => notes = format!("forced cortex {name:?} is unhealthy; "),
                None => notes = format!("forced cortex {name:?} is not configured; "),
            }
        }

        if !request.needs_tools
            && let Some(found) = self
                .skills
                .matches(&request.text, request.embedding.as_deref())
        {
            let reason = format!("{notes}{found}");
            return Decision::Route(route(
                Tier::Reactive,
                Target::Skill(found),
                reason,
                Vec::new(),
            ));
        }

        if candidates.is_empty() {
            return self.unservable(request, min_tier, &notes);
        }

        let (predicted, predict_note) = self.predict(request);
        let mut tiers: Vec<Tier> = candidates.iter().map(|c| c.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let p = |tier: Tier| predicted.get(tier.index()).copied().unwrap_or(0.0);
        let threshold = self.config.threshold;
        let (chosen, why) = match tiers.iter().find(|&&t| p(t) >= threshold) {
            Some(&tier) => (
                tier,
                format!(
                    "predicted P(success)={:.2} ≥ {threshold:.2} at {tier}",
                    p(tier)
                ),
            ),
            None => {
                let highest = tiers[tiers.len() - 1];
                (
                    highest,
                    format!(
                        "no available tier reaches P(success) ≥ {threshold:.2}; the highest \
                         available, {highest}, has {:.2}",
                        p(highest)
                    ),
                )
            }
        };

        // The chosen tier's cortices, then cheaper tiers' from the nearest down.
        let mut order: Vec<&AvailableCortex> =
            candidates.iter().filter(|c| c.tier == chosen).collect();
        for &tier in tiers.iter().rev().filter(|&&t| t < chosen) {
            order.extend(candidates.iter().filter(|c| c.tier == tier));
        }
        let mut refused: Option<BudgetExceeded> = None;
        for cortex in order {
            match self.afford(&request.agent, cortex, estimated_tokens, request.now) {
                Ok(()) => {
                    let reason = match &refused {
                        None => format!("{notes}{predict_note}{why}"),
                        Some(exceeded) => format!(
                            "{notes}{predict_note}{why}, but {exceeded}; fell back to {:?} ({})",
                            cortex.name, cortex.tier
                        ),
                    };
                    return Decision::Route(route(
                        cortex.tier,
                        Target::Cortex(cortex.name.clone()),
                        reason,
                        predicted,
                    ));
                }
                Err(exceeded) => {
                    refused.get_or_insert(exceeded);
                }
            }
        }
        Decision::OverBudget {
            agent: request.agent.clone(),
            reason: refused.map_or_else(
                || "no cortex within budget".to_owned(),
                |exceeded| format!("{exceeded}, and no cheaper tier can serve"),
            ),
        }
    }

    /// Where a request goes after its answer at `decision` failed validation: the next tier
    /// up that has a cortex the agent can afford.
    pub fn escalate(&self, decision: &Decision, invalid: Invalid) -> Decision {
        let Decision::Route(from) = decision else {
            return decision.clone();
        };
        let mut above: Vec<&AvailableCortex> = from
            .candidates
            .iter()
            .filter(|c| c.tier > from.tier)
            .collect();
        // Stable: cortices keep their order of preference within a tier.
        above.sort_by_key(|c| c.tier);
        if above.is_empty() {
            return Decision::Exhausted {
                tier: from.tier,
                reason: format!(
                    "{invalid} at {}, and no tier above it has a cortex",
                    from.tier
                ),
            };
        }
        let mut refused: Option<BudgetExceeded> = None;
        for cortex in above {
            match self.afford(&from.agent, cortex, from.estimated_tokens, from.at) {
                Ok(()) => {
                    return Decision::Route(Route {
                        tier: cortex.tier,
                        target: Target::Cortex(cortex.name.clone()),
                        reason: format!("escalated from {} ({invalid})", from.tier),
                        ..from.clone()
                    });
                }
                Err(exceeded) => {
                    refused.get_or_insert(exceeded);
                }
            }
        }
        Decision::OverBudget {
            agent: from.agent.clone(),
            reason: refused.map_or_else(
                || "no cortex within budget".to_owned(),
                |exceeded| format!("escalation from {} ({invalid}): {exceeded}", from.tier),
            ),
        }
    }

    /// Whether the agent's budget allows a call to `cortex` (reactive skills cost nothing and
    /// are not asked about).
    fn afford(
        &self,
        agent: &str,
        cortex: &AvailableCortex,
        estimated_tokens: u64,
        now: u64,
    ) -> Result<(), BudgetExceeded> {
        let output = self.config.expected_output_tokens.min(estimated_tokens);
        let usage = Usage {
            input_tokens: estimated_tokens - output,
            output_tokens: output,
        };
        self.budgets
            .check(agent, cortex.price.cost(&usage), estimated_tokens, now)
    }

    /// Per tier `P(success)`, and a note when the prediction fell back to the base rates.
    fn predict(&self, request: &RouteRequest) -> (Vec<f64>, String) {
        let Some(embedding) = &request.embedding else {
            return (
                self.predictor.base_rates(),
                "no embedding, base rates: ".to_owned(),
            );
        };
        match self
            .predictor
            .predict(&Features::of(&request.text, embedding))
        {
            Ok(predicted) => (predicted, String::new()),
            Err(error) => (
                self.predictor.base_rates(),
                format!("{error}, base rates: "),
            ),
        }
    }

    fn unservable(&self, request: &RouteRequest, min_tier: Tier, notes: &str) -> Decision {
        let names = |filter: &dyn Fn(&AvailableCortex) -> bool| {
            request
                .available
                .iter()
                .filter(|c| filter(c))
                .map(|c| format!("{:?} ({})", c.name, c.tier))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (reason, hint) = if request.available.is_empty() {
            (
                "no cortex is configured and no reactive skill answers this".to_owned(),
                ADD_CORTEX_HINT.to_owned(),
            )
        } else if request.available.iter().all(|c| !c.healthy) {
            (
                format!("no configured cortex is healthy: {}", names(&|_| true)),
                "check them with `gyrus cortex test`, or ".to_owned() + ADD_CORTEX_HINT,
            )
        } else {
            (
                format!(
                    "the request needs tool use, which needs the {min_tier} tier or above; the \
                     healthy cortices are below it: {}",
                    names(&|c| c.healthy)
                ),
                ADD_CORTEX_HINT.replace("add a cortex", &format!("add a {min_tier} cortex")),
            )
        };
        Decision::Unservable {
            reason: format!("{notes}{reason}"),
            hint,
        }
    }
}

/// The tokens a call on `text` is estimated to use: about four characters a token in, plus
/// the expected output.
fn estimate_tokens(text: &str, output: u64) -> u64 {
    (text.len() as u64).div_ceil(4) + output
}

#[cfg(test)]
mod tests;
