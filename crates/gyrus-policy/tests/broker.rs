//! The consent broker through its public interface, over a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gyrus_bus::subject::Subject;
use gyrus_policy::{
    CORE_POLICIES_SRC, ConsentBroker, Decision, GrantError, GrantStore, IntentSource, NewGrant,
    Outcome, PolicyError,
};
use pretty_assertions::assert_eq;

fn assert_outcome(d: &Decision, outcome: Outcome) {
    assert_eq!(d.outcome, outcome, "{d:#?}");
}

#[test]
fn no_grant_denies() {
    let f = fixture();
    let d = f
        .broker
        .decide(&call(builder(), "fs.read", "path:/w/a.txt"), &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(d.policies.is_empty(), "{d:?}");
    assert!(d.reason.contains("no policy permits"), "{}", d.reason);
    assert!(d.reason.contains("holds no grant"), "{}", d.reason);
}

#[test]
fn a_matching_grant_allows_and_names_itself() {
    let f = fixture();
    let g = f
        .grants
        .add(grant(&builder(), &["fs.*"], &["path:/w/**"]), t0())
        .unwrap();
    assert!(g.id.starts_with("gr_") && g.id.len() == 27, "{}", g.id);
    let d = f
        .broker
        .decide(&call(builder(), "fs.read", "path:/w/src/a.rs"), &[], t0());
    assert_outcome(&d, Outcome::Allow);
    assert_eq!(d.grant_id.as_deref(), Some(g.id.as_str()));
    assert_eq!(d.policies, ["core.grant"]);
    // Outside its scope: other action, other resource, a path walking out of it.
    for (action, resource) in [
        ("net.get", "path:/w/a"),
        ("fs.read", "path:/x/a"),
        ("fs.read", "path:/w/../etc/passwd"),
    ] {
        let d = f
            .broker
            .decide(&call(builder(), action, resource), &[], t0());
        assert_outcome(&d, Outcome::Deny);
    }
}

#[test]
fn an_expired_grant_denies() {
    let f = fixture();
    let g = f
        .grants
        .add(
            NewGrant {
                valid_for: Some(Duration::from_secs(60)),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let req = call(builder(), "fs.read", "path:/w/a");
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Allow);
    let later = t0() + Duration::from_secs(60);
    let d = f.broker.decide(&req, &[], later);
    assert_outcome(&d, Outcome::Deny);
    assert!(
        d.reason
            .contains(&format!("closest grant {}: it has expired", g.id)),
        "{}",
        d.reason
    );
    assert!(!f.grants.consume(&g.id, later).unwrap());
}

#[test]
fn exhausted_uses_deny() {
    let f = fixture();
    let g = f
        .grants
        .add(
            NewGrant {
                max_uses: Some(2),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let req = call(builder(), "fs.read", "path:/w/a");
    for _ in 0..2 {
        let d = f.broker.decide_and_consume(&req, &[], t0());
        assert_outcome(&d, Outcome::Allow);
    }
    let d = f.broker.decide_and_consume(&req, &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(
        d.reason.contains("all its uses are consumed"),
        "{}",
        d.reason
    );
    assert!(!f.grants.consume(&g.id, t0()).unwrap());
    assert_eq!(f.grants.get(&g.id).unwrap().unwrap().uses, 2);
}

#[test]
fn consume_never_exceeds_max_uses_under_racing_threads() {
    let f = fixture();
    let g = f
        .grants
        .add(
            NewGrant {
                max_uses: Some(5),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .filter(|_| f.grants.consume(&g.id, t0()).unwrap())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(taken, 5);

    // Two stores on one file (two connections, as two processes would have) racing too.
    let g = f
        .grants
        .add(
            NewGrant {
                max_uses: Some(7),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let other = GrantStore::open(&f.dir.path().join("grants.db")).unwrap();
    let taken: usize = std::thread::scope(|s| {
        let a = s.spawn(|| {
            (0..40)
                .filter(|_| f.grants.consume(&g.id, t0()).unwrap())
                .count()
        });
        let b = s.spawn(|| {
            (0..40)
                .filter(|_| other.consume(&g.id, t0()).unwrap())
                .count()
        });
        a.join().unwrap() + b.join().unwrap()
    });
    assert_eq!(taken, 7);
    assert_eq!(f.grants.get(&g.id).unwrap().unwrap().uses, 7);
    // The store that lost races learnt the truth: the broker no longer offers the grant.
    let d = f
        .broker
        .decide(&call(builder(), "fs.read", "path:/w/a"), &[], t0());
    assert_outcome(&d, Outcome::Deny);
}

#[test]
fn a_wrong_intent_denies() {
    let f = fixture();
    f.grants
        .add(
            NewGrant {
                intent: Some("build the project".into()),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let mut req = call(builder(), "fs.read", "path:/w/a");
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Allow);
    req.intent = "build the project and upload it".into();
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(d.reason.contains("different intent"), "{}", d.reason);
}

#[test]
fn an_untrusted_intent_source_denies() {
    let f = fixture();
    f.grants
        .add(
            NewGrant {
                intent: Some("build the project".into()),
                ..grant(&builder(), &["fs.read"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    let mut req = call(builder(), "fs.read", "path:/w/a");
    // The same words, but they came out of a web page.
    req.intent_source = IntentSource::Untrusted("tool:web.fetch".into());
    let d = f.broker.decide(&req, &patterns(&["fs.read"]), t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(d.reason.contains("untrusted"), "{}", d.reason);

    // The owner's own calls need the owner's own intent too.
    let mut owner_req = call(owner(), "fs.write", "path:/w/a");
    owner_req.intent_source = IntentSource::Untrusted("retrieved:notes.md".into());
    let d = f.broker.decide(&owner_req, &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(d.reason.contains("the owner's own intent"), "{}", d.reason);
}

#[test]
fn a_revoked_grant_denies_on_the_very_next_decision() {
    let f = fixture();
    let g = f
        .grants
        .add(grant(&builder(), &["fs.read"], &["path:/w/**"]), t0())
        .unwrap();
    let req = call(builder(), "fs.read", "path:/w/a");
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Allow);
    let revoked = f.grants.revoke(&g.id, t0()).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Deny);
    assert!(!f.grants.consume(&g.id, t0()).unwrap());
    assert!(matches!(
        f.grants.revoke(&g.id, t0()),
        Err(GrantError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        f.grants.revoke("gr_nope", t0()),
        Err(GrantError::NotFound(_))
    ));
    // A restarted daemon does not bring it back.
    let reopened = GrantStore::open(&f.dir.path().join("grants.db")).unwrap();
    assert!(reopened.first_match(&req, t0()).is_err());
    assert_eq!(reopened.list().unwrap().len(), 1);
}

#[test]
fn the_owner_with_a_trusted_intent_is_allowed() {
    let f = fixture();
    let req = call(owner(), "fs.write", "path:/w/a");
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Allow);
    assert_eq!(d.policies, ["core.owner"]);
    assert_eq!(d.grant_id, None);
}

#[test]
fn a_plan_on_the_owner_s_behalf_asks_then_runs_only_under_its_grants() {
    let f = fixture();
    let mut req = call(owner(), "fs.write", "path:/w/a").with_plan("pl_1");
    req.intent_source = IntentSource::Plan("pl_1".into());
    // No grant yet: the owner is asked (the plan's intent is trusted), never allowed outright.
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Ask);
    assert_eq!(d.policies, ["core.plan"]);
    // The owner approves exactly this call for this intent: it runs under the grant.
    f.grants
        .add(
            NewGrant {
                intent: Some(req.intent.clone()),
                ..grant(&owner(), &["fs.write"], &["path:/w/a"])
            },
            t0(),
        )
        .unwrap();
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Allow);
    assert_eq!(d.policies, ["core.grant"]);
    assert!(d.grant_id.is_some(), "{d:?}");
    // A call the owner did not approve is still only a question.
    let mut other = call(owner(), "fs.write", "path:/w/b").with_plan("pl_1");
    other.intent_source = IntentSource::Plan("pl_1".into());
    assert_outcome(&f.broker.decide(&other, &[], t0()), Outcome::Ask);
    // A plan may not touch consent, even the owner's plan: refused, not asked.
    let mut widen = call(owner(), "grant.create", "agent:ag_1").with_plan("pl_1");
    widen.intent_source = IntentSource::Plan("pl_1".into());
    let d = f.broker.decide(&widen, &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert_eq!(d.policies, ["core.consent-is-the-owners"]);
    // Untrusted text on the owner's behalf is neither allowed nor put to the owner.
    let mut untrusted = call(owner(), "fs.write", "path:/w/a");
    untrusted.intent_source = IntentSource::Untrusted("model:m".into());
    assert_outcome(&f.broker.decide(&untrusted, &[], t0()), Outcome::Deny);
}

#[test]
fn a_requested_action_without_a_grant_asks() {
    let f = fixture();
    let req = call(builder(), "fs.write", "path:/w/out.txt");
    let d = f.broker.decide(&req, &patterns(&["fs.*"]), t0());
    assert_outcome(&d, Outcome::Ask);
    assert_eq!(d.policies, ["core.ask"]);
    // Not requested by the manifest: plain deny.
    let d = f.broker.decide(&req, &patterns(&["net.>"]), t0());
    assert_outcome(&d, Outcome::Deny);
    // Requested, but on untrusted intent: never put to the owner.
    let mut untrusted = req.clone();
    untrusted.intent_source = IntentSource::Untrusted("tool:web.fetch".into());
    assert_outcome(
        &f.broker.decide(&untrusted, &patterns(&["fs.*"]), t0()),
        Outcome::Deny,
    );
    // Tokens and sessions have no manifest to ask from.
    let token = gyrus_policy::Principal::Token {
        id: "tok_1".into(),
        name: "laptop".into(),
    };
    assert_outcome(
        &f.broker.decide(
            &call(token, "fs.write", "path:/w/out.txt"),
            &patterns(&["fs.*"]),
            t0(),
        ),
        Outcome::Deny,
    );
}

/// Strict-mode valid, but it errors at run time: `now * 10^10` overflows a 64-bit Long.
const ERRORING_FORBID: &str = r#"
@id("owner.overflowing-forbid")
forbid (principal, action, resource)
when { context.now * 10000000000 > 0 };
"#;

#[test]
fn an_erroring_forbid_still_denies() {
    let f = fixture_with(&[("overflow.cedar", ERRORING_FORBID)]);
    let req = call(owner(), "fs.write", "path:/w/a");
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert_eq!(d.errors.len(), 1, "{d:?}");
    assert!(
        d.errors[0].contains("owner.overflowing-forbid"),
        "{:?}",
        d.errors
    );
    assert!(d.errors[0].contains("overflow"), "{:?}", d.errors);
    assert!(d.reason.contains("errors deny"), "{}", d.reason);
    // Without the fail-closed rule Cedar would have allowed: it skips the erroring forbid and
    // the owner permit wins.
    assert_eq!(d.policies, ["core.owner"]);

    // The brief's example, `ip(context.action)`, does not get this far: strict validation
    // rejects an extension constructor on a non-literal.
    let err = ConsentBroker::from_sources(
        Arc::clone(&f.grants),
        &[(
            "ip.cedar".into(),
            "forbid(principal, action, resource) when { ip(context.action).isLoopback() };".into(),
        )],
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("ip.cedar: "), "{err}");
}

#[test]
fn a_recycled_agent_name_inherits_nothing() {
    let f = fixture();
    let old = agent("ag_old", "builder");
    f.grants
        .add(grant(&old, &["fs.*"], &["path:/w/**"]), t0())
        .unwrap();
    assert_outcome(
        &f.broker
            .decide(&call(old, "fs.read", "path:/w/a"), &[], t0()),
        Outcome::Allow,
    );
    let new = agent("ag_new", "builder");
    let d = f
        .broker
        .decide(&call(new.clone(), "fs.read", "path:/w/a"), &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert!(
        d.reason.contains("agent:ag_new holds no grant"),
        "{}",
        d.reason
    );
}

#[test]
fn grant_fields_cannot_inject_policy() {
    let f = fixture();
    let p = builder();
    let injections = [
        r#"") || true || (""#,
        "permit(principal,action,resource);",
        r#"*"; permit(principal, action, resource); //"#,
    ];
    // Cedar syntax in the intent is just an intent that must match exactly.
    for text in injections {
        f.grants
            .add(
                NewGrant {
                    intent: Some(text.into()),
                    ..grant(&p, &["fs.read"], &["path:/w/**"])
                },
                t0(),
            )
            .unwrap();
    }
    // In actions and resources it is rejected outright.
    for text in injections {
        assert!(matches!(
            f.grants.add(grant(&p, &[text], &["path:/w/**"]), t0()),
            Err(GrantError::InvalidAction(_))
        ));
        assert!(matches!(
            f.grants.add(grant(&p, &["fs.read"], &[text]), t0()),
            Err(GrantError::InvalidResource { .. })
        ));
        assert!(matches!(
            f.grants.add(
                NewGrant {
                    principal: text.into(),
                    ..grant(&p, &["fs.read"], &["path:/w/**"])
                },
                t0()
            ),
            Err(GrantError::InvalidPrincipal(_))
        ));
    }
    // A resource glob that is valid but full of Cedar syntax matches only itself.
    let literal = r#"path:/w/") || true || ("/x"#;
    f.grants
        .add(grant(&p, &["fs.stat"], &[literal]), t0())
        .unwrap();
    // Nothing was widened: other actions, resources, intents and principals stay denied.
    for req in [
        call(p.clone(), "fs.write", "path:/w/a"),
        call(p.clone(), "fs.read", "path:/etc/passwd"),
        call(p.clone(), "fs.stat", "path:/w/a"),
        call(agent("ag_2", "other"), "fs.read", "path:/w/a"),
    ] {
        let d = f.broker.decide(&req, &[], t0());
        assert_outcome(&d, Outcome::Deny);
    }
    let mut req = call(p.clone(), "fs.read", "path:/w/a");
    req.intent = "anything else".into();
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Deny);
    req.intent = injections[0].into();
    assert_outcome(&f.broker.decide(&req, &[], t0()), Outcome::Allow);
    // And the policy set is still exactly the core policies.
    assert!(f.broker.owner_policy_ids().is_empty());
    assert!(CORE_POLICIES_SRC.contains("context.grant_matched"));
}

#[test]
fn owner_policy_files_are_validated_and_named() {
    let f = fixture();
    let dir = f.dir.path().join("policies");
    write_policies(
        &dir,
        &[
            (
                "10-net.cedar",
                r#"@id("net.no-agents-online")
forbid (principal is Gyrus::Agent, action, resource)
when { resource.kind == "host" };

permit (principal is Gyrus::Token, action, resource)
when { context.action == "fs.read" && context.intent_trusted };"#,
            ),
            ("notes.txt", "not a policy"),
        ],
    );
    let broker = ConsentBroker::new(Arc::clone(&f.grants), &dir).unwrap();
    assert_eq!(
        broker.owner_policy_ids(),
        ["net.no-agents-online", "10-net.cedar#2"]
    );

    // A policy forbidding agents online beats a grant.
    f.grants
        .add(grant(&builder(), &["net.get"], &["host:**"]), t0())
        .unwrap();
    let d = broker.decide(
        &call(builder(), "net.get", "host:example.com:443"),
        &[],
        t0(),
    );
    assert_outcome(&d, Outcome::Deny);
    assert_eq!(d.policies, ["net.no-agents-online"]);

    // Files that do not parse or do not validate are errors naming them; the old policies stay.
    let cases = [
        (
            "20-typo.cedar",
            "permit (principal, action, resource) when { context.actoin == \"x\" };",
            "did you mean `action`",
        ),
        (
            "20-syntax.cedar",
            "permit (principal, action resource);",
            "line 1",
        ),
        (
            "20-type.cedar",
            "permit (principal, action, resource) when { principal.name == \"x\" };",
            "name",
        ),
        (
            "20-reserved.cedar",
            "@id(\"core.owner\") permit (principal, action, resource);",
            "reserved",
        ),
        (
            "20-decision.cedar",
            "@decision(\"maybe\") permit (principal, action, resource);",
            "unknown @decision",
        ),
        (
            "20-dup.cedar",
            "@id(\"net.no-agents-online\") permit (principal, action, resource);",
            "already used",
        ),
    ];
    for (name, text, needle) in cases {
        let bad_dir = f.dir.path().join(format!("bad-{name}"));
        write_policies(
            &bad_dir,
            &[
                (
                    "10-net.cedar",
                    "@id(\"net.no-agents-online\") forbid (principal, action, resource) when { false };",
                ),
                (name, text),
            ],
        );
        let err = ConsentBroker::new(Arc::clone(&f.grants), &bad_dir).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PolicyError::File { .. }), "{msg}");
        assert!(
            msg.starts_with(&format!("{}: ", bad_dir.join(name).display())),
            "{msg}"
        );
        assert!(msg.contains(needle), "{name}: {msg}");
        // Reloading the good broker from a bad directory changes nothing.
        assert!(broker.reload_policies(&bad_dir).is_err());
        assert_eq!(broker.owner_policy_ids().len(), 2);
    }

    // A good reload replaces them all at once.
    let empty = f.dir.path().join("none");
    assert_eq!(broker.reload_policies(&empty).unwrap(), 0);
    let d = broker.decide(
        &call(builder(), "net.get", "host:example.com:443"),
        &[],
        t0(),
    );
    assert_outcome(&d, Outcome::Allow);
}

#[test]
fn owner_ask_policies_and_extra_attributes() {
    let f = fixture_with(&[(
        "ask.cedar",
        r#"@id("tokens.ask-get")
@decision("ask")
permit (principal is Gyrus::Token, action, resource)
when { context.action == "net.get" && resource.hasTag("method") && resource.getTag("method") == "GET" };"#,
    )]);
    let token = gyrus_policy::Principal::Token {
        id: "tok_1".into(),
        name: "phone".into(),
    };
    let req = call(token, "net.get", "host:example.com:443")
        .with_attr("method", serde_json::json!("GET"));
    let d = f.broker.decide(&req, &[], t0());
    assert_outcome(&d, Outcome::Ask);
    assert_eq!(d.policies, ["tokens.ask-get"]);
    let post = req.clone().with_attr("method", serde_json::json!("POST"));
    assert_outcome(&f.broker.decide(&post, &[], t0()), Outcome::Deny);
}

#[test]
fn protected_resources_and_consent_actions_are_the_owners() {
    let f = fixture();
    let broker = ConsentBroker::from_sources(Arc::clone(&f.grants), &[])
        .unwrap()
        .with_protected_resources(&["path:/home/u/.local/share/gyrus/user/**".into()])
        .unwrap();
    f.grants
        .add(grant(&builder(), &[">"], &["**"]), t0())
        .unwrap();
    let d = broker.decide(
        &call(
            builder(),
            "fs.write",
            "path:/home/u/.local/share/gyrus/user/policies/x.cedar",
        ),
        &[],
        t0(),
    );
    assert_outcome(&d, Outcome::Deny);
    assert_eq!(d.policies, ["core.protected"]);
    let d = broker.decide(&call(builder(), "grant.add", "agent:ag_1"), &[], t0());
    assert_outcome(&d, Outcome::Deny);
    assert_eq!(d.policies, ["core.consent-is-the-owners"]);
    // The everything-grant still works elsewhere, and the owner may touch its own state.
    assert_outcome(
        &broker.decide(&call(builder(), "fs.read", "path:/tmp/x"), &[], t0()),
        Outcome::Allow,
    );
    assert_outcome(
        &broker.decide(
            &call(
                owner(),
                "fs.write",
                "path:/home/u/.local/share/gyrus/user/policies/x.cedar",
            ),
            &[],
            t0(),
        ),
        Outcome::Allow,
    );
}

#[test]
fn the_grant_is_named_only_when_it_is_needed() {
    let f = fixture();
    f.grants
        .add(
            NewGrant {
                max_uses: Some(1),
                ..grant(&owner(), &["fs.write"], &["path:/w/**"])
            },
            t0(),
        )
        .unwrap();
    // The owner's trusted intent allows it anyway: no use of the grant is spent.
    let d = f
        .broker
        .decide_and_consume(&call(owner(), "fs.write", "path:/w/a"), &[], t0());
    assert_outcome(&d, Outcome::Allow);
    assert_eq!(d.grant_id, None);
    assert_eq!(d.policies, ["core.grant", "core.owner"]);
    assert_eq!(f.grants.list().unwrap()[0].uses, 0);
}

#[test]
fn decisions_are_safe_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ConsentBroker>();
    assert_send_sync::<GrantStore>();
    let f = fixture();
    f.grants
        .add(grant(&builder(), &["fs.read"], &["path:/w/**"]), t0())
        .unwrap();
    let req = call(builder(), "fs.read", "path:/w/a");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert!(f.broker.decide(&req, &[], t0()).is_allowed());
                }
            });
        }
    });
    assert!(Subject::new("fs.read").is_ok());
}
