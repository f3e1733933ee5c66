//! The owner's security controls as tools: `sec.grant`, `sec.revoke`, `sec.grants`,
//! `sec.audit`.
//!
//! They ask the broker for the same actions the API's own grant routes do (`grant.add`,
//! `grant.revoke`), so the core policy that keeps consent the owner's applies to them too:
//! no agent can grant itself anything through a tool. Grant changes are undoable (undo puts
//! the previous grant set back: a new grant is revoked, a revoked one reinstated).

use std::time::{Duration, SystemTime};

use gyrus_policy::{Grant, GrantError, NewGrant};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};
use crate::{ToolEnv, Tools};

/// Registers the security tools.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(SecGrant));
    tools.register(Typed::new(SecRevoke));
    tools.register(Typed::new(SecGrants));
    tools.register(Typed::new(SecAudit));
}

fn grant_error(e: GrantError) -> ToolError {
    match e {
        GrantError::Store(e) => ToolError::Internal(e.to_string()),
        GrantError::NotFound(_) | GrantError::AlreadyRevoked(_) | GrantError::NotRevoked(_) => {
            ToolError::Failed(e.to_string())
        }
        other => ToolError::InvalidArgs(other.to_string()),
    }
}

/// A grant as tools show it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GrantView {
    /// `gr_…`.
    pub id: String,
    /// The principal id it belongs to.
    pub principal: String,
    /// Action patterns.
    pub actions: Vec<String>,
    /// Resource globs.
    pub resources: Vec<String>,
    /// The exact intent required, if any.
    pub intent: Option<String>,
    /// Unix seconds, if it expires.
    pub expires_at: Option<u64>,
    /// Uses allowed, if limited.
    pub max_uses: Option<u32>,
    /// Uses consumed.
    pub uses: u32,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<u64>,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> GrantView {
        GrantView {
            id: g.id,
            principal: g.principal,
            actions: g.actions,
            resources: g.resources,
            intent: g.intent,
            expires_at: g.expires_at,
            max_uses: g.max_uses,
            uses: g.uses,
            revoked_at: g.revoked_at,
        }
    }
}

/// Arguments of `sec.grant`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantArgs {
    /// The principal id: `agent:ag_…`, `token:tok_…` or `session:…` (ids, not names).
    pub principal: String,
    /// Action patterns such as `fs.read` or `fs.*`.
    pub actions: Vec<String>,
    /// Resource globs such as `path:/home/u/project/**`.
    pub resources: Vec<String>,
    /// If set, only calls with exactly this (trusted) intent.
    pub intent: Option<String>,
    /// Lifetime in seconds (default: no expiry).
    pub valid_for_secs: Option<u64>,
    /// At most this many uses (default: unlimited).
    pub max_uses: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GrantUndo {
    added: Option<String>,
    revoked: Option<String>,
}

/// `sec.grant`.
#[derive(Debug)]
pub struct SecGrant;

impl TypedTool for SecGrant {
    type Args = GrantArgs;
    type Output = GrantView;
    const NAME: &'static str = "sec.grant";
    const DESCRIPTION: &'static str = "Grant a principal actions on resources (the owner only). Undoable: undo revokes the grant.";
    const RISK: Risk = Risk::Write;
    const UNDOABLE: bool = true;

    fn requirements(
        &self,
        args: &GrantArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new("grant.add", args.principal.clone())?])
    }

    fn run(&self, cx: &CallContext<'_>, args: GrantArgs) -> Result<Ran<GrantView>, ToolError> {
        let grant = cx
            .kernel
            .broker()
            .grants()
            .add(
                NewGrant {
                    principal: args.principal,
                    actions: args.actions,
                    resources: args.resources,
                    intent: args.intent,
                    valid_for: args.valid_for_secs.map(Duration::from_secs),
                    max_uses: args.max_uses,
                    granted_by: cx.principal.id(),
                },
                SystemTime::now(),
            )
            .map_err(grant_error)?;
        let undo = serde_json::to_value(GrantUndo {
            added: Some(grant.id.clone()),
            revoked: None,
        })
        .map_err(ToolError::internal)?;
        Ok(Ran {
            output: grant.into(),
            undo: Some(undo),
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        undo_grant_change(cx, data)
    }
}

fn undo_grant_change(
    cx: &CallContext<'_>,
    data: serde_json::Value,
) -> Result<serde_json::Value, ToolError> {
    let u: GrantUndo = serde_json::from_value(data)
        .map_err(|e| ToolError::Internal(format!("unreadable undo record: {e}")))?;
    let grants = cx.kernel.broker().grants();
    if let Some(id) = u.added {
        let grant = grants.revoke(&id, SystemTime::now()).map_err(|e| match e {
            GrantError::AlreadyRevoked(_) => {
                ToolError::Conflict(format!("grant {id} was revoked since; nothing to undo"))
            }
            other => grant_error(other),
        })?;
        return Ok(serde_json::json!({"revoked": GrantView::from(grant)}));
    }
    if let Some(id) = u.revoked {
        let grant = grants.reinstate(&id).map_err(|e| match e {
            GrantError::NotRevoked(_) => {
                ToolError::Conflict(format!("grant {id} is live again already"))
            }
            other => grant_error(other),
        })?;
        return Ok(serde_json::json!({"reinstated": GrantView::from(grant)}));
    }
    Err(ToolError::Internal("empty undo record".into()))
}

/// Arguments of `sec.revoke`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeArgs {
    /// The grant's id, `gr_…`.
    pub id: String,
}

/// `sec.revoke`.
#[derive(Debug)]
pub struct SecRevoke;

impl TypedTool for SecRevoke {
    type Args = RevokeArgs;
    type Output = GrantView;
    const NAME: &'static str = "sec.revoke";
    const DESCRIPTION: &'static str = "Revoke a grant (the owner only); it stops working on the next call. Undoable: undo reinstates it.";
    const RISK: Risk = Risk::Write;
    const UNDOABLE: bool = true;

    fn requirements(
        &self,
        args: &RevokeArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            "grant.revoke",
            format!("grant:{}", args.id),
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, args: RevokeArgs) -> Result<Ran<GrantView>, ToolError> {
        let grant = cx
            .kernel
            .broker()
            .grants()
            .revoke(&args.id, SystemTime::now())
            .map_err(grant_error)?;
        let undo = serde_json::to_value(GrantUndo {
            added: None,
            revoked: Some(grant.id.clone()),
        })
        .map_err(ToolError::internal)?;
        Ok(Ran {
            output: grant.into(),
            undo: Some(undo),
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        undo_grant_change(cx, data)
    }
}

/// Arguments of `sec.audit`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    /// The newest entries to scan (default 50, at most 1000).
    pub limit: Option<u64>,
    /// Only entries of this principal id.
    pub principal: Option<String>,
    /// Only entries whose action starts with this (e.g. `fs.`).
    pub action_prefix: Option<String>,
    /// Only the entries of this request / action id (`req_…`): its decision and outcome.
    pub request_id: Option<String>,
}

/// One audit entry, as `sec.audit` shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditView {
    /// Sequence number.
    pub seq: u64,
    /// Unix milliseconds.
    pub time: i64,
    /// The request it belongs to.
    pub request_id: String,
    /// `decision` or `outcome`.
    pub kind: String,
    /// Who.
    pub principal: String,
    /// What.
    pub action: String,
    /// On what.
    pub resource: String,
    /// Why (the intent).
    pub intent: String,
    /// `allow`, `deny`, `ask` (decisions).
    pub decision: Option<String>,
    /// The broker's reason (decisions).
    pub reason: String,
    /// What happened (outcomes).
    pub outcome: Option<String>,
}

/// Arguments of `sec.grants`: none.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsArgs {}

/// Output of `sec.grants`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GrantsOutput {
    /// The grants in force: not revoked, not expired, uses left.
    pub grants: Vec<GrantView>,
}

/// `sec.grants`.
#[derive(Debug)]
pub struct SecGrants;

impl TypedTool for SecGrants {
    type Args = GrantsArgs;
    type Output = GrantsOutput;
    const NAME: &'static str = "sec.grants";
    const DESCRIPTION: &'static str =
        "List the grants in force: who may do what on which resources, until when.";
    const RISK: Risk = Risk::Read;

    fn requirements(
        &self,
        _args: &GrantsArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new("grant.list", "grant:*")?])
    }

    fn run(&self, cx: &CallContext<'_>, _args: GrantsArgs) -> Result<Ran<GrantsOutput>, ToolError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let grants = cx
            .kernel
            .broker()
            .grants()
            .list()
            .map_err(|e| ToolError::Internal(e.to_string()))?
            .into_iter()
            .filter(|g| g.revoked_at.is_none())
            .filter(|g| g.expires_at.is_none_or(|at| at > now))
            .filter(|g| g.max_uses.is_none_or(|max| g.uses < max))
            .map(GrantView::from)
            .collect();
        Ok(Ran {
            output: GrantsOutput { grants },
            undo: None,
        })
    }
}

/// Output of `sec.audit`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditOutput {
    /// Matching entries, oldest first.
    pub entries: Vec<AuditView>,
    /// Entries in the log.
    pub total: u64,
}

/// `sec.audit`.
#[derive(Debug)]
pub struct SecAudit;

impl TypedTool for SecAudit {
    type Args = AuditArgs;
    type Output = AuditOutput;
    const NAME: &'static str = "sec.audit";
    const DESCRIPTION: &'static str =
        "Query the audit trail: the newest entries, filtered by principal, action or request id.";
    const RISK: Risk = Risk::Read;

    fn requirements(
        &self,
        args: &AuditArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        if args.limit.is_some_and(|l| l > 1000) {
            return Err(ToolError::InvalidArgs("field `limit`: at most 1000".into()));
        }
        Ok(vec![Requirement::new("audit.read", "audit:log")?])
    }

    fn run(&self, cx: &CallContext<'_>, args: AuditArgs) -> Result<Ran<AuditOutput>, ToolError> {
        let audit = cx.kernel.audit();
        let entries = match &args.request_id {
            Some(id) => audit.by_request(id),
            None => audit.tail(args.limit.unwrap_or(50)),
        }
        .map_err(|e| ToolError::Internal(e.to_string()))?;
        let entries = entries
            .into_iter()
            .filter(|e| {
                args.principal
                    .as_ref()
                    .is_none_or(|p| &e.record.principal == p)
            })
            .filter(|e| {
                args.action_prefix
                    .as_ref()
                    .is_none_or(|p| e.record.action.starts_with(p.as_str()))
            })
            .map(|e| AuditView {
                seq: e.seq,
                time: e.time,
                request_id: e.record.request_id,
                kind: format!("{:?}", e.record.kind).to_lowercase(),
                principal: e.record.principal,
                action: e.record.action,
                resource: e.record.resource,
                intent: e.record.intent,
                decision: e.record.decision.map(|d| format!("{d:?}").to_lowercase()),
                reason: e.record.reason,
                outcome: e.record.outcome,
            })
            .collect();
        Ok(Ran::output(AuditOutput {
            entries,
            total: audit.len(),
        }))
    }
}
