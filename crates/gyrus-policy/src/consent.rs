//! Consent requests: what the broker's "ask" turns into. Calls of one plan (or, without a
//! plan, of one principal with one intent) share one pending request, so the owner answers
//! once per plan, not once per call. Approving creates grants that cover exactly the listed
//! calls; an unanswered request expires into a denial.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::grant::{self, Grant, GrantError, MAX_INTENT_LEN, NewGrant};
use crate::principal::is_principal_id;
use crate::request::{ActionRequest, resource_problem};
use crate::store::{GrantStore, StoreError, insert_grants, random_hex, unix};

/// The most calls one consent request lists; more is a runaway agent, not a plan.
pub const MAX_CALLS_PER_REQUEST: usize = 256;

/// Where a consent request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Waiting for the owner.
    Pending,
    /// The owner approved; grants were created.
    Approved,
    /// The owner denied.
    Denied,
    /// Nobody answered in time; treated as a denial.
    Expired,
}

impl ConsentStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Pending => "pending",
            ConsentStatus::Approved => "approved",
            ConsentStatus::Denied => "denied",
            ConsentStatus::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<ConsentStatus> {
        Some(match text {
            "pending" => ConsentStatus::Pending,
            "approved" => ConsentStatus::Approved,
            "denied" => ConsentStatus::Denied,
            "expired" => ConsentStatus::Expired,
            _ => return None,
        })
    }
}

/// One call listed in a consent request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentCall {
    /// The tool action, e.g. `fs.write`.
    pub action: String,
    /// The resource, e.g. `path:/home/u/project/out.txt`.
    pub resource: String,
    /// The call's intent.
    pub intent: String,
    /// Where the intent came from ([`crate::IntentSource::label`]).
    pub intent_source: String,
}

/// A question to the owner: may this principal make these calls?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentRequest {
    /// `cr_` and 24 hex digits.
    pub id: String,
    /// The [`crate::Principal::id`] asking.
    pub principal: String,
    /// How to show the principal ([`crate::Principal`]'s `Display`, e.g. `agent:builder`).
    pub principal_label: String,
    /// The plan the calls belong to, if any.
    pub plan_id: Option<String>,
    /// The intent of the first call (the plan's intent).
    pub intent: String,
    /// Where it stands.
    pub status: ConsentStatus,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; unanswered by then, it expires.
    pub expires_at: u64,
    /// Unix seconds, once approved, denied or expired.
    pub decided_at: Option<u64>,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// The calls, in the order they were asked.
    pub calls: Vec<ConsentCall>,
}

/// A consent request could not be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The intent came from untrusted input; the owner is never asked on its behalf.
    #[error(
        "cannot ask the owner on behalf of an untrusted intent ({0}); the intent must come from the owner or an approved plan"
    )]
    UntrustedIntent(String),
    /// The intent is empty, too long or has control characters.
    #[error(
        "a consent request needs an intent of 1 to {MAX_INTENT_LEN} bytes without control characters"
    )]
    InvalidIntent,
    /// The call cannot become a grant: its resource or principal is malformed.
    #[error("cannot ask about this call: {0}")]
    InvalidCall(String),
    /// The time to answer is zero or over a week.
    #[error("the time to answer must be between 1 second and 7 days")]
    InvalidTtl,
    /// The request already lists the most calls allowed.
    #[error(
        "consent request {0} already lists {MAX_CALLS_PER_REQUEST} calls; answer it before asking for more"
    )]
    TooManyCalls(String),
    /// No request has this id.
    #[error("no consent request {0:?}; `gyrus approvals` lists the pending ones")]
    NotFound(String),
    /// The request was already answered or expired.
    #[error("consent request {id} is {status}, not pending", status = status.as_str())]
    NotPending {
        /// The request.
        id: String,
        /// Where it stands.
        status: ConsentStatus,
    },
    /// Creating the grants failed.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pending, approved, denied and expired consent requests, in the grants database.
#[derive(Debug, Clone)]
pub struct ConsentStore {
    grants: Arc<GrantStore>,
}

const REQUEST_COLUMNS: &str = "id, principal, principal_label, plan_id, intent, status, created_at, expires_at, decided_at, decided_by";

impl ConsentStore {
    /// Consent requests kept beside `grants`, in the same SQLite file; approvals add their
    /// grants to that store.
    pub fn new(grants: Arc<GrantStore>) -> ConsentStore {
        ConsentStore { grants }
    }

    fn err(&self, e: impl std::fmt::Display) -> ConsentError {
        ConsentError::Store(self.grants.db.err(e))
    }

    /// Asks the owner about `request`. Joins the pending request of the same plan (or, without
    /// a plan, of the same principal and intent) if there is one, else opens a new one that
    /// expires after `ttl`. A call already listed is not listed twice.
    pub fn ask(
        &self,
        request: &ActionRequest,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<ConsentRequest, ConsentError> {
        if !request.intent_source.is_trusted() {
            return Err(ConsentError::UntrustedIntent(request.intent_source.label()));
        }
        let intent = &request.intent;
        if intent.is_empty()
            || intent.len() > MAX_INTENT_LEN
            || intent.chars().any(char::is_control)
        {
            return Err(ConsentError::InvalidIntent);
        }
        if let Some(why) = resource_problem(&request.resource) {
            return Err(ConsentError::InvalidCall(why));
        }
        if !is_principal_id(&request.principal.id()) {
            return Err(ConsentError::InvalidCall(format!(
                "principal id {:?} is malformed",
                request.principal.id()
            )));
        }
        if ttl.is_zero() || ttl > Duration::from_secs(7 * 86_400) {
            return Err(ConsentError::InvalidTtl);
        }
        let now = unix(now);
        let principal = request.principal.id();
        let bundle_key = match &request.plan_id {
            Some(plan) => format!("{principal}\u{1f}plan\u{1f}{plan}"),
            None => format!("{principal}\u{1f}intent\u{1f}{intent}"),
        };
        let mut conn = self.grants.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        expire_overdue(&tx, now).map_err(|e| self.err(e))?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM consent_requests WHERE bundle_key = ?1 AND status = 'pending'",
                [&bundle_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let id = match existing {
            Some(id) => id,
            None => {
                let id = format!("cr_{}", random_hex::<12>().map_err(|e| self.err(e))?);
                tx.execute(
                    "INSERT INTO consent_requests
                     (id, bundle_key, principal, principal_label, plan_id, intent, status, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)",
                    params![
                        id,
                        bundle_key,
                        principal,
                        request.principal.to_string(),
                        request.plan_id,
                        intent,
                        now,
                        now.saturating_add(ttl.as_secs().max(1)),
                    ],
                )
                .map_err(|e| self.err(e))?;
                id
            }
        };
        let action = request.action.as_str();
        let listed: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM consent_calls
                 WHERE request_id = ?1 AND action = ?2 AND resource = ?3 AND intent = ?4)",
                params![id, action, request.resource, intent],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if !listed {
            let count: usize = tx
                .query_row(
                    "SELECT COUNT(*) FROM consent_calls WHERE request_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if count >= MAX_CALLS_PER_REQUEST {
                return Err(ConsentError::TooManyCalls(id));
            }
            tx.execute(
                "INSERT INTO consent_calls (request_id, seq, action, resource, intent, intent_source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    count,
                    action,
                    request.resource,
                    intent,
                    request.intent_source.label()
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        let out = load(&tx, &id).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        out.ok_or(ConsentError::NotFound(id))
    }

    /// The pending requests, oldest first, after expiring the overdue ones.
    pub fn list(&self, now: SystemTime) -> Result<Vec<ConsentRequest>, ConsentError> {
        let conn = self.grants.db.lock();
        expire_overdue(&conn, unix(now)).map_err(|e| self.err(e))?;
        let ids: Vec<String> = conn
            .prepare_cached(
                "SELECT id FROM consent_requests WHERE status = 'pending' ORDER BY created_at, rowid",
            )
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(request) = load(&conn, &id).map_err(|e| self.err(e))? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// One request, whatever its status (an overdue one is expired first).
    pub fn get(&self, id: &str, now: SystemTime) -> Result<Option<ConsentRequest>, ConsentError> {
        let conn = self.grants.db.lock();
        expire_overdue(&conn, unix(now)).map_err(|e| self.err(e))?;
        load(&conn, id).map_err(|e| self.err(e))
    }

    /// Where a request stands; the daemon polls this while a call waits for the owner.
    pub fn status(&self, id: &str, now: SystemTime) -> Result<ConsentStatus, ConsentError> {
        self.get(id, now)?
            .map(|r| r.status)
            .ok_or_else(|| ConsentError::NotFound(id.to_string()))
    }

    /// Approves a pending request: creates one grant per listed call, covering exactly that
    /// action on exactly that resource (glob-escaped) with that call's intent, lasting
    /// `valid_for` (forever if `None`) and `uses` times each (unlimited if `None`). The
    /// grants and the approval are written in one transaction.
    pub fn approve(
        &self,
        id: &str,
        valid_for: Option<Duration>,
        uses: Option<u32>,
        granted_by: &str,
        now: SystemTime,
    ) -> Result<Vec<Grant>, ConsentError> {
        let mut conn = self.grants.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let request = pending(&tx, id, unix(now)).map_err(|e| self.unwrap_pending(e))?;
        let news = request
            .calls
            .iter()
            .map(|call| NewGrant {
                principal: request.principal.clone(),
                actions: vec![call.action.clone()],
                resources: vec![grant::escape_resource(&call.resource)],
                intent: Some(call.intent.clone()),
                valid_for,
                max_uses: uses,
                granted_by: granted_by.to_string(),
            })
            .collect();
        let compiled = insert_grants(&self.grants.db, &tx, news, now)?;
        decide(&tx, id, ConsentStatus::Approved, granted_by, unix(now)).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        drop(conn);
        Ok(self.grants.index_added(compiled))
    }

    /// Denies a pending request.
    pub fn deny(
        &self,
        id: &str,
        denied_by: &str,
        now: SystemTime,
    ) -> Result<ConsentRequest, ConsentError> {
        let mut conn = self.grants.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        pending(&tx, id, unix(now)).map_err(|e| self.unwrap_pending(e))?;
        decide(&tx, id, ConsentStatus::Denied, denied_by, unix(now)).map_err(|e| self.err(e))?;
        let out = load(&tx, id).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        out.ok_or_else(|| ConsentError::NotFound(id.to_string()))
    }

    fn unwrap_pending(&self, e: PendingError) -> ConsentError {
        match e {
            PendingError::Sql(e) => self.err(e),
            PendingError::Consent(e) => e,
        }
    }
}

enum PendingError {
    Sql(rusqlite::Error),
    Consent(ConsentError),
}

impl From<rusqlite::Error> for PendingError {
    fn from(e: rusqlite::Error) -> Self {
        PendingError::Sql(e)
    }
}

/// Loads a request that must be pending (expiring it first if overdue).
fn pending(conn: &Connection, id: &str, now: u64) -> Result<ConsentRequest, PendingError> {
    expire_overdue(conn, now)?;
    let request =
        load(conn, id)?.ok_or_else(|| PendingError::Consent(ConsentError::NotFound(id.into())))?;
    if request.status != ConsentStatus::Pending {
        return Err(PendingError::Consent(ConsentError::NotPending {
            id: id.to_string(),
            status: request.status,
        }));
    }
    Ok(request)
}

fn decide(
    conn: &Connection,
    id: &str,
    status: ConsentStatus,
    by: &str,
    now: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE consent_requests SET status = ?2, decided_at = ?3, decided_by = ?4
         WHERE id = ?1 AND status = 'pending'",
        params![id, status.as_str(), now, by],
    )?;
    Ok(())
}

/// Unanswered requests past their time become `expired`, which callers treat as a denial.
fn expire_overdue(conn: &Connection, now: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE consent_requests SET status = 'expired', decided_at = expires_at
         WHERE status = 'pending' AND expires_at <= ?1",
    )?
    .execute([now])?;
    Ok(())
}

fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<ConsentRequest>> {
    let request = conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM consent_requests WHERE id = ?1"
        ))?
        .query_row([id], |r| {
            let status: String = r.get(5)?;
            Ok(ConsentRequest {
                id: r.get(0)?,
                principal: r.get(1)?,
                principal_label: r.get(2)?,
                plan_id: r.get(3)?,
                intent: r.get(4)?,
                status: ConsentStatus::parse(&status).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        5,
                        rusqlite::types::Type::Text,
                        format!("unknown status {status:?}").into(),
                    )
                })?,
                created_at: r.get(6)?,
                expires_at: r.get(7)?,
                decided_at: r.get(8)?,
                decided_by: r.get(9)?,
                calls: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut request) = request else {
        return Ok(None);
    };
    request.calls = conn
        .prepare_cached(
            "SELECT action, resource, intent, intent_source FROM consent_calls
             WHERE request_id = ?1 ORDER BY seq",
        )?
        .query_map([id], |r| {
            Ok(ConsentCall {
                action: r.get(0)?,
                resource: r.get(1)?,
                intent: r.get(2)?,
                intent_source: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(request))
}
