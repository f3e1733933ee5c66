//! Procedural memory in the agent loop: a successful multi-step answer is learned as a
//! procedure in the caller's memory namespace, and a later request that matches its intent
//! template is replayed at the reactive tier, with no model call, each step through the
//! broker and checked; a failed replay falls back to the router.

use std::sync::Arc;

use gyrus_memory::model::{Kind, Namespace};
use gyrus_memory::procedure::{
    self, PROCEDURE_TAG, Procedure, Replay, StepRunner, Trace, TraceStep,
};
use gyrus_memory::store::{MemoryStore, Query, Update};
use gyrus_policy::{IntentSource, Principal};
use gyrus_tools::ToolCall;
use serde_json::Value;

use crate::Frontal;
use crate::ask::AskToolCall;

/// Procedures looked at for one request, at most.
const CANDIDATES: usize = 5;

/// A procedure that matched a request, and how its replay went.
pub(crate) struct Replayed {
    /// The memory item holding it.
    pub id: String,
    /// Its intent template.
    pub intent: String,
    /// Every step's call, in order.
    pub calls: Vec<AskToolCall>,
    /// The outputs, when every step ran and validated; otherwise why not.
    pub outcome: Result<Vec<Value>, String>,
}

/// The caller's memory namespace.
fn namespace(caller: &Principal) -> Option<Namespace> {
    Namespace::parse(&caller.id()).ok()
}

/// Finds the caller's procedure whose intent template binds `text` and replays it; `None`
/// when there is no memory fabric or no procedure matches. With a `plan` (the owner's asks),
/// the steps are that plan's calls; see [`Runner`].
pub(crate) async fn replay(
    frontal: &Frontal,
    caller: &Principal,
    text: &str,
    plan: Option<&str>,
) -> Option<Replayed> {
    let memory = frontal.memory.clone()?;
    let ns = namespace(caller)?;
    let tools = frontal.tools.clone();
    let kernel = frontal.kernel.clone();
    let caller = caller.clone();
    let text = text.to_owned();
    let plan = plan.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let (item, mut found, bindings) = find(&memory, &ns, &text)?;
        let mut runner = Runner {
            tools: &tools,
            kernel: &kernel,
            caller: &caller,
            intent: &text,
            procedure: &item,
            plan: plan.as_deref(),
            calls: Vec::new(),
        };
        let outcome = procedure::replay(&found, &bindings, &mut runner);
        let calls = runner.calls;
        found.record(&outcome);
        let update = Update {
            content: None,
            tags: None,
            metadata: Some(serde_json::json!({ "procedure": found })),
        };
        if let Err(e) = memory.update(&item, update, gyrus_memory::tools::now_ms()) {
            tracing::warn!(error = %e, procedure = %item, "cannot count a procedure's replay");
        }
        Some(Replayed {
            id: item,
            intent: found.intent.clone(),
            calls,
            outcome: match outcome {
                Replay::Done { outputs } => Ok(outputs),
                Replay::Failed { reason, .. } => Err(reason),
            },
        })
    })
    .await
    .ok()
    .flatten()
}

/// A procedure's parameters bound from a request: (name, value).
type Bindings = Vec<(String, String)>;

/// The best current procedure of `ns` whose template binds `text`.
fn find(memory: &MemoryStore, ns: &Namespace, text: &str) -> Option<(String, Procedure, Bindings)> {
    let query = Query {
        text: text.to_owned(),
        namespaces: vec![ns.clone()],
        kinds: vec![Kind::Procedural],
        tags: vec![PROCEDURE_TAG.to_owned()],
        limit: Some(CANDIDATES),
        ..Query::default()
    };
    let hits = match memory.query(&query, gyrus_memory::tools::now_ms()) {
        Ok(hits) => hits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up procedures");
            return None;
        }
    };
    hits.into_iter().find_map(|hit| {
        let found = procedure::from_item(&hit.item).ok()?;
        let bindings = procedure::bind(&found, text)?;
        Some((hit.item.id, found, bindings))
    })
}

/// Learns the answered request as a procedure in the caller's namespace, when every tool
/// call ran and there were at least two; returns the new item's id.
pub(crate) async fn learn(
    frontal: &Frontal,
    caller: &Principal,
    text: &str,
    steps: Vec<TraceStep>,
) -> Option<String> {
    let memory = frontal.memory.clone()?;
    let ns = namespace(caller)?;
    let trace = Trace {
        intent: text.to_owned(),
        steps,
        succeeded: true,
    };
    let learned = match procedure::learn(&trace) {
        Ok(learned) => learned,
        Err(e) => {
            tracing::debug!(reason = %e, "not learned as a procedure");
            return None;
        }
    };
    tokio::task::spawn_blocking(move || {
        memory
            .store(
                &ns,
                procedure::to_item(&learned),
                gyrus_memory::tools::now_ms(),
            )
            .map(|item| item.id)
            .map_err(|e| tracing::warn!(error = %e, "cannot store a learned procedure"))
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// Runs a replayed step through the broker as the caller. The steps were a model's calls
/// when learned. For the owner they are calls of the ask's plan, on the owner's question, like
/// the model's own ([`crate::ask`]): they run under the grants an approval of that question
/// created, else join the plan's consent request (and the replay fails over to the router).
/// For anyone else their intent is untrusted: policy and grants decide them.
struct Runner<'a> {
    tools: &'a Arc<gyrus_tools::Tools>,
    kernel: &'a Arc<gyrus_kernel::Kernel>,
    caller: &'a Principal,
    intent: &'a str,
    procedure: &'a str,
    plan: Option<&'a str>,
    calls: Vec<AskToolCall>,
}

impl StepRunner for Runner<'_> {
    fn run(&mut self, tool: &str, args: &Value) -> Result<Value, String> {
        let call = match self.plan {
            Some(plan) => ToolCall {
                principal: self.caller.clone(),
                tool: tool.to_owned(),
                args: args.clone(),
                intent: crate::ask::plan_intent(self.intent),
                intent_source: IntentSource::Plan(plan.to_owned()),
                plan_id: Some(plan.to_owned()),
            },
            None => ToolCall {
                principal: self.caller.clone(),
                tool: tool.to_owned(),
                args: args.clone(),
                intent: format!("replaying {} for: {}", self.procedure, self.intent),
                intent_source: IntentSource::Untrusted(format!("procedure:{}", self.procedure)),
                plan_id: None,
            },
        };
        let (made, output) =
            crate::ask::made(tool, args.clone(), self.tools.call(self.kernel, &call));
        let error = made.error.clone();
        self.calls.push(made);
        output.ok_or_else(|| error.unwrap_or_else(|| "the call did not run".into()))
    }
}
