//! Consent requests: one prompt per plan, approvals that grant exactly what was asked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gyrus_policy::{ConsentError, ConsentStatus, ConsentStore, IntentSource, Outcome};
use pretty_assertions::assert_eq;

const TTL: Duration = Duration::from_secs(300);

fn plan_calls() -> Vec<gyrus_policy::ActionRequest> {
    [
        ("fs.write", "path:/w/out/a.txt"),
        ("fs.write", "path:/w/out/b[1].txt"),
        ("net.get", "host:api.example.com:443"),
    ]
    .into_iter()
    .map(|(a, r)| {
        let mut req = call(builder(), a, r).with_plan("pl_7");
        req.intent_source = IntentSource::Plan("pl_7".into());
        req
    })
    .collect()
}

#[test]
fn three_calls_of_one_plan_make_one_request_and_approval_allows_them() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let requested = patterns(&["fs.*", "net.get"]);
    let calls = plan_calls();
    let mut ids = Vec::new();
    for req in &calls {
        let d = f.broker.decide(req, &requested, t0());
        assert_eq!(d.outcome, Outcome::Ask, "{d:?}");
        ids.push(consent.ask(req, t0(), TTL).unwrap().id);
    }
    // Asking again for a listed call does not list it twice.
    consent.ask(&calls[0], t0(), TTL).unwrap();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let pending = consent.list(t0()).unwrap();
    assert_eq!(pending.len(), 1);
    let request = &pending[0];
    assert_eq!(request.principal, "agent:ag_1");
    assert_eq!(request.principal_label, "agent:builder");
    assert_eq!(request.plan_id.as_deref(), Some("pl_7"));
    assert_eq!(request.status, ConsentStatus::Pending);
    let listed: Vec<_> = request
        .calls
        .iter()
        .map(|c| (c.action.as_str(), c.resource.as_str(), c.intent.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("fs.write", "path:/w/out/a.txt", "build the project"),
            ("fs.write", "path:/w/out/b[1].txt", "build the project"),
            ("net.get", "host:api.example.com:443", "build the project"),
        ]
    );

    let grants = consent
        .approve(
            &ids[0],
            Some(Duration::from_secs(3600)),
            Some(10),
            "owner",
            t0(),
        )
        .unwrap();
    assert_eq!(grants.len(), 3);
    assert_eq!(grants[1].resources, ["path:/w/out/b[[]1[]].txt"]);
    assert!(
        grants
            .iter()
            .all(|g| g.intent.as_deref() == Some("build the project")
                && g.max_uses == Some(10)
                && g.principal == "agent:ag_1")
    );
    assert_eq!(
        consent.status(&ids[0], t0()).unwrap(),
        ConsentStatus::Approved
    );
    assert!(consent.list(t0()).unwrap().is_empty());

    for (req, grant) in calls.iter().zip(&grants) {
        let d = f.broker.decide(req, &requested, t0());
        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
        assert_eq!(d.grant_id.as_deref(), Some(grant.id.as_str()));
    }
    // Exactly those calls: a neighbour file, or the same call for another intent, still asks.
    let neighbour = call(builder(), "fs.write", "path:/w/out/b1.txt");
    assert_eq!(
        f.broker.decide(&neighbour, &requested, t0()).outcome,
        Outcome::Ask
    );
    let mut other_intent = calls[0].clone();
    other_intent.intent = "something else".into();
    assert_eq!(
        f.broker.decide(&other_intent, &requested, t0()).outcome,
        Outcome::Ask
    );

    // An answered request cannot be answered again.
    assert!(matches!(
        consent.deny(&ids[0], "owner", t0()),
        Err(ConsentError::NotPending {
            status: ConsentStatus::Approved,
            ..
        })
    ));
}

#[test]
fn a_denied_request_grants_nothing() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let calls = plan_calls();
    let id = consent.ask(&calls[0], t0(), TTL).unwrap().id;
    let denied = consent.deny(&id, "owner", t0()).unwrap();
    assert_eq!(denied.status, ConsentStatus::Denied);
    assert_eq!(denied.decided_by.as_deref(), Some("owner"));
    assert!(f.grants.list().unwrap().is_empty());
    assert_eq!(f.broker.decide(&calls[0], &[], t0()).outcome, Outcome::Deny);
    assert!(matches!(
        consent.approve(&id, None, None, "owner", t0()),
        Err(ConsentError::NotPending {
            status: ConsentStatus::Denied,
            ..
        })
    ));
    // The next call of the plan opens a fresh request.
    let again = consent.ask(&calls[1], t0(), TTL).unwrap();
    assert_ne!(again.id, id);
    assert_eq!(again.calls.len(), 1);
}

#[test]
fn an_unanswered_request_expires_into_a_denial() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let calls = plan_calls();
    let id = consent.ask(&calls[0], t0(), TTL).unwrap().id;
    let late = t0() + TTL;
    assert_eq!(consent.status(&id, late).unwrap(), ConsentStatus::Expired);
    assert!(consent.list(late).unwrap().is_empty());
    assert!(matches!(
        consent.approve(&id, None, None, "owner", late),
        Err(ConsentError::NotPending {
            status: ConsentStatus::Expired,
            ..
        })
    ));
    assert!(f.grants.list().unwrap().is_empty());
    assert_eq!(f.broker.decide(&calls[0], &[], late).outcome, Outcome::Deny);
}

#[test]
fn without_a_plan_requests_bundle_by_principal_and_intent() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let a = consent
        .ask(&call(builder(), "fs.read", "path:/w/a"), t0(), TTL)
        .unwrap();
    let b = consent
        .ask(&call(builder(), "fs.read", "path:/w/b"), t0(), TTL)
        .unwrap();
    let mut other = call(builder(), "fs.read", "path:/w/c");
    other.intent = "another task".into();
    let c = consent.ask(&other, t0(), TTL).unwrap();
    let d = consent
        .ask(&call(agent("ag_2", "x"), "fs.read", "path:/w/a"), t0(), TTL)
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(b.calls.len(), 2);
    assert_ne!(a.id, c.id);
    assert_ne!(a.id, d.id);
    assert_eq!(consent.list(t0()).unwrap().len(), 3);
}

#[test]
fn untrusted_intents_are_never_put_to_the_owner() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let mut req = call(builder(), "fs.read", "path:/w/a");
    req.intent_source = IntentSource::Untrusted("tool:web.fetch".into());
    assert!(matches!(
        consent.ask(&req, t0(), TTL),
        Err(ConsentError::UntrustedIntent(_))
    ));
    req.intent_source = IntentSource::Owner;
    req.intent = String::new();
    assert!(matches!(
        consent.ask(&req, t0(), TTL),
        Err(ConsentError::InvalidIntent)
    ));
    assert!(matches!(
        consent.status("cr_nope", t0()),
        Err(ConsentError::NotFound(_))
    ));
}

#[test]
fn requests_survive_a_restart() {
    let f = fixture();
    let consent = ConsentStore::new(Arc::clone(&f.grants));
    let id = consent.ask(&plan_calls()[0], t0(), TTL).unwrap().id;
    drop(consent);
    let reopened =
        Arc::new(gyrus_policy::GrantStore::open(&f.dir.path().join("grants.db")).unwrap());
    let consent = ConsentStore::new(reopened);
    assert_eq!(consent.get(&id, t0()).unwrap().unwrap().calls.len(), 1);
}
