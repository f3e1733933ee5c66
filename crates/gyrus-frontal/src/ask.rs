//! The agent loop behind `gyrus ask`.
//!
//! 1. Route the question ([`Frontal::decide`]); log the decision.
//! 2. A reactive skill: call its read-only tool through the broker, as the caller, on the
//!    caller's own intent; answer from its output in words. No model.
//! 3. A cortex: send the conversation (a short system prompt and the question). From the
//!    tool tier up, the registry's tools are offered. The model's tool calls go through the
//!    broker as the caller; their results (or refusals) are fed back. The transcript is
//!    repaired before every call, so every tool call has its result.
//!    - For the owner, the calls are a **plan** on the owner's behalf: the intent is the
//!      owner's question (`IntentSource::Plan`), and the core policy `core.plan` runs a call
//!      only under a grant the owner's approval created, else asks. Every call of the answer
//!      joins one consent request (the broker bundles per plan id), so the owner approves the
//!      plan once, seeing every call; approving creates a grant for exactly each listed call.
//!      With `wait_ms`, the loop waits for the answer and goes on (approved: the calls run;
//!      denied: the model hears so); without, it answers with the plan to approve.
//!    - For anyone else, the intent is untrusted (the model's idea, not the owner's words):
//!      policy and grants alone decide, and nobody is asked.
//! 4. Every answer is validated; one that fails moves to the next tier up with a cortex the
//!    agent can afford ([`gyrus_cortex::route::Router::escalate`]).
//! 5. The outcome goes to the log, the predictor and the agent's budget.

use std::time::Instant;

use gyrus_cortex::route::{Decision, RouteRecord, SkillMatch, Target, Tier, validate};
use gyrus_cortex::types::{ChatRequest, Message, ToolChoice, ToolDef, ToolResult, Usage, repair};
use gyrus_kernel::scheduler::Class;
use gyrus_policy::{IntentSource, Principal};
use gyrus_tools::ToolCall;
use serde::{Deserialize, Serialize};

use crate::procedures::Replayed;
use crate::{Frontal, FrontalError, refusal};
use gyrus_memory::procedure::TraceStep;
use gyrus_memory::text::prefix as cut;

/// Model turns one question may take (each tool round is one).
pub const MAX_STEPS: usize = 8;

/// Output tokens a model turn may use.
pub const MAX_TOKENS: u32 = 512;

/// The bytes of a tool's output fed back to the model; longer output is cut.
pub const MAX_TOOL_RESULT: usize = 16 * 1024;

const SYSTEM_PROMPT: &str = "You are gyrus, the owner's assistant on this machine. Answer \
     briefly and plainly. When tools are offered and one would give a better answer, call it; \
     every call is checked against the owner's policy and may be refused.";

/// A question for the agent loop.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question.
    pub text: String,
    /// The agent whose budget pays and whose calls the scheduler shares fairly; the caller's
    /// id when unset.
    #[serde(default)]
    pub agent: Option<String>,
    /// A cortex to use instead of the router's choice.
    #[serde(default)]
    pub cortex: Option<String>,
    /// When the model's calls need the owner's approval, wait up to this many milliseconds
    /// for it and go on; 0 or unset answers at once with the plan to approve.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A plan of tool calls waiting for (or answered by) the owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanApproval {
    /// The plan's id (`plan_id` in the audit trail).
    pub plan_id: String,
    /// The one consent request bundling its calls (`gyrus approve ID`).
    pub consent_id: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// The calls the owner is asked about, as `action resource`.
    pub calls: Vec<String>,
}

/// One tool call the loop made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskToolCall {
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// The call's action id (`req_…`; `gyrus undo` takes it), when it reached the broker.
    pub action_id: Option<String>,
    /// The audit entry of the decision that settled it (`gyrus audit why SEQ`).
    pub audit_seq: Option<u64>,
    /// `allow`, `deny`, `ask`, or `error` when it never reached the broker.
    pub decision: String,
    /// For `ask`: the consent request it joined.
    pub consent_id: Option<String>,
    /// Whether it ran and succeeded.
    pub ok: bool,
    /// Why it was refused or failed.
    pub error: Option<String>,
}

/// One model answer the loop judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// The cortex.
    pub cortex: String,
    /// Its tier.
    pub tier: Tier,
    /// Whether the answer passed validation.
    pub valid: bool,
    /// Why not.
    pub invalid: Option<String>,
}

/// What `gyrus ask` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskResponse {
    /// The answer.
    pub answer: String,
    /// The tier that answered.
    pub tier: Tier,
    /// The cortex that answered; none for a reactive skill.
    pub cortex: Option<String>,
    /// The reactive skill that answered, if one did.
    pub skill: Option<String>,
    /// The learned procedure (its memory item) replayed to answer, if one was.
    pub procedure: Option<String>,
    /// The procedure learned from this answer's tool calls, if one was.
    pub learned: Option<String>,
    /// Why the router sent it there (and, after an escalation, why it moved).
    pub reason: String,
    /// Whether the final answer passed validation.
    pub validated: bool,
    /// The model answers judged, in order.
    pub attempts: Vec<Attempt>,
    /// The tool calls, in order.
    pub tool_calls: Vec<AskToolCall>,
    /// Tokens used by every model call together.
    pub usage: Usage,
    /// Their cost in US dollars.
    pub cost: f64,
    /// Time from question to answer.
    pub latency_ms: u64,
    /// The route log's id of the decision.
    pub route_id: Option<i64>,
    /// The plan of tool calls put to the owner, if one was.
    pub approval: Option<PlanApproval>,
}

impl Frontal {
    /// Answers `request` for `caller`. See the module docs.
    pub async fn ask(
        &self,
        caller: &Principal,
        request: AskRequest,
    ) -> Result<AskResponse, FrontalError> {
        let text = request.text.trim().to_owned();
        if text.is_empty() {
            return Err(FrontalError::BadRequest(
                "the question is empty: give the text to ask".into(),
            ));
        }
        let agent = request.agent.unwrap_or_else(|| caller.id());
        let started = Instant::now();
        let forced = request.cortex;
        // What the loop does for the owner is one plan: a replayed procedure's steps and the
        // model's calls alike; every call of it needing approval joins one consent request.
        let plan = match caller {
            Principal::Owner { .. } => Some(plan_id()),
            _ => None,
        };
        let replayed = match forced {
            None => crate::procedures::replay(self, caller, &text, plan.as_deref()).await,
            Some(_) => None,
        };
        if let Some(Replayed {
            id,
            intent,
            calls,
            outcome: Ok(outputs),
        }) = &replayed
        {
            return Ok(self.replayed(&agent, &text, id, intent, calls, outputs, started));
        }
        let embedding = self.embedding(&text).await;
        let mut decision = self.decide(&text, embedding.clone(), &agent, forced, false);
        let mut record = RouteRecord::new(crate::now_ms(), &agent, &text, &decision);
        let route_id = self.log_decision(&text, embedding.as_deref(), &record);

        let mut response = AskResponse {
            answer: String::new(),
            tier: Tier::Reactive,
            cortex: None,
            skill: None,
            procedure: None,
            learned: None,
            reason: decision.reason().to_owned(),
            validated: false,
            attempts: Vec::new(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            cost: 0.0,
            latency_ms: 0,
            route_id,
            approval: None,
        };
        let wait = std::time::Duration::from_millis(request.wait_ms.unwrap_or(0));

        if let Some(Replayed {
            id,
            calls,
            outcome: Err(why),
            ..
        }) = replayed
        {
            response.reason = format!("procedure {id} failed ({why}); {}", response.reason);
            response.tool_calls.extend(calls);
        }
        let route = match &decision {
            Decision::Route(route) => route.clone(),
            other => {
                record.actual_outcome = Some(false);
                self.learn(route_id, &record, &text, None, &[], &agent);
                return Err(refusal(other));
            }
        };
        if let Target::Skill(found) = &route.target {
            let (answer, call) = run_skill(self, found, &text, caller).await;
            response.validated = call.ok;
            response.answer = answer;
            response.skill = Some(found.skill.id.to_owned());
            response.tool_calls.push(call);
            response.latency_ms = started.elapsed().as_millis() as u64;
            record.actual_outcome = Some(response.validated);
            record.latency_ms = response.latency_ms;
            self.learn(route_id, &record, &text, None, &[], &agent);
            return Ok(response);
        }

        let tool_tier = self.router().config().tool_tier;
        let mut messages = vec![
            Message::system(system_prompt(self, caller).await),
            Message::user(text.clone()),
        ];
        let mut tried: Vec<(Tier, bool)> = Vec::new();
        let mut trace: Vec<TraceStep> = Vec::new();
        let mut steps = 0;
        loop {
            let Decision::Route(route) = &decision else {
                // Escalation found nothing better: keep the last answer, marked unvalidated.
                response.reason = format!("{}; {}", response.reason, decision.reason());
                break;
            };
            let Target::Cortex(cortex) = &route.target else {
                break;
            };
            steps += 1;
            if steps > MAX_STEPS {
                response.reason =
                    format!("{}; stopped after {MAX_STEPS} model turns", response.reason);
                break;
            }
            let offered = if route.tier >= tool_tier {
                offered_tools(self)
            } else {
                Vec::new()
            };
            let mut chat = ChatRequest::new("", repair(messages.clone()));
            chat.tools = offered.iter().map(|(_, def)| def.clone()).collect();
            chat.tool_choice = ToolChoice::Auto;
            chat.max_tokens = Some(MAX_TOKENS);
            chat.temperature = Some(0.0);
            let (answer, spec) = self.call(cortex, &agent, Class::Interactive, &chat).await?;
            response.usage.input_tokens += answer.usage.input_tokens;
            response.usage.output_tokens += answer.usage.output_tokens;
            response.cost += spec.price.unwrap_or_default().cost(&answer.usage);
            response.tier = route.tier;
            response.cortex = Some(cortex.clone());
            let verdict = validate(&answer, &chat.tools);
            response.attempts.push(Attempt {
                cortex: cortex.clone(),
                tier: route.tier,
                valid: verdict.is_ok(),
                invalid: verdict.as_ref().err().map(ToString::to_string),
            });
            tried.push((route.tier, verdict.is_ok()));
            match verdict {
                Err(invalid) => {
                    response.answer = answer.message.text_content();
                    response.validated = false;
                    let next = self.router().escalate(&decision, invalid);
                    if next.route().is_some() {
                        response.reason = format!("{}; {}", response.reason, next.reason());
                    }
                    decision = next;
                }
                Ok(()) => {
                    let calls: Vec<_> = answer.message.tool_calls().cloned().collect();
                    response.answer = answer.message.text_content();
                    response.validated = true;
                    if calls.is_empty() {
                        break;
                    }
                    messages.push(answer.message.clone());
                    let how = Calling {
                        caller,
                        question: &text,
                        cortex,
                        plan: plan.as_deref(),
                    };
                    let mut turn = Vec::with_capacity(calls.len());
                    for call in calls {
                        let tool = offered
                            .iter()
                            .find(|(_, def)| def.name == call.name)
                            .map_or_else(|| call.name.clone(), |(name, _)| name.clone());
                        let ran =
                            run_tool(self, &how, &tool, &call.id, call.arguments.clone()).await;
                        turn.push((tool, call.arguments.clone(), ran));
                    }
                    let asked = turn.iter().find_map(|(_, _, (_, made, _))| {
                        made.consent_id.clone().filter(|_| made.decision == "ask")
                    });
                    let mut pending = false;
                    if let Some(consent_id) = asked {
                        let approval = self
                            .await_approval(plan.as_deref(), &consent_id, wait)
                            .await;
                        let status = approval.status.clone();
                        pending = status == "pending" || status == "missing";
                        response.approval = Some(approval);
                        if status == "approved" {
                            // The grants exist now: the asked calls run, under them.
                            for (tool, args, ran) in &mut turn {
                                if ran.1.decision == "ask" {
                                    response.tool_calls.push(ran.1.clone());
                                    *ran = run_tool(self, &how, tool, &ran.0.call_id, args.clone())
                                        .await;
                                }
                            }
                        } else if !pending {
                            for (_, _, ran) in &mut turn {
                                if ran.1.decision == "ask" {
                                    ran.0.content = format!(
                                        "refused: the owner {status} this plan's consent request {consent_id}"
                                    );
                                }
                            }
                        }
                    }
                    for (tool, args, (result, made, output)) in turn {
                        trace.push(TraceStep {
                            tool,
                            args,
                            ok: output.is_some(),
                            output: output.unwrap_or(serde_json::Value::Null),
                        });
                        response.tool_calls.push(made);
                        messages.push(Message::tool_result(result));
                    }
                    if pending && let Some(approval) = &response.approval {
                        response.answer = plan_message(approval);
                        response.validated = false;
                        break;
                    }
                }
            }
        }
        if response.validated && !trace.is_empty() && trace.iter().all(|s| s.ok) {
            response.learned = crate::procedures::learn(self, caller, &text, trace).await;
        }
        response.latency_ms = started.elapsed().as_millis() as u64;
        record.tier = Some(response.tier);
        record.cortex = response.cortex.clone();
        record.reason = response.reason.clone();
        record.actual_outcome = Some(response.validated);
        record.tokens = response.usage.input_tokens + response.usage.output_tokens;
        record.cost = response.cost;
        record.latency_ms = response.latency_ms;
        self.learn(
            route_id,
            &record,
            &text,
            embedding.as_deref(),
            &tried,
            &agent,
        );
        Ok(response)
    }
}

impl Frontal {
    /// The answer of a procedure that replayed to the end: logged like a decision at the
    /// reactive tier, with no model call.
    #[allow(clippy::too_many_arguments)]
    fn replayed(
        &self,
        agent: &str,
        text: &str,
        id: &str,
        intent: &str,
        calls: &[AskToolCall],
        outputs: &[serde_json::Value],
        started: Instant,
    ) -> AskResponse {
        let reason = format!("learned procedure {id} (\"{intent}\"), replayed with no model");
        let last = outputs.last().map(|o| o.to_string()).unwrap_or_default();
        let answer = format!(
            "Ran the learned procedure \"{intent}\" ({} steps). Last result: {}",
            outputs.len(),
            cut(&last, 2048)
        );
        let latency_ms = started.elapsed().as_millis() as u64;
        let record = RouteRecord {
            at: crate::now_ms(),
            agent: agent.to_owned(),
            text_hash: gyrus_cortex::route::text_hash(text),
            kind: "procedure".into(),
            tier: Some(Tier::Reactive),
            cortex: Some(format!("procedure:{id}")),
            reason: reason.clone(),
            predicted: Vec::new(),
            actual_outcome: Some(true),
            tokens: 0,
            cost: 0.0,
            latency_ms,
        };
        let route_id = self.log_decision(text, None, &record);
        AskResponse {
            answer,
            tier: Tier::Reactive,
            cortex: None,
            skill: None,
            procedure: Some(id.to_owned()),
            learned: None,
            reason,
            validated: true,
            attempts: Vec::new(),
            tool_calls: calls.to_vec(),
            usage: Usage::default(),
            cost: 0.0,
            latency_ms,
            route_id,
            approval: None,
        }
    }
}

impl Frontal {
    /// The plan's consent request as it stands, after waiting up to `wait` for the owner to
    /// answer it (approve, deny) or for it to expire.
    async fn await_approval(
        &self,
        plan: Option<&str>,
        consent_id: &str,
        wait: std::time::Duration,
    ) -> PlanApproval {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the next answer before looking, so one in between is not missed.
            let answered = self.kernel.next_consent_answer();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let (kernel, id) = (self.kernel.clone(), consent_id.to_owned());
            let found = tokio::task::spawn_blocking(move || {
                kernel.consents().get(&id, std::time::SystemTime::now())
            })
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
            let status = found
                .as_ref()
                .and_then(|c| serde_json::to_value(c.status).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "missing".into());
            let approval = PlanApproval {
                plan_id: plan.unwrap_or_default().to_owned(),
                consent_id: consent_id.to_owned(),
                status,
                calls: found
                    .iter()
                    .flat_map(|c| &c.calls)
                    .map(|c| format!("{} {}", c.action, c.resource))
                    .collect(),
            };
            if approval.status != "pending" || tokio::time::Instant::now() >= deadline {
                return approval;
            }
            tokio::select! {
                _ = &mut answered => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.kernel.closing() => return approval,
            }
        }
    }
}

/// The system prompt: who gyrus is and, for the owner, their sketch (the compact profile the
/// memory fabric keeps). Other principals never see the owner's sketch.
async fn system_prompt(frontal: &Frontal, caller: &Principal) -> String {
    let Some(memory) = frontal.memory.clone() else {
        return SYSTEM_PROMPT.to_owned();
    };
    if !matches!(caller, Principal::Owner { .. }) {
        return SYSTEM_PROMPT.to_owned();
    }
    let sketch = tokio::task::spawn_blocking(move || gyrus_memory::tools::current_sketch(&memory))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(_, sketch)| sketch)
        .filter(|sketch| !sketch.is_empty());
    match sketch {
        Some(sketch) => format!(
            "{SYSTEM_PROMPT}\n\nWhat you know about the owner (their sketch):\n{}",
            sketch.render().trim()
        ),
        None => SYSTEM_PROMPT.to_owned(),
    }
}

/// Runs a reactive skill's tool as `caller` on the caller's own question; returns the answer
/// in words and the call.
pub(crate) async fn run_skill(
    frontal: &Frontal,
    found: &SkillMatch,
    text: &str,
    caller: &Principal,
) -> (String, AskToolCall) {
    let call = ToolCall {
        principal: caller.clone(),
        tool: found.skill.tool.to_owned(),
        args: found.skill.args.clone(),
        intent: text.to_owned(),
        intent_source: caller_intent(caller),
        plan_id: None,
    };
    let made = call_tool(frontal, call).await;
    let answer = match &made.1 {
        Some(output) => crate::skill_answer(found.skill.id, output)
            .unwrap_or_else(|| serde_json::to_string_pretty(output).unwrap_or_default()),
        None => format!(
            "{} could not answer: {}",
            found.skill.description,
            made.0.error.clone().unwrap_or_default()
        ),
    };
    (answer, made.0)
}

/// The intent of a request the caller typed: the owner's own words are trusted; anyone
/// else's are not (policy and grants decide).
fn caller_intent(caller: &Principal) -> IntentSource {
    match caller {
        Principal::Owner { .. } => IntentSource::Owner,
        other => IntentSource::Untrusted(other.id()),
    }
}

/// Who makes a model's tool calls, and on what intent.
struct Calling<'a> {
    caller: &'a Principal,
    question: &'a str,
    cortex: &'a str,
    /// The plan the calls belong to (the owner's asks only).
    plan: Option<&'a str>,
}

/// Runs one tool call the model asked for; returns the result to feed back and the record.
async fn run_tool(
    frontal: &Frontal,
    how: &Calling<'_>,
    tool: &str,
    call_id: &str,
    args: serde_json::Value,
) -> (ToolResult, AskToolCall, Option<serde_json::Value>) {
    let (intent_source, plan_id) = match how.plan {
        Some(plan) => (IntentSource::Plan(plan.to_owned()), Some(plan.to_owned())),
        None => (
            IntentSource::Untrusted(format!("model:{}", how.cortex)),
            None,
        ),
    };
    let call = ToolCall {
        principal: how.caller.clone(),
        tool: tool.to_owned(),
        args,
        intent: plan_intent(how.question),
        intent_source,
        plan_id,
    };
    let (made, output) = call_tool(frontal, call).await;
    let content = match (&output, &made.error) {
        (Some(output), _) => cut(&output.to_string(), MAX_TOOL_RESULT).to_owned(),
        (None, Some(error)) => format!("{} ({}): {error}", made.decision, tool),
        (None, None) => format!("{} ({tool})", made.decision),
    };
    (
        ToolResult {
            call_id: call_id.to_owned(),
            content,
            is_error: output.is_none(),
        },
        made,
        output,
    )
}

/// Calls a tool through the broker on a blocking thread.
async fn call_tool(frontal: &Frontal, call: ToolCall) -> (AskToolCall, Option<serde_json::Value>) {
    let tool = call.tool.clone();
    let args = call.args.clone();
    let tools = frontal.tools.clone();
    let kernel = frontal.kernel.clone();
    match tokio::task::spawn_blocking(move || tools.call(&kernel, &call)).await {
        Ok(result) => made(&tool, args, result),
        Err(e) => (
            AskToolCall {
                tool,
                args,
                action_id: None,
                audit_seq: None,
                decision: "error".into(),
                consent_id: None,
                ok: false,
                error: Some(format!("the tool call stopped: {e}")),
            },
            None,
        ),
    }
}

/// The record of a tool call from what [`gyrus_tools::Tools::call`] returned, and its output
/// when it ran and succeeded.
pub(crate) fn made(
    tool: &str,
    args: serde_json::Value,
    result: Result<gyrus_tools::CallResult, gyrus_tools::ToolError>,
) -> (AskToolCall, Option<serde_json::Value>) {
    match result {
        Ok(result) => {
            let ok = result.is_ok();
            let error = result.error.as_ref().map(|e| e.message.clone());
            (
                AskToolCall {
                    tool: tool.to_owned(),
                    args,
                    action_id: Some(result.action_id.clone()),
                    audit_seq: Some(result.decision.seq),
                    decision: outcome_name(result.decision.outcome).to_owned(),
                    consent_id: result.decision.consent_id.clone(),
                    ok,
                    error: if ok {
                        None
                    } else {
                        error.or(Some(result.decision.reason.clone()))
                    },
                },
                result.output.filter(|_| ok),
            )
        }
        Err(e) => (
            AskToolCall {
                tool: tool.to_owned(),
                args,
                action_id: None,
                audit_seq: None,
                decision: "error".into(),
                consent_id: None,
                ok: false,
                error: Some(e.to_string()),
            },
            None,
        ),
    }
}

/// A new plan id, unique in this daemon's life and across restarts: `pl_`, the time in
/// milliseconds and a counter, in hex.
fn plan_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("pl_{:x}{:04x}", crate::now_ms(), n & 0xffff)
}

/// The intent of a model's calls on a question: the question, in the owner's words. An
/// approval's grants require exactly this intent, so they cover this question only.
pub(crate) fn plan_intent(question: &str) -> String {
    format!("answering: {}", cut(question, 512))
}

/// What the owner is told when a plan waits for them.
fn plan_message(approval: &PlanApproval) -> String {
    format!(
        "This needs your approval: {} tool call{} in plan {} ({}). Approve them at once with \
         `gyrus approve {}` (or deny with `gyrus deny {}`), then ask again; `gyrus ask --wait \
         SECS` goes on as soon as you answer.",
        approval.calls.len(),
        if approval.calls.len() == 1 { "" } else { "s" },
        approval.plan_id,
        approval.calls.join("; "),
        approval.consent_id,
        approval.consent_id,
    )
}

fn outcome_name(outcome: gyrus_policy::Outcome) -> &'static str {
    match outcome {
        gyrus_policy::Outcome::Allow => "allow",
        gyrus_policy::Outcome::Deny => "deny",
        gyrus_policy::Outcome::Ask => "ask",
    }
}

/// The registry's tools as model tool definitions: (gyrus name, definition). Wire names
/// replace `.` with `__`, since vendors allow only `[A-Za-z0-9_-]` in function names.
fn offered_tools(frontal: &Frontal) -> Vec<(String, ToolDef)> {
    frontal
        .tools
        .list()
        .into_iter()
        .map(|spec| {
            (
                spec.name.clone(),
                ToolDef {
                    name: spec.name.replace('.', "__"),
                    description: spec.description.clone(),
                    parameters: spec.input_schema.clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_s_words_are_trusted() {
        assert_eq!(
            caller_intent(&Principal::Owner { uid: 0 }),
            IntentSource::Owner
        );
    }
}
