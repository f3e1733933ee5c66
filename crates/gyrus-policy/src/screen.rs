//! Screening: evaluate only the policies that can matter for a request.
//!
//! Cedar's authorizer evaluates every policy in the set, and with a hundred owner policies
//! that dominates a decision. Most policies begin with tests on a few low-cardinality facts
//! (the principal's type, `context.action`, the intent source, `resource.kind`,
//! `resource.protected`, …). For each policy we take the longest leading part of its condition
//! that reads only those facts, and Cedar evaluates that part once per combination of facts;
//! the policies whose leading part is false *without error* are left out of the set used for
//! every request with those facts.
//!
//! Why this changes no decision: Cedar evaluates a policy's condition left to right (scope,
//! then each `when`/`unless` clause in order) and `&&` stops at the first false. If the
//! leading conjuncts are false without error for these facts, the whole condition is false
//! without error for any request with these facts, so the policy can be neither a reason nor
//! an error. A screen that errors keeps its policy; anything not understood is not screened.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use serde_json::{Value, json};

/// At most this many fact combinations are cached; past it the cache starts over.
const MAX_CACHED: usize = 4096;

/// The context attributes a screen may read, and the resource attributes.
const CONTEXT_FACTS: [&str; 5] = [
    "action",
    "intent_source",
    "intent_trusted",
    "requested",
    "grant_matched",
];
const RESOURCE_FACTS: [&str; 2] = ["kind", "protected"];

/// The facts a screen depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) principal_type: &'a EntityTypeName,
    pub(crate) action: &'a str,
    pub(crate) intent_source: &'static str,
    pub(crate) intent_trusted: bool,
    pub(crate) requested: bool,
    pub(crate) grant_matched: bool,
    pub(crate) kind: &'a str,
    pub(crate) protected: bool,
}

impl Facts<'_> {
    fn key(&self) -> String {
        let b = |x: bool| if x { '1' } else { '0' };
        format!(
            "{}\u{1f}{}{}{}{}{}\u{1f}{}\u{1f}{}",
            self.principal_type,
            self.intent_source,
            b(self.intent_trusted),
            b(self.requested),
            b(self.grant_matched),
            b(self.protected),
            self.kind,
            self.action
        )
    }
}

/// The screens of one loaded policy set, and the sets they produced.
#[derive(Debug)]
pub(crate) struct Screen {
    /// Every policy, in the order of the full set.
    all: Vec<Policy>,
    /// One permit per screenable policy, with that policy's id.
    screens: PolicySet,
    screened: HashSet<PolicyId>,
    resource_type: EntityTypeName,
    invoke: EntityUid,
    cache: RwLock<HashMap<String, Arc<PolicySet>>>,
}

impl Screen {
    pub(crate) fn new(set: &PolicySet, resource_type: EntityTypeName, invoke: EntityUid) -> Screen {
        let mut screens = PolicySet::new();
        let mut screened = HashSet::new();
        for policy in set.policies() {
            let Some(screen) = screen_of(policy) else {
                continue;
            };
            if screens.add(screen).is_ok() {
                screened.insert(policy.id().clone());
            }
        }
        Screen {
            all: set.policies().cloned().collect(),
            screens,
            screened,
            resource_type,
            invoke,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The policies that can matter for requests with these facts. `None` if screening
    /// itself failed; the caller then uses the full set.
    pub(crate) fn select(
        &self,
        authorizer: &Authorizer,
        facts: &Facts<'_>,
    ) -> Option<Arc<PolicySet>> {
        let key = facts.key();
        if let Some(set) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(Arc::clone(set));
        }
        let set = Arc::new(self.evaluate(authorizer, facts)?);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&set));
        Some(set)
    }

    fn evaluate(&self, authorizer: &Authorizer, facts: &Facts<'_>) -> Option<PolicySet> {
        let principal =
            EntityUid::from_type_name_and_id(facts.principal_type.clone(), EntityId::new(""));
        let resource_uid =
            EntityUid::from_type_name_and_id(self.resource_type.clone(), EntityId::new(""));
        let resource = Entity::new(
            resource_uid.clone(),
            HashMap::from([
                (
                    "kind".to_string(),
                    RestrictedExpression::new_string(facts.kind.to_string()),
                ),
                (
                    "protected".to_string(),
                    RestrictedExpression::new_bool(facts.protected),
                ),
            ]),
            HashSet::new(),
        )
        .ok()?;
        let entities = Entities::from_entities([resource], None).ok()?;
        let context = Context::from_pairs([
            (
                "action".to_string(),
                RestrictedExpression::new_string(facts.action.to_string()),
            ),
            (
                "intent_source".to_string(),
                RestrictedExpression::new_string(facts.intent_source.to_string()),
            ),
            (
                "intent_trusted".to_string(),
                RestrictedExpression::new_bool(facts.intent_trusted),
            ),
            (
                "requested".to_string(),
                RestrictedExpression::new_bool(facts.requested),
            ),
            (
                "grant_matched".to_string(),
                RestrictedExpression::new_bool(facts.grant_matched),
            ),
        ])
        .ok()?;
        let request =
            Request::new(principal, self.invoke.clone(), resource_uid, context, None).ok()?;
        let response = authorizer.is_authorized(&request, &self.screens, &entities);
        let diagnostics = response.diagnostics();
        let mut keep: HashSet<&PolicyId> = diagnostics.reason().collect();
        for error in diagnostics.errors() {
            match error {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    keep.insert(e.policy_id());
                }
            }
        }
        PolicySet::from_policies(
            self.all
                .iter()
                .filter(|p| !self.screened.contains(p.id()) || keep.contains(p.id()))
                .cloned(),
        )
        .ok()
    }
}

/// The screen of a policy: a permit with the same id whose condition is the policy's scope
/// (the parts that depend only on types) and the leading conjuncts that read only facts.
/// `None` if there is nothing to screen on or the policy is not understood.
fn screen_of(policy: &Policy) -> Option<Policy> {
    let est = policy.to_json().ok()?;
    let principal = type_scope(est.get("principal")?)?;
    let action = match est.get("action")?.get("op")?.as_str()? {
        "All" | "==" => est.get("action")?.clone(),
        _ => json!({"op": "All"}),
    };
    let resource = type_scope(est.get("resource")?)?;
    let mut conjuncts = Vec::new();
    'clauses: for clause in est.get("conditions")?.as_array()? {
        let body = clause.get("body")?;
        match clause.get("kind")?.as_str()? {
            "when" => {
                let mut parts = Vec::new();
                flatten_and(body, &mut parts);
                for part in parts {
                    if !reads_only_facts(part) {
                        break 'clauses;
                    }
                    conjuncts.push(part.clone());
                }
            }
            "unless" => {
                if !reads_only_facts(body) {
                    break 'clauses;
                }
                conjuncts.push(json!({"!": {"arg": body}}));
            }
            _ => return None,
        }
    }
    let scoped = principal.get("op").and_then(Value::as_str) != Some("All")
        || resource.get("op").and_then(Value::as_str) != Some("All");
    if conjuncts.is_empty() && !scoped {
        return None;
    }
    let mut conditions = Vec::new();
    if let Some(body) = conjuncts
        .into_iter()
        .reduce(|left, right| json!({"&&": {"left": left, "right": right}}))
    {
        conditions.push(json!({"kind": "when", "body": body}));
    }
    let screen = json!({
        "effect": "permit",
        "principal": principal,
        "action": action,
        "resource": resource,
        "conditions": conditions,
    });
    Policy::from_json(Some(policy.id().clone()), screen).ok()
}

/// A principal or resource scope reduced to what depends only on the entity type: `All`
/// stays, `is T` stays, anything naming an entity (`==`, `in`, `is T in`) becomes `All`.
fn type_scope(scope: &Value) -> Option<Value> {
    let op = scope.get("op")?.as_str()?;
    Some(match op {
        "is" if scope.get("in").is_none() => scope.clone(),
        _ => json!({"op": "All"}),
    })
}

/// The conjuncts of a left-nested `&&` chain, in evaluation order.
fn flatten_and<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) if expr.as_object().is_some_and(|o| o.len() == 1) => {
            match (and.get("left"), and.get("right")) {
                (Some(left), Some(right)) => {
                    flatten_and(left, out);
                    flatten_and(right, out);
                }
                _ => out.push(expr),
            }
        }
        _ => out.push(expr),
    }
}

/// True if every reference to the request in `expr` is a fact: `context.<fact>`,
/// `resource.<fact>`, `context has <fact>`, or `principal is T`. Conservative: anything else
/// that mentions a variable is not a fact.
fn reads_only_facts(expr: &Value) -> bool {
    match expr {
        Value::Object(map) => {
            if map.contains_key("Var") {
                return false;
            }
            if map.len() == 1 {
                let (op, inner) = map
                    .iter()
                    .next()
                    .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
                match op {
                    "." | "has" => {
                        if let (Some(Value::Object(var)), Some(Value::String(attr))) =
                            (inner.get("left"), inner.get("attr"))
                            && var.len() == 1
                        {
                            return match var.get("Var").and_then(Value::as_str) {
                                Some("context") => CONTEXT_FACTS.contains(&attr.as_str()),
                                Some("resource") => RESOURCE_FACTS.contains(&attr.as_str()),
                                Some(_) => false,
                                None => reads_only_facts(inner),
                            };
                        }
                    }
                    "is" => {
                        if let Some(Value::Object(var)) = inner.get("left")
                            && var.len() == 1
                            && var.get("Var").and_then(Value::as_str) == Some("principal")
                        {
                            return inner.get("in").is_none();
                        }
                    }
                    _ => {}
                }
            }
            map.values().all(reads_only_facts)
        }
        Value::Array(items) => items.iter().all(reads_only_facts),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn screen_text(src: &str) -> Option<String> {
        let set = PolicySet::from_str(src).unwrap();
        let policy = set.policies().next().unwrap();
        screen_of(policy).map(|p| p.to_string())
    }

    #[test]
    fn screens_take_only_leading_facts() {
        let s = screen_text(
            r#"forbid (principal is Gyrus::Agent, action, resource)
               when { context.action like "x.*" && resource.kind == "host" && resource.name like "h*" && context.requested };"#,
        )
        .unwrap();
        assert!(s.contains("(context.action like \"x.*\")"), "{s}");
        assert!(s.contains("(resource.kind == \"host\")"), "{s}");
        assert!(!s.contains("name"), "{s}");
        assert!(!s.contains("requested"), "stops at the first non-fact: {s}");
        // Nothing to screen on.
        assert_eq!(
            screen_text(r#"permit (principal, action, resource) when { principal.name == "a" };"#),
            None
        );
        // A variable hidden in a record or an `in` scope is not a fact.
        for src in [
            r#"permit (principal, action, resource) when { {"a": principal}.a == principal };"#,
            r#"permit (principal, action, resource) when { principal in Gyrus::Agent::"x" };"#,
            r#"permit (principal, action, resource) when { resource.name == "a" };"#,
            r#"permit (principal, action, resource) when { context.intent == "a" };"#,
            r#"permit (principal, action, resource) when { context.now > 3 };"#,
        ] {
            assert_eq!(screen_text(src), None, "{src}");
        }
        // An unless clause of facts is negated; a principal type test is a fact.
        let s = screen_text(
            r#"forbid (principal, action, resource) when { resource.protected } unless { principal is Gyrus::Owner };"#,
        )
        .unwrap();
        assert!(s.contains("!(principal is Gyrus::Owner)"), "{s}");
    }
}
