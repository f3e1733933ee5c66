//! The router's decision core through its public interface, with the bundled sentence encoder:
//! which requests a reactive skill answers, by rule or by meaning, and which go to a model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use gyrus_cortex::route::{
    AvailableCortex, Decision, MatchedBy, RouteRequest, Router, SkillIndex, Tier,
};
use gyrus_cortex::types::Price;

fn encoder() -> &'static pocket_encoder::Encoder {
    static ENCODER: OnceLock<pocket_encoder::Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| pocket_encoder::Encoder::new().unwrap())
}

fn index() -> &'static SkillIndex {
    static INDEX: OnceLock<SkillIndex> = OnceLock::new();
    INDEX.get_or_init(|| SkillIndex::new(encoder()).unwrap())
}

fn embed(text: &str) -> Vec<f32> {
    encoder().embed(&[text]).unwrap().remove(0)
}

/// The skill that answers `text` (embedded with the real encoder), if any.
fn skill_of(text: &str) -> Option<(&'static str, MatchedBy)> {
    index()
        .matches(text, Some(&embed(text)))
        .map(|found| (found.skill.id, found.by))
}

#[test]
fn skill_requests_match_their_skill() {
    let cases = [
        ("how much disk space is free?", "disk"),
        ("what's my free disk space", "disk"),
        ("how full is my drive", "disk"),
        ("how much RAM is used", "memory"),
        ("what's the uptime", "uptime"),
        ("show me recent audit events", "audit"),
    ];
    for (text, want) in cases {
        assert_eq!(skill_of(text).map(|s| s.0), Some(want), "{text}");
    }
}

#[test]
fn paraphrases_match_by_meaning() {
    // No rule phrase in any of these: the encoder finds the skill.
    let cases = [
        ("is my hard disk almost full?", "disk"),
        ("how much storage do I still have", "disk"),
        ("how long has this computer been running", "uptime"),
        ("show me the programs that are running", "processes"),
    ];
    for (text, want) in cases {
        let found = skill_of(text);
        assert!(
            matches!(found, Some((id, MatchedBy::Embedding { .. })) if id == want),
            "{text}: {found:?} (nearest {:?})",
            index().nearest(&embed(text))
        );
    }
}

#[test]
fn other_requests_match_no_skill() {
    for text in [
        "write a poem about disks",
        "delete old files to free disk space",
        "explain quantum computing",
        "free up some memory by killing chrome",
        "what is the capital of France?",
        "refactor this function to use iterators",
        "tell me about memory in the brain",
    ] {
        assert_eq!(
            skill_of(text),
            None,
            "{text} (nearest {:?})",
            index().nearest(&embed(text))
        );
    }
}

#[test]
fn the_router_answers_skills_and_sends_the_rest_to_a_model() {
    let router = Router::new(index().clone());
    let available = vec![
        AvailableCortex {
            name: "smol".into(),
            tier: Tier::Operational,
            healthy: true,
            price: Price::default(),
        },
        AvailableCortex {
            name: "claude".into(),
            tier: Tier::Strategic,
            healthy: true,
            price: Price {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
            },
        },
    ];
    let ask = |text: &str| {
        router.decide(&RouteRequest {
            text: text.into(),
            embedding: Some(embed(text)),
            agent: "owner".into(),
            available: available.clone(),
            now: 1,
            ..RouteRequest::default()
        })
    };
    let disk = ask("how much disk space is free?");
    assert_eq!(disk.tier(), Some(Tier::Reactive));
    assert_eq!(disk.skill().unwrap().skill.tool, "sys.health");
    assert_eq!(disk.reason(), "reactive skill disk (rule \"disk space\")");

    let hard = ask("explain quantum computing");
    assert_eq!(hard.kind(), "cortex");
    assert_eq!(hard.predicted().len(), 4);

    let none = Router::new(index().clone()).decide(&RouteRequest {
        text: "explain quantum computing".into(),
        ..RouteRequest::default()
    });
    assert!(
        matches!(&none, Decision::Unservable { hint, .. } if hint.contains("gyrus cortex add")),
        "{none:?}"
    );
}

/// Where the encoder puts a few requests, printed for calibrating the thresholds
/// (`cargo test -p gyrus-cortex --test route -- --nocapture calibration`).
#[test]
fn calibration() {
    // Paraphrases of skill requests that clear the score bar.
    let above = [
        "how much disk space is free?",
        "what's my free disk space",
        "how full is my drive",
        "is my hard disk almost full?",
        "how much storage do I still have",
        "how long has this computer been running",
        "which programs are running right now",
        "show me the programs that are running",
        "what has happened lately",
        "what permissions did I give",
    ];
    // Skill requests the encoder places below the bar: they go to a model (recall traded
    // for never answering the wrong question).
    let missed = [
        "what's hogging my cpu",
        "when was the last reboot",
        "how many gigabytes are left on the ssd",
        "is the machine low on memory",
        "is everything ok with gyrus",
    ];
    // Everything else stays below it.
    let below = [
        "write a poem about disks",
        "explain quantum computing",
        "what is the capital of France?",
        "refactor this function to use iterators",
        "tell me about memory in the brain",
        "summarise my emails",
        "what's the weather like",
        "how much space does a rust project need",
        "how long does it take to boil an egg",
    ];
    let skills = index().skills();
    let bar = index().thresholds().score;
    let score = |text: &str| {
        let (skill, score, margin) = index().nearest(&embed(text)).unwrap();
        println!("{text:45} {:10} {score:.3} {margin:.3}", skills[skill].id);
        score
    };
    for text in above {
        assert!(score(text) >= bar, "{text}");
    }
    for text in missed {
        score(text);
    }
    for text in below {
        assert!(score(text) < bar, "{text}");
    }
}
