//! The frontal lobe, as the daemon runs it: who should think about each request.
//!
//! [`Frontal`] holds the configured cortices (`user/cortices.toml`, re-read when it changes),
//! their drivers, the router ([`gyrus_cortex::route`]) with its reactive skills and its tier
//! predictor, a scheduler slot queue per cortex ([`gyrus_kernel::scheduler`]) in front of
//! every model call, and the route log (`memory/routes.db`). On top of them:
//!
//! - [`Frontal::ask`]: the agent loop behind `gyrus ask` (`ask.rs`): route; answer a reactive
//!   skill with one tool call through the broker; otherwise call the chosen cortex, run the
//!   tools it calls through the broker, feed the results back, validate the answer and
//!   escalate a failed one to the next tier.
//! - [`Frontal::explain`]: what the router would decide for a request, and why, without
//!   calling anything (`gyrus route explain`).
//! - [`Frontal::complete`] and [`Frontal::complete_stream`]: one model call for the
//!   OpenAI-compatible gateway, to `gyrus/auto` (the router chooses) or to a named cortex.
//! - [`Frontal::embed`]: the bundled sentence encoder, for `/v1/embeddings`.
//!
//! - `cortices.rs`: the registry as loaded: drivers, embedded models, health.
//! - `answer.rs` (pure): a reactive skill's answer in words.
//! - `log.rs`: the route log.

mod answer;
mod ask;
mod cortices;
mod log;
mod procedures;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use futures_util::StreamExt;
use gyrus_cortex::driver::{Driver, DriverError, EventStream, Timeouts};
use gyrus_cortex::predict::{Features, Outcome};
use gyrus_cortex::registry::{CortexSpec, Registry, RegistryError};
use gyrus_cortex::route::{
    BudgetLimit, Budgets, Decision, RouteRecord, RouteRequest, Router, RouterConfig, SkillIndex,
    Target, Tier, skill,
};
use gyrus_cortex::types::{
    ChatRequest, ChatResponse, Message, Price, Role, StopReason, StreamCollector, StreamEvent,
    ToolDef, Usage,
};
use gyrus_home::{Home, Layer};
use gyrus_kernel::Kernel;
use gyrus_kernel::scheduler::{Class, Permit, Policy, Scheduler, SchedulerError, SchedulerStats};
use gyrus_memory::embed::Embedder;
use gyrus_tools::Tools;
use serde::Serialize;

pub use answer::{bytes, skill_answer};
pub use ask::{AskRequest, AskResponse, AskToolCall, Attempt, PlanApproval};
pub use cortices::{CortexStatus, KeyEnv};
pub use log::{LogError, LoggedRoute, PastOutcome, RouteLog};

use cortices::{LocalModels, Reach, Snapshot, Stamp};

/// The model id that lets the router choose.
pub const AUTO_MODEL: &str = "gyrus/auto";

/// Everything [`Frontal::open`] needs.
pub struct FrontalInit {
    /// The home: `user/cortices.toml`, `memory/routes.db`, `runtime/models/`.
    pub home: Home,
    /// The kernel, whose broker decides every tool call.
    pub kernel: Arc<Kernel>,
    /// The tools reactive skills and models call.
    pub tools: Arc<Tools>,
    /// The sentence encoder (the memory fabric's).
    pub embedder: Arc<dyn Embedder>,
    /// Where model aliases (`smollm2`) resolve; `runtime/models/` unless set.
    pub models_dir: Option<PathBuf>,
    /// Timeouts of the HTTP drivers.
    pub timeouts: Timeouts,
    /// Reads the environment variables that hold keys.
    pub env: KeyEnv,
    /// `[router]` of gyrus.toml: the threshold and the agents' daily budgets.
    pub router: gyrus_home::RouterConfig,
    /// The memory fabric: the owner's sketch for model calls, and learned procedures.
    pub memory: Option<Arc<gyrus_memory::store::MemoryStore>>,
}

impl std::fmt::Debug for FrontalInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontalInit")
            .field("models_dir", &self.models_dir)
            .finish_non_exhaustive()
    }
}

/// Why a frontal-lobe call failed. Messages say what to do; none carries a key.
#[derive(Debug, thiserror::Error)]
pub enum FrontalError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No cortex has this name.
    #[error("no cortex named `{0}`: `gyrus cortex list` shows the configured ones")]
    UnknownCortex(String),
    /// The cortex cannot be used.
    #[error("cortex `{name}` cannot be used: {reason}")]
    Unavailable {
        /// The cortex.
        name: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Nothing configured can serve the request.
    #[error("{reason}; {hint}")]
    Unservable {
        /// Why.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The agent's budget stops the call.
    #[error("over budget: {0}")]
    OverBudget(String),
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The driver failed.
    #[error("cortex `{cortex}`: {source}")]
    Driver {
        /// The cortex.
        cortex: String,
        /// Why.
        source: DriverError,
    },
    /// The scheduler refused the call.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The encoder or the log failed.
    #[error("{0}")]
    Internal(String),
}

/// What [`Frontal::test`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    /// The cortex.
    pub cortex: String,
    /// Whether it answered.
    pub ok: bool,
    /// The model that answered, as it names itself.
    pub model: Option<String>,
    /// Its answer.
    pub reply: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Time to the answer (the embedded model's first load included).
    pub latency_ms: u64,
    /// Tokens used.
    pub usage: Usage,
}

/// A routing decision as `gyrus route explain` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// What was decided, with its tier, target and reason.
    pub decision: Decision,
    /// `skill`, `cortex`, `unservable`, `over_budget` or `exhausted`.
    pub kind: &'static str,
    /// The cortices the router could choose from, with their health.
    pub cortices: Vec<CortexStatus>,
    /// How long the decision took, the request's embedding included, in microseconds.
    pub micros: u64,
}

/// Where a gateway call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// `gyrus/auto`: the router chooses.
    Auto,
    /// `gyrus/<name>` or `<name>`: that cortex.
    Cortex(String),
}

impl ModelChoice {
    /// `gyrus/auto` is [`ModelChoice::Auto`]; `gyrus/<name>` and `<name>` name a cortex.
    pub fn parse(model: &str) -> Result<ModelChoice, FrontalError> {
        let name = model.strip_prefix("gyrus/").unwrap_or(model);
        if name == "auto" {
            return Ok(ModelChoice::Auto);
        }
        if name.is_empty() {
            return Err(FrontalError::BadRequest(
                "`model` is empty: use gyrus/auto or gyrus/<cortex> (GET /v1/models lists them)"
                    .into(),
            ));
        }
        Ok(ModelChoice::Cortex(name.to_owned()))
    }
}

/// Where a completed gateway call went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Served {
    /// The cortex that answered, or `skill:<id>` for a reactive skill.
    pub by: String,
    /// Its tier.
    pub tier: Tier,
    /// The route log's id of the decision.
    pub route_id: Option<i64>,
    /// Why it went there.
    pub reason: String,
}

impl Served {
    /// A reactive skill's answer.
    fn skill(found: &gyrus_cortex::route::SkillMatch, route_id: Option<i64>, reason: &str) -> Self {
        Served {
            by: format!("skill:{}", found.skill.id),
            tier: Tier::Reactive,
            route_id,
            reason: reason.to_owned(),
        }
    }
}

/// The frontal lobe. See the crate docs.
pub struct Frontal {
    registry_path: PathBuf,
    user_dir: PathBuf,
    models_dir: PathBuf,
    timeouts: Timeouts,
    env: KeyEnv,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises reloads and registry writes.
    reload: Mutex<()>,
    local: LocalModels,
    scheduler: Scheduler,
    router: Mutex<Router>,
    /// False while the skills' examples are being embedded; decisions wait for it, so the
    /// first questions after a start are matched by meaning like every later one.
    skills_ready: tokio::sync::watch::Sender<bool>,
    embedder: Arc<dyn Embedder>,
    kernel: Arc<Kernel>,
    tools: Arc<Tools>,
    memory: Option<Arc<gyrus_memory::store::MemoryStore>>,
    log: RouteLog,
}

impl std::fmt::Debug for Frontal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontal")
            .field("registry", &self.registry_path)
            .finish_non_exhaustive()
    }
}

impl Frontal {
    /// Opens the frontal lobe: reads the registry (an unreadable one leaves no cortex
    /// configured, and `gyrus cortex list` says why), embeds the skills' examples, opens the
    /// route log and warms the predictor with its known outcomes.
    pub fn open(init: FrontalInit) -> Result<Frontal, FrontalError> {
        let user_dir = init.home.layer(Layer::User);
        let registry_path = user_dir.join("cortices.toml");
        let models_dir = init
            .models_dir
            .unwrap_or_else(|| init.home.layer(Layer::Runtime).join("models"));
        let log = RouteLog::open(&init.home.layer(Layer::Memory).join("routes.db"))
            .map_err(|e| FrontalError::Internal(e.to_string()))?;
        // Rules answer at once; matching by meaning joins when the examples are embedded
        // (see `embed_skills_later`), so opening does not wait for the encoder.
        let mut router = Router::new(SkillIndex::rules_only(skill::builtin()))
            .with_config(RouterConfig {
                threshold: f64::from(init.router.threshold_percent) / 100.0,
                ..RouterConfig::default()
            })
            .with_budgets(budgets(&init.router));
        let past = log
            .outcomes(log::WARM_ROWS)
            .map_err(|e| FrontalError::Internal(e.to_string()))?;
        for p in past {
            let outcome = Outcome {
                tier: p.tier.index(),
                success: p.success,
            };
            // A row from another encoder (another dimension) is skipped, not fatal.
            let _ = router
                .predictor_mut()
                .observe(Features::of(&p.text, &p.embedding), &[outcome]);
        }
        let frontal = Frontal {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            registry_path,
            user_dir,
            models_dir,
            timeouts: init.timeouts,
            env: init.env,
            reload: Mutex::new(()),
            local: LocalModels::default(),
            scheduler: Scheduler::new(Policy::default()),
            router: Mutex::new(router),
            skills_ready: tokio::sync::watch::Sender::new(true),
            embedder: init.embedder,
            kernel: init.kernel,
            tools: init.tools,
            memory: init.memory,
            log,
        };
        frontal.reload();
        Ok(frontal)
    }

    /// Embeds the skills' examples on a thread of its own and then lets the router match by
    /// meaning too; until then (and if the encoder fails) skills match by rules.
    pub fn embed_skills_later(self: &Arc<Self>) {
        let frontal = Arc::downgrade(self);
        let embedder = self.embedder.clone();
        let ready = self.skills_ready.clone();
        ready.send_replace(false);
        let spawned = std::thread::Builder::new()
            .name("skill-embed".into())
            .spawn(move || {
                match embed_skills(embedder.as_ref()) {
                    Ok(skills) => {
                        if let Some(frontal) = frontal.upgrade() {
                            frontal.router().set_skills(skills);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reactive skills match by rules only"),
                }
                ready.send_replace(true);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "reactive skills match by rules only");
            self.skills_ready.send_replace(true);
        }
    }

    /// Embeds the skills' examples now (tests, and callers that want meaning-based matching
    /// from the first request).
    pub fn embed_skills_now(&self) -> Result<(), FrontalError> {
        let skills = embed_skills(self.embedder.as_ref())?;
        self.router().set_skills(skills);
        Ok(())
    }

    /// The registry file.
    pub fn registry_path(&self) -> &Path {
        &self.registry_path
    }

    /// Where model aliases resolve.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// The route log.
    pub fn log(&self) -> &RouteLog {
        &self.log
    }

    /// The scheduler's wait and turnaround statistics.
    pub fn scheduler_stats(&self) -> SchedulerStats {
        self.scheduler.snapshot()
    }

    /// Re-reads the registry file and rebuilds what changed; the scheduler follows.
    pub fn reload(&self) {
        let _one = self.reload.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = Snapshot::load(
            &self.registry_path,
            &self.user_dir,
            &self.models_dir,
            &self.env,
            self.timeouts,
        );
        if let Some(error) = &snapshot.error {
            tracing::warn!(%error, "the cortex registry cannot be read; no cortex is configured");
        }
        let old = self.current();
        for gone in old
            .cortices
            .iter()
            .filter(|c| snapshot.get(&c.spec.name).is_none())
        {
            self.scheduler.remove_cortex(&gone.spec.name);
        }
        for c in &snapshot.cortices {
            self.scheduler
                .set_cortex(&c.spec.name, c.spec.max_concurrency as usize);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The snapshot, re-read first when the file changed since (an edit by hand, or another
    /// `gyrus` writing it).
    fn fresh(&self) -> Arc<Snapshot> {
        let current = self.current();
        if current.stamp != Stamp::of(&self.registry_path) {
            self.reload();
            return self.current();
        }
        current
    }

    /// Every configured cortex with its health; the registry file's error, if it has one.
    pub fn list(&self) -> (Vec<CortexStatus>, Option<String>) {
        let snapshot = self.fresh();
        let list = snapshot
            .cortices
            .iter()
            .map(|c| {
                let loaded = matches!(&c.reach, Reach::Local(p) if self.local.is_loaded(p));
                cortices::status(c, loaded)
            })
            .collect();
        (list, snapshot.error.clone())
    }

    /// Adds a cortex to the registry (checked, written atomically) and loads it.
    pub fn add(&self, spec: CortexSpec) -> Result<CortexStatus, FrontalError> {
        {
            let _one = self.reload.lock().unwrap_or_else(|p| p.into_inner());
            let mut registry = Registry::open(&self.registry_path)?;
            registry.add(spec.clone())?;
            registry.save()?;
        }
        self.reload();
        let (list, _) = self.list();
        list.into_iter()
            .find(|c| c.name == spec.name)
            .ok_or_else(|| FrontalError::Internal("the cortex vanished after its add".into()))
    }

    /// Removes a cortex from the registry; calls waiting for it fail.
    pub fn remove(&self, name: &str) -> Result<CortexSpec, FrontalError> {
        let removed = {
            let _one = self.reload.lock().unwrap_or_else(|p| p.into_inner());
            let mut registry = Registry::open(&self.registry_path)?;
            let removed = registry.remove(name)?;
            registry.save()?;
            removed
        };
        self.reload();
        Ok(removed)
    }

    /// The driver of cortex `name`, loading the embedded model at its first use.
    async fn driver(&self, name: &str) -> Result<(Arc<dyn Driver>, CortexSpec), FrontalError> {
        let snapshot = self.fresh();
        let loaded = snapshot
            .get(name)
            .ok_or_else(|| FrontalError::UnknownCortex(name.to_owned()))?;
        let driver: Arc<dyn Driver> = match &loaded.reach {
            Reach::Http(driver) => driver.clone(),
            Reach::Local(path) => {
                Arc::new(self.local.driver(name, path).await.map_err(|reason| {
                    FrontalError::Unavailable {
                        name: name.to_owned(),
                        reason,
                    }
                })?)
            }
            Reach::Broken(reason) => {
                return Err(FrontalError::Unavailable {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
        };
        Ok((driver, loaded.spec.clone()))
    }

    /// One model call to cortex `name` for `agent`, queued in the scheduler.
    pub(crate) async fn call(
        &self,
        name: &str,
        agent: &str,
        class: Class,
        request: &ChatRequest,
    ) -> Result<(ChatResponse, CortexSpec), FrontalError> {
        let (driver, spec) = self.driver(name).await?;
        let mut request = request.clone();
        request.model = spec.model.clone();
        let _permit = self.scheduler.acquire(name, agent, class).await?;
        let response = driver
            .chat(&request)
            .await
            .map_err(|source| FrontalError::Driver {
                cortex: name.to_owned(),
                source,
            })?;
        Ok((response, spec))
    }

    /// Sends a short request to cortex `name` and reports what came back.
    pub async fn test(&self, name: &str) -> Result<TestReport, FrontalError> {
        let started = Instant::now();
        let mut request =
            ChatRequest::new("", vec![Message::user("Reply with the single word: ready")]);
        request.max_tokens = Some(16);
        request.temperature = Some(0.0);
        let outcome = self.call(name, "owner", Class::Interactive, &request).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        Ok(match outcome {
            Ok((response, _)) => TestReport {
                cortex: name.to_owned(),
                ok: true,
                model: Some(response.model.clone()),
                reply: Some(response.message.text_content()),
                error: None,
                latency_ms,
                usage: response.usage,
            },
            Err(FrontalError::UnknownCortex(n)) => return Err(FrontalError::UnknownCortex(n)),
            Err(e) => TestReport {
                cortex: name.to_owned(),
                ok: false,
                model: None,
                reply: None,
                error: Some(e.to_string()),
                latency_ms,
                usage: Usage::default(),
            },
        })
    }

    /// Embeds `texts` with the bundled sentence encoder, on a blocking thread.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, FrontalError> {
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&refs)
        })
        .await
        .map_err(|e| FrontalError::Internal(format!("the encoder stopped: {e}")))?
        .map_err(|e| FrontalError::BadRequest(format!("cannot embed: {}", e.0)))
    }

    /// The encoder's model id, for `/v1/embeddings` answers.
    pub fn embedding_model(&self) -> String {
        self.embedder.id().model.clone()
    }

    /// The model ids the gateway serves: `gyrus/auto`, then `gyrus/<cortex>` for each one.
    pub fn models(&self) -> Vec<String> {
        let snapshot = self.fresh();
        std::iter::once(AUTO_MODEL.to_owned())
            .chain(
                snapshot
                    .cortices
                    .iter()
                    .map(|c| format!("gyrus/{}", c.spec.name)),
            )
            .collect()
    }

    /// The request's embedding, or `None` when it cannot be embedded (blank text): the
    /// router then matches rules only and predicts from base rates.
    async fn embedding(&self, text: &str) -> Option<Vec<f32>> {
        // Every decision follows an embedding: wait here for the skills' index too.
        let _ = self.skills_ready.subscribe().wait_for(|ready| *ready).await;
        if text.trim().is_empty() {
            return None;
        }
        // Through the memory fabric's cache of query embeddings when there is one: the
        // procedure lookup before routing has usually just embedded this text.
        if let Some(memory) = self.memory.clone() {
            let text = text.to_owned();
            return tokio::task::spawn_blocking(move || memory.query_embedding(&text))
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.embed(vec![text.to_owned()])
            .await
            .ok()
            .and_then(|mut v| v.pop())
    }

    /// Decides where `text` goes, without calling anything.
    pub(crate) fn decide(
        &self,
        text: &str,
        embedding: Option<Vec<f32>>,
        agent: &str,
        forced: Option<String>,
        needs_tools: bool,
    ) -> Decision {
        let request = RouteRequest {
            text: text.to_owned(),
            embedding,
            agent: agent.to_owned(),
            needs_tools,
            available: self.fresh().available(),
            forced,
            now: now_ms(),
        };
        self.router().decide(&request)
    }

    pub(crate) fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the router would decide for `text` from `agent`, and why; nothing is called or
    /// logged.
    pub async fn explain(
        &self,
        text: &str,
        agent: &str,
        forced: Option<String>,
    ) -> Result<Explanation, FrontalError> {
        if text.trim().is_empty() {
            return Err(FrontalError::BadRequest(
                "the request is empty: give the text to route".into(),
            ));
        }
        let started = Instant::now();
        let embedding = self.embedding(text).await;
        let decision = self.decide(text, embedding, agent, forced, false);
        let micros = started.elapsed().as_micros() as u64;
        Ok(Explanation {
            kind: decision.kind(),
            decision,
            cortices: self.list().0,
            micros,
        })
    }

    /// Logs `decision` on `text`; a log failure is reported, not fatal to the answer.
    pub(crate) fn log_decision(
        &self,
        text: &str,
        embedding: Option<&[f32]>,
        record: &RouteRecord,
    ) -> Option<i64> {
        match self.log.insert(record, text, embedding) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot log a routing decision");
                None
            }
        }
    }

    /// Records what a routed request came to: the log row, the predictor, the budget.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn learn(
        &self,
        route_id: Option<i64>,
        record: &RouteRecord,
        text: &str,
        embedding: Option<&[f32]>,
        tiers_tried: &[(Tier, bool)],
        agent: &str,
    ) {
        if let Some(id) = route_id
            && let Err(e) = self.log.finish(id, record)
        {
            tracing::warn!(error = %e, "cannot log a routing outcome");
        }
        let mut router = self.router();
        router
            .budgets_mut()
            .record(agent, record.cost, record.tokens, now_ms());
        if let Some(embedding) = embedding {
            let outcomes: Vec<Outcome> = tiers_tried
                .iter()
                .filter(|(tier, _)| *tier != Tier::Reactive)
                .map(|&(tier, success)| Outcome {
                    tier: tier.index(),
                    success,
                })
                .collect();
            if !outcomes.is_empty() {
                let _ = router
                    .predictor_mut()
                    .observe(Features::of(text, embedding), &outcomes);
            }
        }
    }

    /// One gateway call: the router's choice (`gyrus/auto`) or the named cortex answers
    /// `request`, queued as interactive work of `agent`. With `gyrus/auto`, an answer that
    /// fails validation moves up a tier. A reactive skill answers a lone question that offers
    /// no tools.
    pub async fn complete(
        &self,
        agent: &str,
        choice: ModelChoice,
        request: ChatRequest,
        caller: &gyrus_policy::Principal,
    ) -> Result<(ChatResponse, Served), FrontalError> {
        check_request(&request)?;
        let started = Instant::now();
        let text = last_user_text(&request);
        let (decision, embedding) = self
            .gateway_decision(agent, &choice, &request, &text)
            .await?;
        let mut record = RouteRecord::new(now_ms(), agent, &text, &decision);
        let route_id = self.log_decision(&text, embedding.as_deref(), &record);
        let mut decision = decision;
        let mut tried = Vec::new();
        loop {
            let route = match &decision {
                Decision::Route(route) => route.clone(),
                other => return Err(refusal(other)),
            };
            let cortex = match &route.target {
                Target::Skill(found) => {
                    let (text_answer, _) = ask::run_skill(self, found, &text, caller).await;
                    record.latency_ms = started.elapsed().as_millis() as u64;
                    record.actual_outcome = Some(true);
                    self.learn(route_id, &record, &text, None, &[], agent);
                    let response = ChatResponse {
                        message: Message::assistant(text_answer),
                        usage: Usage::default(),
                        stop: StopReason::EndTurn,
                        model: format!("gyrus/skill:{}", found.skill.id),
                    };
                    return Ok((response, Served::skill(found, route_id, &route.reason)));
                }
                Target::Cortex(name) => name.clone(),
            };
            let (response, spec) = self
                .call(&cortex, agent, Class::Interactive, &request)
                .await?;
            let verdict = gyrus_cortex::route::validate(&response, &request.tools);
            tried.push((route.tier, verdict.is_ok()));
            record.tokens += response.usage.input_tokens + response.usage.output_tokens;
            record.cost += spec.price.unwrap_or_default().cost(&response.usage);
            let escalated = match (&choice, verdict) {
                (ModelChoice::Auto, Err(invalid)) => {
                    let next = self.router().escalate(&decision, invalid);
                    next.route().is_some().then_some(next)
                }
                _ => None,
            };
            match escalated {
                Some(next) => decision = next,
                None => {
                    record.tier = Some(route.tier);
                    record.cortex = Some(cortex.clone());
                    record.reason = route.reason.clone();
                    record.actual_outcome = tried.last().map(|t| t.1);
                    record.latency_ms = started.elapsed().as_millis() as u64;
                    self.learn(
                        route_id,
                        &record,
                        &text,
                        embedding.as_deref(),
                        &tried,
                        agent,
                    );
                    return Ok((
                        response,
                        Served {
                            by: cortex,
                            tier: route.tier,
                            route_id,
                            reason: route.reason,
                        },
                    ));
                }
            }
        }
    }

    /// Like [`Frontal::complete`], streamed: no escalation (the answer is already on its way
    /// when it could be judged). The scheduler's slot is held until the stream ends or is
    /// dropped. When it ends, the answer is validated like any other and its outcome, tokens
    /// and cost go to the route log, the budget and the predictor; a stream dropped before its
    /// end (the client went away) is logged with no outcome and what it had spent.
    pub async fn complete_stream(
        self: &Arc<Self>,
        agent: &str,
        choice: ModelChoice,
        request: ChatRequest,
        caller: &gyrus_policy::Principal,
    ) -> Result<(EventStream, Served), FrontalError> {
        check_request(&request)?;
        let started = Instant::now();
        let text = last_user_text(&request);
        let (decision, embedding) = self
            .gateway_decision(agent, &choice, &request, &text)
            .await?;
        let mut record = RouteRecord::new(now_ms(), agent, &text, &decision);
        let route_id = self.log_decision(&text, embedding.as_deref(), &record);
        let route = match &decision {
            Decision::Route(route) => route.clone(),
            other => return Err(refusal(other)),
        };
        let name = match &route.target {
            Target::Skill(found) => {
                let (answer, _) = ask::run_skill(self, found, &text, caller).await;
                record.latency_ms = started.elapsed().as_millis() as u64;
                record.actual_outcome = Some(true);
                self.learn(route_id, &record, &text, None, &[], agent);
                let events = vec![
                    Ok(StreamEvent::TextDelta(answer)),
                    Ok(StreamEvent::Done {
                        usage: Usage::default(),
                        stop: StopReason::EndTurn,
                    }),
                ];
                return Ok((
                    futures_util::stream::iter(events).boxed(),
                    Served::skill(found, route_id, &route.reason),
                ));
            }
            Target::Cortex(name) => name.clone(),
        };
        let (driver, spec) = self.driver(&name).await?;
        let mut request = request;
        request.model = spec.model.clone();
        let permit = self
            .scheduler
            .acquire(&name, agent, Class::Interactive)
            .await?;
        let stream = driver
            .chat_stream(&request)
            .await
            .map_err(|source| FrontalError::Driver {
                cortex: name.clone(),
                source,
            })?;
        record.tier = Some(route.tier);
        record.cortex = Some(name.clone());
        record.reason = route.reason.clone();
        let settle = Settle {
            frontal: Arc::clone(self),
            route_id,
            record,
            text,
            embedding,
            agent: agent.to_owned(),
            tools: request.tools.clone(),
            price: spec.price.unwrap_or_default(),
            started,
            seen: Some(StreamCollector::new()),
        };
        Ok((
            hold(stream, permit, settle),
            Served {
                by: name,
                tier: route.tier,
                route_id,
                reason: route.reason,
            },
        ))
    }

    async fn gateway_decision(
        &self,
        agent: &str,
        choice: &ModelChoice,
        request: &ChatRequest,
        text: &str,
    ) -> Result<(Decision, Option<Vec<f32>>), FrontalError> {
        if let ModelChoice::Cortex(name) = choice
            && self.fresh().get(name).is_none()
        {
            return Err(FrontalError::UnknownCortex(name.clone()));
        }
        let forced = match choice {
            ModelChoice::Auto => None,
            ModelChoice::Cortex(name) => Some(name.clone()),
        };
        // A named cortex needs no prediction: skip the encoder (≈10-20 ms of CPU), which
        // keeps the gateway's own cost to routing and bookkeeping.
        let embedding = match forced {
            None => self.embedding(text).await,
            Some(_) => None,
        };
        // Skills answer a lone question; a conversation or a tool-using client wants a model.
        let lone = request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .count()
            == 1;
        let needs_tools = !request.tools.is_empty() || !lone;
        let decision = self.decide(text, embedding.clone(), agent, forced.clone(), needs_tools);
        Ok((decision, embedding))
    }
}

/// The stream, with the scheduler's permit released and the outcome settled ([`Settle`])
/// when it ends or is dropped.
fn hold(stream: EventStream, permit: Permit, settle: Settle) -> EventStream {
    futures_util::stream::unfold(
        (stream, Some(permit), Some(settle)),
        |(mut stream, mut permit, mut settle)| async move {
            match stream.next().await {
                Some(item) => {
                    if let (Some(settle), Ok(event)) = (settle.as_mut(), &item) {
                        settle.see(event.clone());
                    }
                    Some((item, (stream, permit, settle)))
                }
                None => {
                    permit.take();
                    settle.take();
                    None
                }
            }
        },
    )
    .boxed()
}

/// What a streamed gateway call records when its stream ends or is dropped: its outcome
/// (validated like any answer once it is whole), tokens, cost and latency, into the route
/// log, the agent's budget and the predictor. Recording on drop covers both ends.
struct Settle {
    frontal: Arc<Frontal>,
    route_id: Option<i64>,
    record: RouteRecord,
    text: String,
    embedding: Option<Vec<f32>>,
    agent: String,
    tools: Vec<ToolDef>,
    price: Price,
    started: Instant,
    seen: Option<StreamCollector>,
}

impl Settle {
    fn see(&mut self, event: StreamEvent) {
        if let Some(seen) = self.seen.as_mut() {
            seen.push(event);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let Some(seen) = self.seen.take() else {
            return;
        };
        let done = seen.is_done();
        let answer = seen.finish("");
        let tier = self.record.tier;
        self.record.tokens = answer.usage.input_tokens + answer.usage.output_tokens;
        self.record.cost = self.price.cost(&answer.usage);
        self.record.latency_ms = self.started.elapsed().as_millis() as u64;
        // A stream cut off before its end says nothing about the model: no outcome.
        let outcome = done.then(|| gyrus_cortex::route::validate(&answer, &self.tools).is_ok());
        self.record.actual_outcome = outcome;
        let tried: Vec<(Tier, bool)> = match (tier, outcome) {
            (Some(tier), Some(ok)) => vec![(tier, ok)],
            _ => Vec::new(),
        };
        self.frontal.learn(
            self.route_id,
            &self.record,
            &self.text,
            self.embedding.as_deref(),
            &tried,
            &self.agent,
        );
    }
}

fn check_request(request: &ChatRequest) -> Result<(), FrontalError> {
    if request.messages.is_empty() {
        return Err(FrontalError::BadRequest(
            "`messages` is empty: send at least one message".into(),
        ));
    }
    Ok(())
}

/// The text of the latest user message (what the router routes on).
fn last_user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default()
}

/// The error for a decision that sends the request nowhere.
pub(crate) fn refusal(decision: &Decision) -> FrontalError {
    match decision {
        Decision::Unservable { reason, hint } => FrontalError::Unservable {
            reason: reason.clone(),
            hint: hint.clone(),
        },
        Decision::OverBudget { reason, .. } => FrontalError::OverBudget(reason.clone()),
        Decision::Exhausted { reason, .. } => FrontalError::Unservable {
            reason: reason.clone(),
            hint: "add a cortex of a higher tier with `gyrus cortex add`".into(),
        },
        Decision::Route(_) => FrontalError::Internal("a routed decision is no refusal".into()),
    }
}

/// Every agent's daily limits from `[router]`: the default, and `[router.agents.NAME]`'s
/// own limits instead for the agents named there (0 there lifts that limit).
fn budgets(config: &gyrus_home::RouterConfig) -> Budgets {
    let daily = |cents: u64, tokens: u64| BudgetLimit {
        max_cost_usd: (cents > 0).then(|| cents as f64 / 100.0),
        max_tokens: (tokens > 0).then_some(tokens),
        window_ms: BudgetLimit::DAY_MS,
    };
    let mut budgets = Budgets::new();
    if config.daily_budget_cents > 0 || config.daily_budget_tokens > 0 {
        budgets.default_limit(daily(config.daily_budget_cents, config.daily_budget_tokens));
    }
    for (agent, own) in &config.agents {
        budgets.limit(
            agent.clone(),
            daily(own.daily_budget_cents, own.daily_budget_tokens),
        );
    }
    budgets
}

/// The skill index with the built-in skills' examples embedded by `embedder`.
fn embed_skills(embedder: &dyn Embedder) -> Result<SkillIndex, FrontalError> {
    let skills = skill::builtin();
    let mut vectors = Vec::with_capacity(skills.len());
    for s in &skills {
        let embedded = embedder
            .embed(s.examples)
            .map_err(|e| FrontalError::Internal(format!("embedding the skills: {}", e.0)))?;
        vectors.push(embedded);
    }
    SkillIndex::from_vectors(skills, vectors).map_err(|e| FrontalError::Internal(e.to_string()))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
