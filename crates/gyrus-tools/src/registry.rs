//! The registry and the one call path: arguments checked against the schema, every
//! requirement decided by the consent broker (each decision in the audit trail), the tool
//! run, its undo data kept, its outcome recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gyrus_bus::Subject;
use gyrus_kernel::{Kernel, Recorded};
use gyrus_policy::{ActionRequest, IntentSource, Outcome, Principal};
use serde::Serialize;

use crate::env::ToolEnv;
use crate::spec::{Requirement, ToolError, ToolSpec};
use crate::typed::{CallContext, Tool};
use crate::undo::UndoJournal;

/// A call as a caller asks for it.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// Who calls.
    pub principal: Principal,
    /// The tool's name.
    pub tool: String,
    /// The arguments (a JSON object).
    pub args: serde_json::Value,
    /// Why, in words.
    pub intent: String,
    /// Where the intent came from.
    pub intent_source: IntentSource,
    /// The plan the call belongs to, if any.
    pub plan_id: Option<String>,
}

/// The broker's verdict on a call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallDecision {
    /// `allow`, `deny` or `ask`.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
    /// The audit entry of the decision that settled the call.
    pub seq: u64,
    /// The grant it relied on.
    pub grant_id: Option<String>,
    /// For *ask*: the consent request the owner answers (`gyrus approvals`).
    pub consent_id: Option<String>,
}

/// A failed call's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallError {
    /// `denied`, `ask`, or a [`ToolError::code`].
    pub code: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// What a call came to: `{action_id, decision, output | error}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallResult {
    /// The call's id: its decision's request id (`gyrus audit why`, `gyrus undo`).
    pub action_id: String,
    /// The tool.
    pub tool: String,
    /// The verdict.
    pub decision: CallDecision,
    /// The output, when the call ran and succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The error, when it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
    /// Whether `gyrus undo ACTION_ID` can put it back.
    pub undoable: bool,
}

impl CallResult {
    /// True when the call ran and succeeded.
    pub fn is_ok(&self) -> bool {
        self.output.is_some() && self.error.is_none()
    }
}

/// Every tool, and the undo journal.
pub struct Tools {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    env: ToolEnv,
    undo: UndoJournal,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// Where the undo journal lives in a home.
pub fn undo_dir(home: &gyrus_home::Home) -> std::path::PathBuf {
    home.layer(gyrus_home::Layer::Runtime).join("undo")
}

impl Tools {
    /// An empty registry with its undo journal opened in `runtime/undo/`.
    pub fn new(env: ToolEnv) -> Result<Tools, ToolError> {
        let undo = UndoJournal::open(&undo_dir(&env.home), env.undo_retention, env.undo_max_bytes)?;
        Ok(Tools {
            tools: BTreeMap::new(),
            env,
            undo,
        })
    }

    /// Adds a tool; a second tool with the same name replaces the first.
    pub fn register(&mut self, tool: impl Tool + 'static) {
        self.tools.insert(tool.spec().name.clone(), Arc::new(tool));
    }

    /// Every tool's spec, by name.
    pub fn list(&self) -> Vec<&ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// One tool's spec.
    pub fn describe(&self, name: &str) -> Result<&ToolSpec, ToolError> {
        self.tools
            .get(name)
            .map(|t| t.spec())
            .ok_or_else(|| ToolError::UnknownTool(name.to_string()))
    }

    /// The settings.
    pub fn env(&self) -> &ToolEnv {
        &self.env
    }

    /// The undo journal.
    pub fn journal(&self) -> &UndoJournal {
        &self.undo
    }

    /// Runs one call through the broker. An unknown tool or arguments that do not fit the
    /// schema are an `Err` before anything is decided; everything after that (a denial, a
    /// failure) is a [`CallResult`] with its audit entries. Blocking.
    pub fn call(&self, kernel: &Kernel, call: &ToolCall) -> Result<CallResult, ToolError> {
        let tool = self
            .tools
            .get(&call.tool)
            .ok_or_else(|| ToolError::UnknownTool(call.tool.clone()))?;
        let spec = tool.spec();
        let requirements: Vec<Requirement> = tool
            .requirements(&call.args, &self.env)?
            .into_iter()
            .map(|r| r.for_caller(&call.principal))
            .collect();
        let Some((first, rest)) = requirements.split_first() else {
            return Err(ToolError::Internal(format!(
                "{} derived no requirement",
                spec.name
            )));
        };
        let primary = self.decide(kernel, call, first, spec)?;
        let action_id = primary.request_id.clone();
        let primary_request = request_for(call, first, spec);
        if let Some(refused) = refusal(&primary, &action_id, spec) {
            return Ok(refused);
        }
        // Further requirements are decided under the same plan; the first refusal settles it.
        for req in rest {
            let extra = self.decide(kernel, call, req, spec)?;
            if let Some(mut refused) = refusal(&extra, &action_id, spec) {
                let reason = format!(
                    "{} on {} was refused: {}",
                    req.action.as_str(),
                    req.resource,
                    extra.decision.reason
                );
                kernel
                    .outcome(&primary, &primary_request, &format!("refused: {reason}"))
                    .map_err(|e| ToolError::Internal(e.to_string()))?;
                if let Some(e) = refused.error.as_mut() {
                    e.message = reason;
                }
                return Ok(refused);
            }
        }
        let cx = CallContext {
            kernel,
            principal: &call.principal,
            intent: &call.intent,
            intent_source: &call.intent_source,
            plan_id: call.plan_id.as_deref(),
            action_id: &action_id,
            undo: &self.undo,
            env: &self.env,
            deadline: Instant::now() + spec.timeout,
        };
        let result = tool.run(&cx, call.args.clone()).and_then(|ran| {
            let size = serde_json::to_vec(&ran.output).map_or(0, |v| v.len());
            if size > spec.max_output_bytes {
                return Err(ToolError::OutputTooLarge {
                    size,
                    limit: spec.max_output_bytes,
                });
            }
            if let Some(data) = &ran.undo {
                self.undo.record(
                    &action_id,
                    &spec.name,
                    &call.principal.id(),
                    data,
                    &blob_refs(data),
                )?;
            }
            Ok(ran)
        });
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        kernel
            .outcome(&primary, &primary_request, &outcome)
            .map_err(|e| ToolError::Internal(e.to_string()))?;
        let decision = verdict(&primary);
        Ok(finished(
            action_id,
            spec.name.clone(),
            decision,
            result.map(|ran| (ran.output, ran.undo.is_some())),
        ))
    }

    fn decide(
        &self,
        kernel: &Kernel,
        call: &ToolCall,
        req: &Requirement,
        spec: &ToolSpec,
    ) -> Result<Recorded, ToolError> {
        let request = request_for(call, req, spec);
        kernel
            .decide(&request, &call.args)
            .map_err(|e| ToolError::Internal(e.to_string()))
    }

    /// `gyrus undo ACTION_ID`: puts a call back, itself decided (`tool.undo` on
    /// `action:<id>`) and audited. Only the owner or whoever made the call may undo it; a
    /// target that changed since is refused with the reason.
    pub fn undo(
        &self,
        kernel: &Kernel,
        principal: &Principal,
        action_id: &str,
        intent: &str,
        intent_source: IntentSource,
    ) -> Result<CallResult, ToolError> {
        let record = self.undo.get(action_id)?.ok_or_else(|| {
            ToolError::Failed(format!(
                "nothing to undo for {action_id:?}: no such reversible call, or it is past the undo retention"
            ))
        })?;
        if !principal.is_owner() && record.principal != principal.id() {
            return Err(ToolError::Failed(format!(
                "{action_id} was made by {}; only they or the owner may undo it",
                record.principal
            )));
        }
        if let Some(by) = &record.undone_by {
            return Err(ToolError::Conflict(format!(
                "{action_id} was already undone by {by}"
            )));
        }
        let tool = self
            .tools
            .get(&record.tool)
            .ok_or_else(|| ToolError::UnknownTool(record.tool.clone()))?;
        let spec = tool.spec();
        let req = Requirement::new("tool.undo", format!("action:{action_id}"))?
            .with_attr("tool", record.tool.clone());
        let call = ToolCall {
            principal: principal.clone(),
            tool: "tool.undo".into(),
            args: serde_json::json!({"action_id": action_id}),
            intent: intent.to_string(),
            intent_source,
            plan_id: None,
        };
        let recorded = self.decide(kernel, &call, &req, spec)?;
        let undo_id = recorded.request_id.clone();
        if let Some(refused) = refusal(&recorded, &undo_id, spec) {
            return Ok(refused);
        }
        let request = request_for(&call, &req, spec);
        let cx = CallContext {
            kernel,
            principal,
            intent: &call.intent,
            intent_source: &call.intent_source,
            plan_id: call.plan_id.as_deref(),
            action_id: &undo_id,
            undo: &self.undo,
            env: &self.env,
            deadline: Instant::now() + spec.timeout,
        };
        let result = if self.undo.mark_undone(action_id, &undo_id)? {
            let r = tool.undo(&cx, record.data);
            if r.is_err() {
                // Not undone after all: let the owner try again once the conflict is gone.
                self.undo.clear_undone(action_id)?;
            }
            r
        } else {
            Err(ToolError::Conflict(format!(
                "{action_id} was already undone"
            )))
        };
        let outcome = match &result {
            Ok(_) => format!("ok: undid {action_id}"),
            Err(e) => format!("error: {e}"),
        };
        kernel
            .outcome(&recorded, &request, &outcome)
            .map_err(|e| ToolError::Internal(e.to_string()))?;
        let decision = verdict(&recorded);
        Ok(finished(
            undo_id,
            "tool.undo".into(),
            decision,
            result.map(|output| (output, false)),
        ))
    }
}

/// The result of a call that ran: its output (and whether it can be undone), or its error.
fn finished(
    action_id: String,
    tool: String,
    decision: CallDecision,
    result: Result<(serde_json::Value, bool), ToolError>,
) -> CallResult {
    let (output, error, undoable) = match result {
        Ok((output, undoable)) => (Some(output), None, undoable),
        Err(e) => (
            None,
            Some(CallError {
                code: e.code().to_string(),
                message: e.to_string(),
            }),
            false,
        ),
    };
    CallResult {
        action_id,
        tool,
        decision,
        output,
        error,
        undoable,
    }
}

fn request_for(call: &ToolCall, req: &Requirement, spec: &ToolSpec) -> ActionRequest {
    let mut request = ActionRequest::new(
        call.principal.clone(),
        req.action.clone(),
        req.resource.clone(),
        call.intent.clone(),
        call.intent_source.clone(),
    )
    .with_attr("tool", serde_json::Value::String(spec.name.clone()))
    .with_attr(
        "risk",
        serde_json::Value::String(spec.risk.as_str().to_string()),
    );
    for (k, v) in &req.attrs {
        request = request.with_attr(k.clone(), v.clone());
    }
    if let Some(plan) = &call.plan_id {
        request = request.with_plan(plan.clone());
    }
    request
}

fn verdict(recorded: &Recorded) -> CallDecision {
    CallDecision {
        outcome: recorded.decision.outcome,
        reason: recorded.decision.reason.clone(),
        seq: recorded.seq,
        grant_id: recorded.decision.grant_id.clone(),
        consent_id: recorded.consent.as_ref().map(|c| c.id.clone()),
    }
}

/// The result of a decision that is not *allow*.
fn refusal(recorded: &Recorded, action_id: &str, spec: &ToolSpec) -> Option<CallResult> {
    let (code, message) = match recorded.decision.outcome {
        Outcome::Allow => return None,
        Outcome::Deny => (
            "denied",
            format!(
                "denied (audit entry {}): {}",
                recorded.seq, recorded.decision.reason
            ),
        ),
        Outcome::Ask => (
            "ask",
            format!(
                "the owner must approve this first (consent request {}): `gyrus approve {}`, then call again",
                recorded.consent.as_ref().map_or("?", |c| c.id.as_str()),
                recorded.consent.as_ref().map_or("ID", |c| c.id.as_str()),
            ),
        ),
    };
    Some(CallResult {
        action_id: action_id.to_string(),
        tool: spec.name.clone(),
        decision: verdict(recorded),
        output: None,
        error: Some(CallError {
            code: code.to_string(),
            message,
        }),
        undoable: false,
    })
}

/// The blob hashes an undo record refers to: every string value under a key named `blob`.
fn blob_refs(data: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "blob" {
                        if let Some(s) = v.as_str() {
                            out.push(s.to_string());
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(data, &mut out);
    out.sort();
    out.dedup();
    out
}

/// True if `s` is a dotted tool name such as `fs.read`.
pub fn is_tool_name(s: &str) -> bool {
    Subject::new(s).is_ok()
}

/// 16 random hex digits, for temporary file names.
pub(crate) fn random_suffix() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Names only need to be unique among concurrent writers; fall back to time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{:016x}", (t as u64) ^ u64::from(std::process::id()));
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
