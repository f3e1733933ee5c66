//! The consent broker: default deny, every tool call checked against grants and Cedar
//! policies, and any evaluation error a denial.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Request, Response, RestrictedExpression,
};
use globset::GlobSet;
use gyrus_bus::subject::Pattern;
use serde::Serialize;

use crate::Principal;
use crate::grant::compile_globs;
use crate::policies::{Cedar, Policies, PolicyError, read_dir};
use crate::request::{ActionRequest, resource_problem};
use crate::screen::{Facts, Screen};
use crate::store::{GrantStore, unix};

/// The id of the core policy that permits a call covered by a grant.
pub const GRANT_POLICY: &str = "core.grant";

/// What the broker decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// No.
    Deny,
    /// Ask the owner (through a [`crate::ConsentStore`] request), then decide again.
    Ask,
}

/// A decision and why, as it goes into the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// Allow, deny or ask.
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
    /// The grant the call relies on, if it is allowed only thanks to one. The caller must
    /// consume a use of it ([`GrantStore::consume`]) before running the call, and treat a
    /// `false` as a denial; [`ConsentBroker::decide_and_consume`] does both.
    pub grant_id: Option<String>,
    /// The ids of the policies that determined the decision (Cedar's "reason"), sorted.
    pub policies: Vec<String>,
    /// Evaluation errors. Any error is a denial.
    pub errors: Vec<String>,
}

impl Decision {
    fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            outcome: Outcome::Deny,
            reason: reason.into(),
            grant_id: None,
            policies: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// True for [`Outcome::Allow`].
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}

/// Entity type names and the one action, parsed once.
#[derive(Debug)]
struct Names {
    owner: EntityTypeName,
    agent: EntityTypeName,
    token: EntityTypeName,
    session: EntityTypeName,
    resource: EntityTypeName,
    invoke: EntityUid,
    /// The action entity, as the schema defines it (no parents).
    invoke_entity: Entity,
}

impl Names {
    fn new() -> Result<Names, PolicyError> {
        let ty = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| PolicyError::Builtin {
                what: "schema",
                message: e.to_string(),
            })
        };
        let invoke =
            EntityUid::from_type_name_and_id(ty("Gyrus::Action")?, EntityId::new("invoke"));
        Ok(Names {
            owner: ty("Gyrus::Owner")?,
            agent: ty("Gyrus::Agent")?,
            token: ty("Gyrus::Token")?,
            session: ty("Gyrus::Session")?,
            resource: ty("Gyrus::Resource")?,
            invoke_entity: Entity::new_no_attrs(invoke.clone(), HashSet::new()),
            invoke,
        })
    }
}

/// A loaded policy set and its screens.
#[derive(Debug)]
struct Loaded {
    policies: Policies,
    screen: Screen,
}

/// The default-deny consent broker. Holds the validated policies (core and owner), the grant
/// store, and the set of protected resources. Shared between threads; `decide` takes no lock
/// but two brief read locks.
#[derive(Debug)]
pub struct ConsentBroker {
    grants: Arc<GrantStore>,
    cedar: Cedar,
    authorizer: Authorizer,
    names: Names,
    policies: RwLock<Arc<Loaded>>,
    protected: GlobSet,
}

impl ConsentBroker {
    /// A broker with the core policies and every `*.cedar` file in `policy_dir` (normally
    /// `user/policies/`; a missing directory means none). Any file that fails to parse or to
    /// validate in strict mode is an error naming it.
    pub fn new(grants: Arc<GrantStore>, policy_dir: &Path) -> Result<ConsentBroker, PolicyError> {
        let sources = read_dir(policy_dir)?;
        ConsentBroker::build(grants, &sources, Some(policy_dir))
    }

    /// A broker with the core policies and owner policies given as `(file name, text)`.
    pub fn from_sources(
        grants: Arc<GrantStore>,
        sources: &[(String, String)],
    ) -> Result<ConsentBroker, PolicyError> {
        ConsentBroker::build(grants, sources, None)
    }

    fn build(
        grants: Arc<GrantStore>,
        sources: &[(String, String)],
        dir: Option<&Path>,
    ) -> Result<ConsentBroker, PolicyError> {
        let cedar = Cedar::new()?;
        let names = Names::new()?;
        let loaded = load(&cedar, &names, sources, dir)?;
        Ok(ConsentBroker {
            grants,
            cedar,
            authorizer: Authorizer::new(),
            names,
            policies: RwLock::new(Arc::new(loaded)),
            protected: GlobSet::empty(),
        })
    }

    /// Marks resources as protected (`resource.protected` in Cedar): the daemon passes its
    /// own state, e.g. `path:<home>/user/**` and `path:<home>/core/**`. The core policy
    /// `core.protected` forbids every principal but the owner to touch them, whatever any
    /// grant says.
    pub fn with_protected_resources(
        mut self,
        globs: &[String],
    ) -> Result<ConsentBroker, PolicyError> {
        self.protected = compile_globs(globs).map_err(|e| PolicyError::Protected(e.to_string()))?;
        Ok(self)
    }

    /// Replaces the owner policies with the `*.cedar` files in `dir`, all at once, only if
    /// every one of them validates; on error the current policies stay. Returns how many
    /// owner policies are now loaded.
    pub fn reload_policies(&self, dir: &Path) -> Result<usize, PolicyError> {
        let sources = read_dir(dir)?;
        let loaded = load(&self.cedar, &self.names, &sources, Some(dir))?;
        let count = loaded.policies.owner.len();
        *self
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
        Ok(count)
    }

    /// The ids of the loaded owner policies, in load order.
    pub fn owner_policy_ids(&self) -> Vec<String> {
        self.current().policies.owner.clone()
    }

    /// The grant store decisions read from.
    pub fn grants(&self) -> &Arc<GrantStore> {
        &self.grants
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.policies.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Decides one call. `requested_actions` are the action patterns the principal's
    /// manifest requested (empty for principals without one).
    ///
    /// Steps: find the first live grant covering the call (in Rust); build the Cedar request;
    /// evaluate the core and owner policies. Any evaluation error denies (Cedar skips a
    /// policy that errors, so an erroring forbid would otherwise let a permit through). A
    /// Cedar deny denies. An allow whose every determining policy is `@decision("ask")` is
    /// [`Outcome::Ask`]. Otherwise allow, naming the grant if the grant alone allowed it.
    /// Never panics; every failure is a denial with its reason.
    pub fn decide(
        &self,
        request: &ActionRequest,
        requested_actions: &[Pattern],
        now: SystemTime,
    ) -> Decision {
        if let Some(why) = resource_problem(&request.resource) {
            return Decision::deny(format!("{why}; denied"));
        }
        let now = unix(now);
        let grant = self.grants.find(request, now, |c| c.grant.id.clone());
        let requested = requested_actions.iter().any(|p| p.matches(&request.action));
        let loaded = self.current();
        let policies = &loaded.policies;
        let response = match self.evaluate(&loaded, request, grant.is_ok(), requested, now, true) {
            Ok(response) => response,
            Err(why) => return Decision::deny(format!("cannot evaluate policies: {why}")),
        };
        let diagnostics = response.diagnostics();
        let mut determining: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        determining.sort();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        let principal = &request.principal;
        let action = request.action.as_str();
        let resource = &request.resource;

        if !errors.is_empty() {
            return Decision {
                outcome: Outcome::Deny,
                reason: format!(
                    "denied because policy evaluation failed (errors deny): {}",
                    errors.join("; ")
                ),
                grant_id: None,
                policies: determining,
                errors,
            };
        }
        if response.decision() == CedarDecision::Deny {
            let reason = if determining.is_empty() {
                let grant_note = match &grant {
                    Err(Some((id, why))) => format!("; closest grant {id}: {why}"),
                    _ => format!("; {} holds no grant for it", principal.id()),
                };
                let intent_note = if principal.is_owner() && !request.intent_source.is_trusted() {
                    "; the owner's calls need the owner's own intent (or an approved plan's grant)"
                } else {
                    ""
                };
                format!(
                    "no policy permits {principal} to {action} {resource}{grant_note}{intent_note}"
                )
            } else {
                format!("forbidden by {}", determining.join(", "))
            };
            return Decision {
                outcome: Outcome::Deny,
                reason,
                grant_id: None,
                policies: determining,
                errors,
            };
        }
        if determining.is_empty() {
            // Cedar never allows without a satisfied permit; if it ever did, deny.
            return Decision::deny("policy evaluation allowed without a reason; denied");
        }
        if determining.iter().all(|id| policies.ask.contains(id)) {
            if !request.intent_source.is_trusted() {
                // An owner policy may ask; it still cannot ask on behalf of untrusted text.
                return Decision {
                    outcome: Outcome::Deny,
                    reason: format!(
                        "{} would ask the owner, but the intent is untrusted ({})",
                        determining.join(", "),
                        request.intent_source.label()
                    ),
                    grant_id: None,
                    policies: determining,
                    errors,
                };
            }
            let grant_note = match &grant {
                Err(Some((id, why))) => format!(" (closest grant {id}: {why})"),
                _ => String::new(),
            };
            return Decision {
                outcome: Outcome::Ask,
                reason: format!(
                    "ask the owner: {principal} wants to {action} {resource} for {:?} and holds no grant for it{grant_note}",
                    request.intent
                ),
                grant_id: None,
                policies: determining,
                errors,
            };
        }
        // The grant is needed only if nothing else permits: then, and only then, a use of it
        // is spent.
        let grant_only = determining
            .iter()
            .all(|id| id == GRANT_POLICY || policies.ask.contains(id));
        let grant_id = match (&grant, grant_only) {
            (Ok(id), true) => Some(id.clone()),
            _ => None,
        };
        let reason = match &grant_id {
            Some(id) => format!("allowed by grant {id}"),
            None => format!("allowed by {}", determining.join(", ")),
        };
        Decision {
            outcome: Outcome::Allow,
            reason,
            grant_id,
            policies: determining,
            errors,
        }
    }

    /// [`ConsentBroker::decide`], then, if the call is allowed on a grant, consumes one use
    /// of it. If that use is gone (another call took the last one), decides again, so another
    /// grant may serve; if none does, the call is denied.
    pub fn decide_and_consume(
        &self,
        request: &ActionRequest,
        requested_actions: &[Pattern],
        now: SystemTime,
    ) -> Decision {
        let mut last_exhausted = None;
        for _ in 0..3 {
            let decision = self.decide(request, requested_actions, now);
            let Some(id) = decision.grant_id.clone() else {
                return decision;
            };
            match self.grants.consume(&id, now) {
                Ok(true) => return decision,
                Ok(false) => last_exhausted = Some(id),
                Err(e) => {
                    return Decision {
                        outcome: Outcome::Deny,
                        reason: format!("cannot record the use of grant {id}: {e}"),
                        grant_id: None,
                        policies: decision.policies,
                        errors: vec![e.to_string()],
                    };
                }
            }
        }
        Decision::deny(format!(
            "grant {} is exhausted: its last use was taken by another call",
            last_exhausted.unwrap_or_default()
        ))
    }

    fn evaluate(
        &self,
        loaded: &Loaded,
        request: &ActionRequest,
        grant_matched: bool,
        requested: bool,
        now: u64,
        screen: bool,
    ) -> Result<Response, String> {
        let protected = !self.protected.is_empty()
            && self
                .protected
                .is_match_candidate(&globset::Candidate::from_bytes(request.resource.as_bytes()));
        let facts = Facts {
            principal_type: self.principal_type(&request.principal),
            action: request.action.as_str(),
            intent_source: request.intent_source.kind(),
            intent_trusted: request.intent_source.is_trusted(),
            requested,
            grant_matched,
            kind: request.resource_kind(),
            protected,
        };
        let screened = screen
            .then(|| loaded.screen.select(&self.authorizer, &facts))
            .flatten();
        let set = screened.as_deref().unwrap_or(&loaded.policies.set);
        let principal = self.principal_entity(&request.principal)?;
        let resource = self.resource_entity(request, protected)?;
        let principal_uid = principal.uid();
        let resource_uid = resource.uid();
        // No schema here: checking our own entities and context against it on every call was
        // a third of a decision's cost. They are built to conform, and a test checks that they
        // do (`entities_and_context_conform_to_the_schema`); were one to drift, strict-valid
        // policies would error on it, and errors deny.
        let entities = Entities::from_entities(
            [principal, resource, self.names.invoke_entity.clone()],
            None,
        )
        .map_err(|e| e.to_string())?;
        let context = self.context(request, grant_matched, requested, now)?;
        let cedar_request = Request::new(
            principal_uid,
            self.names.invoke.clone(),
            resource_uid,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(self
            .authorizer
            .is_authorized(&cedar_request, set, &entities))
    }

    /// The request's context record, as the schema declares it.
    fn context(
        &self,
        request: &ActionRequest,
        grant_matched: bool,
        requested: bool,
        now: u64,
    ) -> Result<Context, String> {
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        Context::from_pairs([
            ("action".to_string(), s(request.action.as_str())),
            ("intent".to_string(), s(&request.intent)),
            ("intent_source".to_string(), s(request.intent_source.kind())),
            (
                "intent_trusted".to_string(),
                RestrictedExpression::new_bool(request.intent_source.is_trusted()),
            ),
            (
                "grant_matched".to_string(),
                RestrictedExpression::new_bool(grant_matched),
            ),
            (
                "requested".to_string(),
                RestrictedExpression::new_bool(requested),
            ),
            (
                "own_memory".to_string(),
                RestrictedExpression::new_bool(own_memory(request)),
            ),
            (
                "now".to_string(),
                RestrictedExpression::new_long(i64::try_from(now).unwrap_or(i64::MAX)),
            ),
        ])
        .map_err(|e| e.to_string())
    }

    fn principal_type(&self, principal: &Principal) -> &EntityTypeName {
        match principal {
            Principal::Owner { .. } => &self.names.owner,
            Principal::Agent { .. } => &self.names.agent,
            Principal::Token { .. } => &self.names.token,
            Principal::Session { .. } => &self.names.session,
        }
    }

    fn principal_entity(&self, principal: &Principal) -> Result<Entity, String> {
        let uid = |ty: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
        };
        let name = |n: &str| {
            HashMap::from([(
                "name".to_string(),
                RestrictedExpression::new_string(n.to_string()),
            )])
        };
        let entity = match principal {
            Principal::Owner { uid: u } => Entity::new(
                uid(&self.names.owner, "owner"),
                HashMap::from([(
                    "uid".to_string(),
                    RestrictedExpression::new_long(i64::from(*u)),
                )]),
                HashSet::new(),
            ),
            Principal::Agent { id, name: n } => {
                Entity::new(uid(&self.names.agent, id), name(n), HashSet::new())
            }
            Principal::Token { id, name: n } => {
                Entity::new(uid(&self.names.token, id), name(n), HashSet::new())
            }
            Principal::Session { id } => {
                return Ok(Entity::new_no_attrs(
                    uid(&self.names.session, id),
                    HashSet::new(),
                ));
            }
        };
        entity.map_err(|e| e.to_string())
    }

    fn resource_entity(&self, request: &ActionRequest, protected: bool) -> Result<Entity, String> {
        let resource = &request.resource;
        let uid =
            EntityUid::from_type_name_and_id(self.names.resource.clone(), EntityId::new(resource));
        let attrs = [
            (
                "kind".to_string(),
                RestrictedExpression::new_string(request.resource_kind().to_string()),
            ),
            (
                "name".to_string(),
                RestrictedExpression::new_string(resource.clone()),
            ),
            (
                "protected".to_string(),
                RestrictedExpression::new_bool(protected),
            ),
        ];
        let tags = request.context.iter().map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), RestrictedExpression::new_string(text))
        });
        Entity::new_with_tags(uid, attrs, [], tags).map_err(|e| e.to_string())
    }
}

fn load(
    cedar: &Cedar,
    names: &Names,
    sources: &[(String, String)],
    dir: Option<&Path>,
) -> Result<Loaded, PolicyError> {
    let policies = cedar.build(sources, dir)?;
    let screen = Screen::new(&policies.set, names.resource.clone(), names.invoke.clone());
    Ok(Loaded { policies, screen })
}

/// True if the request acts on the caller's own memory namespace: the resource is exactly
/// `memory:<principal id>` (`memory:owner`, `memory:agent:ag_7`, …). Exact, so an agent
/// `ag_7` gets nothing of `ag_70`'s.
fn own_memory(request: &ActionRequest) -> bool {
    request
        .resource
        .strip_prefix("memory:")
        .is_some_and(|ns| ns == request.principal.id())
}

#[cfg(test)]
mod tests;
