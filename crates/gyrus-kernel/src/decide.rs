//! Decisions: every action goes through the consent broker, and every decision and every
//! outcome lands in the audit trail, one entry each.

use std::time::{Duration, SystemTime};

use gyrus_audit::{EntryKind, NewEntry};
use gyrus_bus::Pattern;
use gyrus_policy::{ActionRequest, ConsentRequest, Decision, Outcome, Principal};
use serde_json::json;

use crate::kernel::{Kernel, KernelError};

/// How long a consent request waits for the owner before it expires into a denial.
pub const CONSENT_TTL: Duration = Duration::from_secs(15 * 60);

/// A decision as recorded: the broker's verdict, its audit entry, and the consent request
/// the owner must answer when it is *ask*.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    /// Ties the decision to its outcome in the audit trail (`gyrus audit why`).
    pub request_id: String,
    /// The audit entry's sequence number.
    pub seq: u64,
    /// The verdict.
    pub decision: Decision,
    /// For *ask*: the pending consent request (one per plan).
    pub consent: Option<ConsentRequest>,
}

impl Kernel {
    fn requested_actions(&self, principal: &Principal) -> Vec<Pattern> {
        match principal {
            Principal::Agent { id, .. } => self
                .agent_by_id(id)
                .map(|a| a.manifest.requested_actions())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// An agent over its `tool_calls_per_minute` is denied before the broker is asked. Every
    /// decision counts as a call, so a flood of refused calls spends the quota too.
    fn over_quota(&self, principal: &Principal) -> Option<Decision> {
        let Principal::Agent { id, name } = principal else {
            return None;
        };
        let limit = self
            .agent_by_id(id)?
            .manifest
            .quotas
            .tool_calls_per_minute?;
        let mut windows = self.call_windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(id.clone()).or_default();
        match window.try_take(self.started.elapsed(), limit, Duration::from_secs(60)) {
            Ok(()) => None,
            Err(wait) => Some(Decision {
                outcome: Outcome::Deny,
                reason: format!(
                    "agent {name} is over its quota of {limit} tool calls per minute; the next one frees up in {} s",
                    wait.as_secs().max(1)
                ),
                grant_id: None,
                policies: vec!["quota.tool_calls_per_minute".into()],
                errors: Vec::new(),
            }),
        }
    }

    /// Decides `request` (consuming a grant use when a grant allows it), opens or joins a
    /// consent request when the answer is *ask*, and appends exactly one decision entry to the
    /// audit trail. A failure to record is an error: nothing may act on an unrecorded
    /// decision. Blocking.
    pub fn decide(
        &self,
        request: &ActionRequest,
        args: &serde_json::Value,
    ) -> Result<Recorded, KernelError> {
        let now = SystemTime::now();
        if let Some(refusal) = self.over_quota(&request.principal) {
            return self.record_decision(request, args, refusal, None);
        }
        let requested = self.requested_actions(&request.principal);
        let decision = self.broker().decide_and_consume(request, &requested, now);
        let consent = if decision.outcome == Outcome::Ask {
            match self.consents().ask(request, now, CONSENT_TTL) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Cannot ask (e.g. an untrusted intent): that is a denial, recorded as such.
                    let denied = Decision {
                        outcome: Outcome::Deny,
                        reason: format!("{}; and the owner cannot be asked: {e}", decision.reason),
                        ..decision
                    };
                    return self.record_decision(request, args, denied, None);
                }
            }
        } else {
            None
        };
        self.record_decision(request, args, decision, consent)
    }

    fn record_decision(
        &self,
        request: &ActionRequest,
        args: &serde_json::Value,
        decision: Decision,
        consent: Option<ConsentRequest>,
    ) -> Result<Recorded, KernelError> {
        let request_id = format!("req_{}", crate::registry::random_hex(8)?);
        let mut reason = decision.reason.clone();
        if !decision.errors.is_empty() {
            reason.push_str(&format!(" (errors: {})", decision.errors.join("; ")));
        }
        let mut detail = serde_json::Map::new();
        if let Some(c) = &consent {
            detail.insert("consent_id".into(), json!(c.id));
        }
        if let Some(plan) = &request.plan_id {
            detail.insert("plan_id".into(), json!(plan));
        }
        let entry = self.record(NewEntry {
            request_id: request_id.clone(),
            kind: EntryKind::Decision,
            principal: request.principal.id(),
            action: request.action.as_str().to_string(),
            resource: request.resource.clone(),
            args_digest: if args.is_null() {
                String::new()
            } else {
                gyrus_audit::args_digest(args)
            },
            intent: request.intent.clone(),
            intent_source: request.intent_source.label(),
            grant_id: decision.grant_id.clone(),
            policies: decision.policies.clone(),
            decision: Some(match decision.outcome {
                Outcome::Allow => gyrus_audit::Decision::Allow,
                Outcome::Deny => gyrus_audit::Decision::Deny,
                Outcome::Ask => gyrus_audit::Decision::Ask,
            }),
            reason,
            detail,
            ..NewEntry::default()
        })?;
        self.emit(
            "policy.decision",
            json!({"seq": entry.seq, "request_id": request_id, "principal": request.principal.id(),
                "action": request.action.as_str(), "resource": request.resource,
                "outcome": decision.outcome, "consent_id": consent.as_ref().map(|c| c.id.clone())}),
        );
        Ok(Recorded {
            request_id,
            seq: entry.seq,
            decision,
            consent,
        })
    }

    /// Records what happened when an allowed request ran (`ok`, or the error).
    pub fn outcome(
        &self,
        recorded: &Recorded,
        request: &ActionRequest,
        outcome: &str,
    ) -> Result<u64, KernelError> {
        let entry = self.record(NewEntry {
            request_id: recorded.request_id.clone(),
            kind: EntryKind::Outcome,
            principal: request.principal.id(),
            action: request.action.as_str().to_string(),
            resource: request.resource.clone(),
            intent: request.intent.clone(),
            intent_source: request.intent_source.label(),
            grant_id: recorded.decision.grant_id.clone(),
            outcome: Some(outcome.to_string()),
            ..NewEntry::default()
        })?;
        Ok(entry.seq)
    }
}
