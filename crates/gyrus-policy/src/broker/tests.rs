//! The broker's internals: fail-closed, screening, schema conformance.

use std::time::Duration;

use gyrus_bus::subject::Subject;

use super::*;
use crate::IntentSource;

#[test]
fn without_fail_closed_cedar_would_allow_past_an_erroring_forbid() {
    let dir = tempfile::tempdir().unwrap();
    let grants = Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap());
    let forbid = "@id(\"o.overflow\") forbid (principal, action, resource) \
                  when { context.now * 10000000000 > 0 };";
    let broker = ConsentBroker::from_sources(grants, &[("o.cedar".into(), forbid.into())]).unwrap();
    let request = ActionRequest::new(
        Principal::Owner { uid: 1000 },
        Subject::new("fs.write").unwrap(),
        "path:/w/a",
        "tidy up",
        IntentSource::Owner,
    );
    let now = unix(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000));
    let raw = broker
        .evaluate(&broker.current(), &request, false, false, now, true)
        .unwrap();
    assert_eq!(raw.decision(), CedarDecision::Allow);
    assert_eq!(raw.diagnostics().errors().count(), 1);
    let decision = broker.decide(
        &request,
        &[],
        SystemTime::UNIX_EPOCH + Duration::from_secs(now),
    );
    assert_eq!(decision.outcome, Outcome::Deny);
}

/// Screening must change nothing: same decision, same reasons, same errors as evaluating
/// every policy, over a grid of requests and policies that include erroring ones.
#[test]
fn screening_changes_no_response() {
    let owner_policies = r#"
        forbid (principal is Gyrus::Agent, action, resource)
        when { context.action like "x1.*" && resource.kind == "host" };
        permit (principal is Gyrus::Token, action, resource)
        when { context.action like "fs.*" && context.intent_trusted && resource.kind == "path" };
        forbid (principal, action, resource)
        when { resource.kind == "path" && resource.name like "path:/secret1/*" }
        unless { principal is Gyrus::Owner };
        @decision("ask")
        permit (principal is Gyrus::Session, action, resource)
        when { context.action == "e.run" && context.intent_source == "plan" };
        forbid (principal is Gyrus::Agent, action, resource)
        when { principal.name == "bad" || (resource.hasTag("size") && resource.getTag("size") == "3") };
        forbid (principal, action, resource)
        when { context.action like "e.*" && context.now * 10000000000 > 0 };
        forbid (principal, action, resource)
        when { resource.kind == "host" && context.requested && context.now * 10000000000 > 0 };
        permit (principal is Gyrus::Token, action, resource)
        unless { context.action like "fs.*" || resource.protected };
        permit (principal == Gyrus::Agent::"ag_1", action, resource)
        when { context.requested && context.intent_source != "untrusted" };
        @decision("ask")
        permit (principal, action, resource)
        when { context.intent_source == "plan" && resource.kind == "path" && context has action };
        forbid (principal, action in [Gyrus::Action::"invoke"], resource is Gyrus::Resource)
        when { context.grant_matched && resource.hasTag("size") && resource.getTag("size") == "4" };
    "#;
    let dir = tempfile::tempdir().unwrap();
    let grants = Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap());
    let broker =
        ConsentBroker::from_sources(grants, &[("grid.cedar".into(), owner_policies.into())])
            .unwrap()
            .with_protected_resources(&["path:/w/protected/**".into()])
            .unwrap();
    let loaded = broker.current();
    let principals = [
        Principal::Owner { uid: 1 },
        Principal::Agent {
            id: "ag_1".into(),
            name: "good".into(),
        },
        Principal::Agent {
            id: "ag_2".into(),
            name: "bad".into(),
        },
        Principal::Token {
            id: "tok_1".into(),
            name: "t".into(),
        },
        Principal::Session { id: "s_1".into() },
    ];
    let actions = [
        "fs.read",
        "fs.write",
        "e.run",
        "x1.get",
        "grant.add",
        "svc0.read",
    ];
    let resources = [
        "path:/w/a",
        "host:h:443",
        "path:/secret1/x",
        "path:/w/protected/p",
        "agent:ag_2",
        "",
    ];
    let sources = [
        IntentSource::Owner,
        IntentSource::Plan("pl_1".into()),
        IntentSource::Untrusted("tool:x".into()),
    ];
    let now = 1_750_000_000;
    let mut compared = 0;
    let mut errors_seen = 0;
    for principal in &principals {
        for action in actions {
            for resource in resources {
                for source in &sources {
                    for (requested, grant_matched, size) in [
                        (false, false, 3),
                        (true, false, 4),
                        (false, true, 4),
                        (true, true, 3),
                    ] {
                        let request = ActionRequest::new(
                            principal.clone(),
                            Subject::new(action).unwrap(),
                            resource,
                            "do it",
                            source.clone(),
                        )
                        .with_attr("size", serde_json::json!(size));
                        let eval = |screen| {
                            broker
                                .evaluate(&loaded, &request, grant_matched, requested, now, screen)
                                .unwrap()
                        };
                        let (screened, full) = (eval(true), eval(false));
                        let summary = |r: &Response| {
                            let mut reasons: Vec<String> =
                                r.diagnostics().reason().map(|p| p.to_string()).collect();
                            reasons.sort();
                            let mut errors: Vec<String> =
                                r.diagnostics().errors().map(|e| e.to_string()).collect();
                            errors.sort();
                            (r.decision(), reasons, errors)
                        };
                        let full_summary = summary(&full);
                        errors_seen += usize::from(!full_summary.2.is_empty());
                        assert_eq!(
                            summary(&screened),
                            full_summary,
                            "{request:?} {requested} {grant_matched}"
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 5 * 6 * 6 * 3 * 4);
    assert!(errors_seen > 0);
    // And screening really leaves policies out.
    let facts = Facts {
        principal_type: &broker.names.agent,
        action: "svc0.read",
        intent_source: "plan",
        intent_trusted: true,
        requested: false,
        grant_matched: true,
        kind: "path",
        protected: false,
    };
    let selected = loaded.screen.select(&broker.authorizer, &facts).unwrap();
    assert!(
        selected.policies().count() < loaded.policies.set.policies().count() / 2,
        "{} of {}",
        selected.policies().count(),
        loaded.policies.set.policies().count()
    );
}

/// The broker skips schema checks on the hot path; this is where they happen instead.
#[test]
fn entities_and_context_conform_to_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let grants = Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap());
    let broker = ConsentBroker::from_sources(grants, &[]).unwrap();
    let schema = broker.cedar.validator.schema();
    for principal in [
        Principal::Owner { uid: 1000 },
        Principal::Agent {
            id: "ag_1".into(),
            name: "a".into(),
        },
        Principal::Token {
            id: "tok_1".into(),
            name: "t".into(),
        },
        Principal::Session { id: "s_1".into() },
    ] {
        let request = ActionRequest::new(
            principal.clone(),
            Subject::new("fs.read").unwrap(),
            "path:/w/a",
            "read it",
            IntentSource::Untrusted("tool:x".into()),
        )
        .with_attr("size", serde_json::json!(3))
        .with_attr("method", serde_json::json!("GET"));
        let p = broker.principal_entity(&principal).unwrap();
        let r = broker.resource_entity(&request, true).unwrap();
        let (p_uid, r_uid) = (p.uid(), r.uid());
        Entities::from_entities([p, r], Some(schema)).unwrap();
        // The context, exactly as `evaluate` builds it, passes `Request::new` with the schema.
        let context = broker
            .context(&request, true, false, 1_750_000_000)
            .unwrap();
        Request::new(
            p_uid,
            broker.names.invoke.clone(),
            r_uid,
            context,
            Some(schema),
        )
        .unwrap();
    }
}

#[test]
fn malformed_resources_are_denied() {
    let long = format!("path:/{}", "x".repeat(5000));
    for bad in [
        "path:/a/../b",
        "path:/a/./b",
        "path:/a\n",
        &long,
        "",
        "/etc/passwd",
        "Path:/x",
    ] {
        assert!(crate::resource_problem(bad).is_some(), "{bad:?}");
    }
    for good in ["path:/a/b..c", "host:a.b:443", "agent:ag_1", "tool:"] {
        assert_eq!(crate::resource_problem(good), None, "{good:?}");
    }
}

/// Each principal may use its own memory namespace, exactly: not a neighbour whose id merely
/// starts the same, not another kind's, not a non-memory action on it.
#[test]
fn a_principal_owns_exactly_its_own_memory_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let grants = Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap());
    let broker = ConsentBroker::from_sources(grants, &[]).unwrap();
    let agent = Principal::Agent {
        id: "ag_7".into(),
        name: "a".into(),
    };
    let session = Principal::Session { id: "ses_1".into() };
    let decide = |who: &Principal, action: &str, resource: &str| {
        let request = ActionRequest::new(
            who.clone(),
            Subject::new(action).unwrap(),
            resource,
            "remember",
            IntentSource::Untrusted("model".into()),
        );
        broker.decide(&request, &[], SystemTime::now()).outcome
    };
    assert_eq!(
        decide(&agent, "memory.store", "memory:agent:ag_7"),
        Outcome::Allow
    );
    assert_eq!(
        decide(&agent, "memory.query", "memory:agent:ag_7"),
        Outcome::Allow
    );
    assert_eq!(
        decide(&session, "memory.query", "memory:session:ses_1"),
        Outcome::Allow
    );
    for (who, action, resource) in [
        (&agent, "memory.query", "memory:agent:ag_70"),
        (&agent, "memory.query", "memory:agent:ag_"),
        (&agent, "memory.query", "memory:owner"),
        (&agent, "memory.query", "memory:session:ses_1"),
        (&agent, "memory.query", "memory:shared:team"),
        (&agent, "fs.read", "memory:agent:ag_7"),
        (&session, "memory.query", "memory:agent:ag_7"),
    ] {
        assert_eq!(
            decide(who, action, resource),
            Outcome::Deny,
            "{action} {resource}"
        );
    }
}
