#![allow(clippy::unwrap_used, clippy::expect_used)]

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::predict::Outcome;
use crate::types::{ChatResponse, Message, Part, Role, StopReason, ToolCall, ToolDef};

/// Skills whose examples sit on their own axes: skill `i`'s example is the unit vector `e_i`,
/// so a request embedding chooses its similarities directly.
fn synthetic_index() -> SkillIndex {
    let skills = skill::builtin();
    let dimension = skills.len() + 1;
    let vectors = (0..skills.len())
        .map(|i| {
            let mut v = vec![0.0; dimension];
            v[i] = 1.0;
            vec![v]
        })
        .collect();
    SkillIndex::from_vectors(skills, vectors).unwrap()
}

fn cortex(name: &str, tier: Tier) -> AvailableCortex {
    AvailableCortex {
        name: name.into(),
        tier,
        healthy: true,
        price: Price::default(),
    }
}

fn paid(name: &str, tier: Tier) -> AvailableCortex {
    AvailableCortex {
        price: Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
        },
        ..cortex(name, tier)
    }
}

fn all_tiers() -> Vec<AvailableCortex> {
    vec![
        cortex("smol", Tier::Operational),
        cortex("qwen", Tier::Tactical),
        paid("claude", Tier::Strategic),
    ]
}

fn request(text: &str, available: Vec<AvailableCortex>) -> RouteRequest {
    RouteRequest {
        text: text.into(),
        agent: "owner".into(),
        available,
        now: 1_000_000,
        ..RouteRequest::default()
    }
}

fn router() -> Router {
    Router::new(synthetic_index())
}

// --- reactive skills -------------------------------------------------------------------------

#[test]
fn rules_match_skills_by_phrase() {
    let index = synthetic_index();
    let cases = [
        ("how much disk space is free?", "disk", "disk space"),
        ("What's my free disk space", "disk", "disk space"),
        ("how full is my drive", "disk", "how full is * drive"),
        ("df", "disk", "df"),
        ("how much RAM is used", "memory", "ram"),
        ("what's the uptime", "uptime", "uptime"),
        ("show me recent audit events", "audit", "audit events"),
        ("which grants are active?", "grants", "which grants"),
        ("gyrus status please", "status", "gyrus status"),
        ("list processes", "processes", "list processes"),
    ];
    for (text, id, rule) in cases {
        let found = index
            .matches(text, None)
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            (found.skill.id, found.by),
            (id, MatchedBy::Rule(rule)),
            "{text}"
        );
    }
}

#[test]
fn rules_match_whole_words_only() {
    let index = synthetic_index();
    // "ram" inside "program", "df" inside "pdf", "uptime" is fine only as a word.
    for text in [
        "program this for me",
        "convert the pdf",
        "explain quantum computing",
    ] {
        assert_eq!(index.matches(text, None), None, "{text}");
    }
}

#[test]
fn actions_never_match_a_read_only_skill() {
    let index = synthetic_index();
    let disk = {
        let mut v = vec![0.0; 8];
        v[0] = 1.0;
        v
    };
    for text in [
        "delete old files to free disk space",
        "free up disk space",
        "kill the process using the most RAM",
        "install a disk usage analyser",
        "write a poem about disk space",
        "restart gyrus status checks",
        "can you free disk space?",
        "Free some RAM",
        "free disk space now",
        "help me get rid of big files, the disk is full",
    ] {
        assert!(skill::asks_for_action(text), "{text}");
        assert_eq!(index.matches(text, Some(&disk)), None, "{text}");
    }
}

#[test]
fn embeddings_match_above_threshold_with_a_margin() {
    let index = synthetic_index();
    let dimension = 8;
    let at = |pairs: &[(usize, f32)]| {
        let mut v = vec![0.0f32; dimension];
        for &(i, x) in pairs {
            v[i] = x;
        }
        v
    };
    // Clearly disk (cosine 0.8 with disk, 0.36 with memory).
    let found = index
        .matches(
            "is there room on the thing",
            Some(&at(&[(0, 0.8), (1, 0.36), (7, 0.48)])),
        )
        .unwrap();
    assert_eq!(found.skill.id, "disk");
    let MatchedBy::Embedding { score, margin } = found.by else {
        panic!("{:?}", found.by);
    };
    assert!(
        (score - 0.8).abs() < 1e-4 && (margin - 0.44).abs() < 1e-4,
        "{score} {margin}"
    );
    // Close to two skills: no margin.
    assert_eq!(index.matches("hmm", Some(&at(&[(0, 0.7), (1, 0.7)]))), None);
    // Close to none.
    assert_eq!(index.matches("hmm", Some(&at(&[(7, 1.0)]))), None);
    // Wrong dimension: no embedding match.
    assert_eq!(index.matches("hmm", Some(&[1.0, 0.0])), None);
}

#[test]
fn from_vectors_rejects_mismatched_shapes() {
    let skills = skill::builtin();
    assert!(SkillIndex::from_vectors(skills.clone(), vec![]).is_err());
    let mut vectors = vec![vec![vec![1.0, 0.0]]; skills.len()];
    vectors[1] = vec![vec![1.0, 0.0, 0.0]];
    assert!(matches!(
        SkillIndex::from_vectors(skills, vectors),
        Err(RouteError::Skills(_))
    ));
}

#[test]
fn tool_names_live_in_one_place() {
    let tools: Vec<&str> = skill::builtin().iter().map(|s| s.tool).collect();
    assert_eq!(
        tools,
        [
            skill::tools::HEALTH,
            skill::tools::HEALTH,
            skill::tools::PROCESSES,
            skill::tools::HEALTH,
            skill::tools::AUDIT,
            skill::tools::GRANTS,
            skill::tools::HEALTH,
        ]
    );
}

// --- tier choice -------------------------------------------------------------------------------

#[test]
fn a_reactive_skill_needs_no_cortex() {
    let decision = router().decide(&request("how much free space is left?", vec![]));
    assert_eq!(decision.kind(), "skill");
    assert_eq!(decision.tier(), Some(Tier::Reactive));
    assert_eq!(decision.target(), Some("disk"));
    assert_eq!(
        decision.reason(),
        "reactive skill disk (rule \"free space\")"
    );
    assert_eq!(decision.skill().unwrap().skill.tool, "sys.health");
}

#[test]
fn forced_cortex_wins_when_available() {
    let mut r = request("how much disk space is free?", all_tiers());
    r.forced = Some("qwen".into());
    let decision = router().decide(&r);
    assert_eq!(decision.cortex(), Some("qwen"));
    assert_eq!(decision.reason(), "forced cortex \"qwen\" (tactical)");

    r.forced = Some("gpt-9".into());
    let decision = router().decide(&r);
    assert_eq!(decision.target(), Some("disk"));
    assert!(
        decision
            .reason()
            .starts_with("forced cortex \"gpt-9\" is not configured; reactive"),
        "{}",
        decision.reason()
    );
}

#[test]
fn cold_start_uses_the_priors() {
    let decision = router().decide(&request("explain quantum computing", all_tiers()));
    assert_eq!(decision.cortex(), Some("qwen"));
    assert_eq!(decision.predicted(), DEFAULT_PRIORS);
    assert_eq!(
        decision.reason(),
        "no embedding, base rates: predicted P(success)=0.75 ≥ 0.70 at tactical"
    );
}

#[test]
fn tiers_without_a_healthy_cortex_are_skipped() {
    let mut available = all_tiers();
    available[1].healthy = false;
    let decision = router().decide(&request("explain quantum computing", available));
    assert_eq!(decision.cortex(), Some("claude"));

    // Nothing reaches the threshold: the highest available.
    let decision = router().decide(&request(
        "explain quantum computing",
        vec![cortex("smol", Tier::Operational)],
    ));
    assert_eq!(decision.cortex(), Some("smol"));
    assert!(
        decision
            .reason()
            .contains("the highest available, operational, has 0.55"),
        "{}",
        decision.reason()
    );
}

#[test]
fn the_predictor_learns_the_cheapest_tier_that_works() {
    let mut router = router();
    let easy = vec![1.0, 0.0, 0.0];
    let hard = vec![0.0, 1.0, 0.0];
    for _ in 0..20 {
        let outcomes = |cheap: bool| {
            [
                Outcome {
                    tier: 1,
                    success: cheap,
                },
                Outcome {
                    tier: 2,
                    success: cheap,
                },
                Outcome {
                    tier: 3,
                    success: true,
                },
            ]
        };
        let predictor = router.predictor_mut();
        predictor
            .observe(Features::of("say hi", &easy), &outcomes(true))
            .unwrap();
        predictor
            .observe(Features::of("prove it", &hard), &outcomes(false))
            .unwrap();
    }
    let mut r = request("say hello", all_tiers());
    r.embedding = Some(easy);
    let decision = router.decide(&r);
    assert_eq!(
        decision.tier(),
        Some(Tier::Operational),
        "{}",
        decision.reason()
    );
    assert!(decision.reason().starts_with("predicted P(success)="));
    r.embedding = Some(hard);
    assert_eq!(router.decide(&r).tier(), Some(Tier::Strategic));
}

#[test]
fn tool_use_skips_skills_and_small_tiers() {
    let mut r = request("how much disk space is free?", all_tiers());
    r.needs_tools = true;
    let decision = router().decide(&r);
    assert_eq!(decision.cortex(), Some("qwen"));

    r.available = vec![cortex("smol", Tier::Operational)];
    let Decision::Unservable { reason, hint } = router().decide(&r) else {
        panic!()
    };
    assert!(reason.contains("needs the tactical tier"), "{reason}");
    assert!(
        hint.starts_with("add a tactical cortex with `gyrus cortex add"),
        "{hint}"
    );
}

#[test]
fn nothing_configured_is_unservable_with_a_hint() {
    let decision = router().decide(&request("explain quantum computing", vec![]));
    assert_eq!(
        decision,
        Decision::Unservable {
            reason: "no cortex is configured and no reactive skill answers this".into(),
            hint: ADD_CORTEX_HINT.into(),
        }
    );
    assert!(ADD_CORTEX_HINT.contains("`gyrus cortex add …`"));

    let mut down = cortex("smol", Tier::Operational);
    down.healthy = false;
    let Decision::Unservable { reason, hint } =
        router().decide(&request("explain quantum computing", vec![down]))
    else {
        panic!()
    };
    assert_eq!(
        reason,
        "no configured cortex is healthy: \"smol\" (operational)"
    );
    assert!(hint.starts_with("check them with `gyrus cortex test`"));
}

// --- escalation --------------------------------------------------------------------------------

#[test]
fn escalation_climbs_tiers_that_have_a_cortex_then_is_exhausted() {
    let router = router();
    let available = vec![
        cortex("smol", Tier::Operational),
        paid("claude", Tier::Strategic),
        cortex("qwen", Tier::Tactical),
        cortex("llama", Tier::Tactical),
    ];
    let mut r = request("explain quantum computing", available);
    r.forced = Some("smol".into());
    let first = router.decide(&r);
    assert_eq!(first.cortex(), Some("smol"));

    let second = router.escalate(&first, Invalid::Empty);
    assert_eq!(second.cortex(), Some("qwen"));
    assert_eq!(
        second.reason(),
        "escalated from operational (the answer is empty)"
    );
    let third = router.escalate(&second, Invalid::Truncated);
    assert_eq!(third.cortex(), Some("claude"));
    let last = router.escalate(&third, Invalid::Empty);
    assert_eq!(
        last,
        Decision::Exhausted {
            tier: Tier::Strategic,
            reason: "the answer is empty at strategic, and no tier above it has a cortex".into(),
        }
    );
    assert_eq!(router.escalate(&last, Invalid::Empty), last);
}

#[test]
fn a_failed_skill_escalates_to_the_cheapest_model() {
    let router = router();
    let first = router.decide(&request("what's the uptime", all_tiers()));
    assert_eq!(first.kind(), "skill");
    let next = router.escalate(
        &first,
        Invalid::LowConfidence {
            evidence: "x".into(),
        },
    );
    assert_eq!(next.cortex(), Some("smol"));
    assert_eq!(next.kind(), "cortex");
}

// --- budgets -----------------------------------------------------------------------------------

const MINUTE: u64 = 60_000;

#[test]
fn budgets_stop_spending_and_roll_over() {
    let mut budgets = Budgets::new();
    budgets.limit(
        "a",
        BudgetLimit {
            max_cost_usd: Some(1.0),
            max_tokens: Some(1000),
            window_ms: 10 * MINUTE,
        },
    );
    assert_eq!(budgets.check("a", 0.6, 100, 0), Ok(()));
    budgets.record("a", 0.6, 100, 0);
    let over = budgets.check("a", 0.6, 100, MINUTE).unwrap_err();
    assert_eq!(over.limit_kind, Limit::Cost);
    assert_eq!(
        over.to_string(),
        "agent \"a\" would spend $1.2000 in 10 min, over its limit of $1.0000"
    );
    assert_eq!(
        budgets.check("a", 0.0, 901, MINUTE).unwrap_err().limit_kind,
        Limit::Tokens
    );
    // Other agents have no limits.
    assert_eq!(budgets.check("b", 100.0, 1 << 40, MINUTE), Ok(()));
    // The spending at 0 leaves the window at 10 min.
    assert!(budgets.check("a", 0.6, 100, 10 * MINUTE - 1).is_err());
    assert_eq!(budgets.check("a", 0.6, 100, 10 * MINUTE), Ok(()));
    budgets.record("a", 0.5, 10, 10 * MINUTE);
    assert_eq!(budgets.spent("a", 10 * MINUTE), (0.5, 10));
}

#[test]
fn the_router_falls_back_to_a_cheaper_tier_within_budget() {
    let mut budgets = Budgets::new();
    budgets.default_limit(BudgetLimit {
        max_cost_usd: Some(0.01),
        max_tokens: None,
        window_ms: BudgetLimit::DAY_MS,
    });
    let mut router = router().with_budgets(budgets);
    let available = vec![
        cortex("smol", Tier::Operational),
        paid("claude", Tier::Strategic),
    ];
    let r = request("explain quantum computing", available.clone());
    // Cold start: operational 0.55 < 0.7, strategic 0.9 chosen; affordable at first.
    assert_eq!(router.decide(&r).cortex(), Some("claude"));
    router.budgets_mut().record("owner", 0.009, 2000, r.now);
    let decision = router.decide(&r);
    assert_eq!(decision.cortex(), Some("smol"));
    assert!(
        decision
            .reason()
            .contains("; fell back to \"smol\" (operational)"),
        "{}",
        decision.reason()
    );

    // Nothing cheaper: over budget.
    let only_paid = request(
        "explain quantum computing",
        vec![paid("claude", Tier::Strategic)],
    );
    let Decision::OverBudget { agent, reason } = router.decide(&only_paid) else {
        panic!()
    };
    assert_eq!(agent, "owner");
    assert!(
        reason.ends_with("and no cheaper tier can serve"),
        "{reason}"
    );
    // A reactive skill still answers.
    assert_eq!(
        router
            .decide(&request(
                "how much RAM is used",
                vec![paid("claude", Tier::Strategic)]
            ))
            .kind(),
        "skill"
    );
    // Escalating to a paid tier is refused too.
    let mut forced = request("explain quantum computing", available);
    forced.forced = Some("smol".into());
    let first = router.decide(&forced);
    assert_eq!(
        router.escalate(&first, Invalid::Empty).kind(),
        "over_budget"
    );
}

// --- validation --------------------------------------------------------------------------------

fn answer(parts: Vec<Part>, stop: StopReason) -> ChatResponse {
    ChatResponse {
        message: Message {
            role: Role::Assistant,
            content: parts,
        },
        usage: Usage::default(),
        stop,
        model: "m".into(),
    }
}

fn text(t: &str) -> ChatResponse {
    answer(vec![Part::Text(t.into())], StopReason::EndTurn)
}

fn call(name: &str, arguments: serde_json::Value) -> ChatResponse {
    answer(
        vec![Part::ToolCall(ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments,
        })],
        StopReason::ToolUse,
    )
}

fn tools() -> Vec<ToolDef> {
    vec![ToolDef {
        name: "fs.read".into(),
        description: "read a file".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "limit": {"type": "integer"},
                "follow": {"type": ["boolean", "null"]},
            },
            "required": ["path"],
        }),
    }]
}

#[test]
fn validation_accepts_good_answers() {
    assert_eq!(validate(&text("The answer is 42."), &[]), Ok(()));
    assert_eq!(
        validate(
            &call(
                "fs.read",
                json!({"path": "/a", "limit": 10, "follow": null})
            ),
            &tools()
        ),
        Ok(())
    );
    assert_eq!(
        validate(
            &call("fs.read", json!({"path": "/a", "limit": 3.0})),
            &tools()
        ),
        Ok(())
    );
    // A cut-off answer that got its tool call out is fine.
    let mut cut = call("fs.read", json!({"path": "/a"}));
    cut.stop = StopReason::MaxTokens;
    assert_eq!(validate(&cut, &tools()), Ok(()));
    assert_eq!(validate(&text("Confidence: 0.9. It is 42."), &[]), Ok(()));
    // Unsure, but looking it up: fine.
    let mut lookup = call("fs.read", json!({"path": "/a"}));
    lookup.message.content.insert(
        0,
        Part::Text("I don't know its size yet; let me read it.".into()),
    );
    assert_eq!(validate(&lookup, &tools()), Ok(()));
}

#[test]
fn validation_rejects_bad_answers() {
    let cases: Vec<(ChatResponse, Invalid)> = vec![
        (text("  \n"), Invalid::Empty),
        (answer(vec![], StopReason::EndTurn), Invalid::Empty),
        (
            answer(
                vec![Part::Text("The answer is".into())],
                StopReason::MaxTokens,
            ),
            Invalid::Truncated,
        ),
        (
            call("fs.write", json!({"path": "/a"})),
            Invalid::UnknownTool {
                name: "fs.write".into(),
            },
        ),
        (
            call("fs.read", json!("{path: /a")),
            Invalid::ArgumentsNotObject {
                tool: "fs.read".into(),
            },
        ),
        (
            call("fs.read", json!({"limit": 1})),
            Invalid::MissingArgument {
                tool: "fs.read".into(),
                property: "path".into(),
            },
        ),
        (
            call("fs.read", json!({"path": "/a", "limit": "ten"})),
            Invalid::WrongType {
                tool: "fs.read".into(),
                property: "limit".into(),
                expected: "integer".into(),
                got: "string",
            },
        ),
        (
            call("fs.read", json!({"path": "/a", "limit": 1.5})),
            Invalid::WrongType {
                tool: "fs.read".into(),
                property: "limit".into(),
                expected: "integer".into(),
                got: "number",
            },
        ),
        (
            call("fs.read", json!({"path": "/a", "follow": 1})),
            Invalid::WrongType {
                tool: "fs.read".into(),
                property: "follow".into(),
                expected: "boolean|null".into(),
                got: "number",
            },
        ),
        (
            text("It is probably 42. Confidence: 0.2"),
            Invalid::LowConfidence {
                evidence: "stated confidence 0.2".into(),
            },
        ),
        (
            text("Honestly, I don\u{2019}t know."),
            Invalid::LowConfidence {
                evidence: "\"i don't know\"".into(),
            },
        ),
    ];
    for (response, want) in cases {
        assert_eq!(validate(&response, &tools()), Err(want), "{response:?}");
    }
}

#[test]
fn stated_confidence_forms() {
    let cases = [
        ("confidence: 0.2", Some("stated confidence 0.2")),
        ("Confidence = 30%", Some("stated confidence 0.3")),
        ("confidence level: 40", Some("stated confidence 0.4")),
        ("My confidence is 0.45.", Some("stated confidence 0.45")),
        ("confidence: 0.85", None),
        ("Confidence: 95%", None),
        ("I have confidence in this plan", None),
        ("I'm not sure this works", Some("\"i'm not sure\"")),
        ("I am not certain", Some("\"i am not certain\"")),
        ("Confidence: low.", Some("stated confidence 0")),
    ];
    for (text, want) in cases {
        assert_eq!(validate::low_confidence(text).as_deref(), want, "{text}");
    }
}

// --- records -----------------------------------------------------------------------------------

#[test]
fn records_hash_the_text_and_round_trip() {
    let decision = router().decide(&request("how much disk space is free?", vec![]));
    let record = RouteRecord::new(7, "owner", "how much disk space is free?", &decision)
        .finished(true, 0, 0.0, 3);
    assert_eq!(record.text_hash.len(), 64);
    assert_eq!(
        text_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(record.kind, "skill");
    assert_eq!(record.tier, Some(Tier::Reactive));
    assert_eq!(record.cortex.as_deref(), Some("disk"));
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains("disk space is free"), "{json}");
    assert!(json.contains("\"tier\":\"reactive\""), "{json}");
    let back: RouteRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
}
