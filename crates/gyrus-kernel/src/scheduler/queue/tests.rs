use std::collections::{HashMap, VecDeque};

use super::*;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const AGING: Duration = Duration::from_secs(2);

fn queue() -> Queue {
    Queue::new(Policy { aging: AGING })
}

fn pop_agent(q: &mut Queue, now: Duration) -> String {
    q.pop(now).map(|p| p.agent.to_string()).unwrap_or_default()
}

/// A small deterministic generator (xorshift64*), so the randomised tests replay exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the queue should hold, kept the obvious way: a list per flow.
#[derive(Default)]
struct Model {
    flows: HashMap<(Class, String), VecDeque<(Ticket, Duration)>>,
    last_served: HashMap<(Class, String), Duration>,
}

impl Model {
    fn len(&self) -> usize {
        self.flows.values().map(VecDeque::len).sum()
    }

    fn waiting(&self, class: Class) -> usize {
        self.flows
            .iter()
            .filter(|((c, _), _)| *c == class)
            .map(|(_, f)| f.len())
            .sum()
    }

    /// The background flow that has waited longest unserved, if it has reached the bound.
    fn aged(&self, now: Duration) -> Option<Ticket> {
        self.flows
            .iter()
            .filter(|((class, _), f)| *class == Class::Background && !f.is_empty())
            .filter_map(|(key, f)| {
                let &(ticket, enqueued_at) = f.front()?;
                let since = enqueued_at.max(self.last_served.get(key).copied().unwrap_or_default());
                Some((since, ticket))
            })
            .filter(|(since, _)| now.saturating_sub(*since) >= AGING)
            .min()
            .map(|(_, ticket)| ticket)
    }
}

#[test]
fn random_operations_keep_every_invariant() {
    let (mut aged_picks, mut removals, mut pops) = (0, 0, 0);
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut q = queue();
        let mut model = Model::default();
        let mut now = Duration::ZERO;
        for _ in 0..400 {
            match rng.below(10) {
                0..=4 => {
                    let agent = format!("agent-{}", rng.below(5));
                    let class = if rng.below(3) == 0 {
                        Class::Interactive
                    } else {
                        Class::Background
                    };
                    let cost = u32::try_from(rng.below(4)).unwrap_or(1);
                    let ticket = q.push(&agent, class, cost, now);
                    model
                        .flows
                        .entry((class, agent))
                        .or_default()
                        .push_back((ticket, now));
                }
                5..=8 => {
                    now += ms(rng.below(700));
                    let expect_aged = model.aged(now);
                    let interactive_waiting = model.waiting(Class::Interactive) > 0;
                    let Some(p) = q.pop(now) else {
                        assert_eq!(
                            model.len(),
                            0,
                            "seed {seed}: pop found nothing but calls wait"
                        );
                        continue;
                    };
                    let key = (p.class, p.agent.to_string());
                    let flow = model.flows.get_mut(&key);
                    let head = flow.and_then(VecDeque::pop_front);
                    assert_eq!(
                        head.map(|h| h.0),
                        Some(p.ticket),
                        "seed {seed}: not the head of its flow (FIFO per agent and class)"
                    );
                    assert_eq!(head.map(|h| h.1), Some(p.enqueued_at), "seed {seed}");
                    match expect_aged {
                        Some(ticket) => {
                            assert!(p.aged, "seed {seed}: an aged flow waits, it must go first");
                            assert_eq!(p.ticket, ticket, "seed {seed}: the oldest aged flow first");
                        }
                        None => {
                            assert!(!p.aged, "seed {seed}: nothing had aged");
                            if interactive_waiting {
                                assert_eq!(
                                    p.class,
                                    Class::Interactive,
                                    "seed {seed}: interactive before background that has not aged"
                                );
                            }
                        }
                    }
                    model.last_served.insert(key, now);
                    pops += 1;
                    aged_picks += usize::from(p.aged);
                }
                _ => {
                    let all: Vec<Ticket> = model
                        .flows
                        .values()
                        .flat_map(|f| f.iter().map(|w| w.0))
                        .collect();
                    if all.is_empty() {
                        assert!(!q.remove(Ticket(u64::MAX)), "seed {seed}");
                        continue;
                    }
                    let pick = all[usize::try_from(rng.below(all.len() as u64)).unwrap_or(0)];
                    assert!(q.remove(pick), "seed {seed}: a waiting call is removable");
                    assert!(!q.remove(pick), "seed {seed}: but only once");
                    removals += 1;
                    for f in model.flows.values_mut() {
                        f.retain(|w| w.0 != pick);
                    }
                }
            }
            assert_eq!(q.len(), model.len(), "seed {seed}");
            assert_eq!(q.is_empty(), model.len() == 0, "seed {seed}");
            for class in Class::ALL {
                assert_eq!(q.len_of(class), model.waiting(class), "seed {seed}");
            }
        }
        while let Some(p) = q.pop(now) {
            model
                .flows
                .entry((p.class, p.agent.to_string()))
                .or_default()
                .pop_front();
        }
        assert_eq!(model.len(), 0, "seed {seed}: the queue drains completely");
    }
    // The runs reach every path, aging included.
    assert!(
        pops > 20_000 && aged_picks > 1_000 && removals > 1_000,
        "{pops} {aged_picks} {removals}"
    );
}

#[test]
fn an_empty_queue_picks_nothing() {
    let mut q = queue();
    assert_eq!(q.pop(Duration::ZERO), None);
    let t = q.push("a", Class::Background, 1, Duration::ZERO);
    assert!(q.remove(t));
    assert_eq!(q.pop(ms(10_000)), None, "a withdrawn call is never picked");
    assert!(q.is_empty());
}

#[test]
fn one_agents_flood_does_not_delay_another_agents_single_call() {
    let mut q = queue();
    for _ in 0..1000 {
        q.push("flood", Class::Background, 1, Duration::ZERO);
    }
    for _ in 0..10 {
        assert_eq!(pop_agent(&mut q, Duration::ZERO), "flood");
    }
    q.push("single", Class::Background, 1, ms(1));
    assert_eq!(
        pop_agent(&mut q, ms(1)),
        "single",
        "the newcomer goes next, not behind 990 calls"
    );
    assert_eq!(pop_agent(&mut q, ms(1)), "flood");
}

#[test]
fn backlogged_agents_of_equal_cost_share_evenly() {
    for class in Class::ALL {
        let mut q = queue();
        let backlog = [50usize, 7, 120, 33, 1, 80];
        for (i, &n) in backlog.iter().enumerate() {
            for _ in 0..n {
                q.push(&format!("a{i}"), class, 1, Duration::ZERO);
            }
        }
        let mut served: HashMap<String, usize> = HashMap::new();
        while let Some(p) = q.pop(Duration::ZERO) {
            *served.entry(p.agent.to_string()).or_default() += 1;
            // Among the agents that still have work, service differs by at most one call.
            let counts: Vec<usize> = backlog
                .iter()
                .enumerate()
                .filter(|&(i, &n)| served.get(&format!("a{i}")).copied().unwrap_or(0) < n)
                .map(|(i, _)| served.get(&format!("a{i}")).copied().unwrap_or(0))
                .collect();
            if let (Some(lo), Some(hi)) = (counts.iter().min(), counts.iter().max()) {
                assert!(hi - lo <= 1, "{class:?}: uneven service {served:?}");
            }
        }
        let total: usize = served.values().sum();
        assert_eq!(total, backlog.iter().sum::<usize>());
    }
}

#[test]
fn fair_share_is_by_cost() {
    let mut q = queue();
    for _ in 0..300 {
        q.push("heavy", Class::Background, 3, Duration::ZERO);
        q.push("light", Class::Background, 1, Duration::ZERO);
    }
    let heavy = (0..100)
        .filter(|_| pop_agent(&mut q, Duration::ZERO) == "heavy")
        .count();
    assert!(
        (24..=26).contains(&heavy),
        "heavy got {heavy} of 100, not a quarter"
    );
}

#[test]
fn an_agent_back_from_idle_gets_no_saved_up_credit() {
    let mut q = queue();
    q.push("early", Class::Interactive, 1, Duration::ZERO);
    assert_eq!(pop_agent(&mut q, Duration::ZERO), "early");
    for _ in 0..100 {
        q.push("busy", Class::Interactive, 1, ms(1));
    }
    for _ in 0..60 {
        assert_eq!(pop_agent(&mut q, ms(1)), "busy");
    }
    for _ in 0..20 {
        q.push("early", Class::Interactive, 1, ms(2));
    }
    let order: String = (0..10)
        .map(|_| {
            if pop_agent(&mut q, ms(2)) == "early" {
                'e'
            } else {
                'b'
            }
        })
        .collect();
    assert_eq!(
        order, "ebebebebeb",
        "they alternate: idling earned no burst"
    );
}

#[test]
fn interactive_goes_before_background_that_has_not_aged() {
    let mut q = queue();
    for i in 0..5 {
        q.push(&format!("b{i}"), Class::Background, 1, Duration::ZERO);
    }
    q.push("i", Class::Interactive, 1, ms(1_999));
    let p = q.pop(ms(1_999));
    assert_eq!(
        p.as_ref().map(|p| (p.agent.as_ref(), p.class)),
        Some(("i", Class::Interactive))
    );
    assert_eq!(p.map(|p| p.aged), Some(false));
}

#[test]
fn a_starved_background_flow_is_served_once_per_aging_bound() {
    let mut q = queue();
    for _ in 0..5 {
        q.push("bg", Class::Background, 1, Duration::ZERO);
    }
    // Interactive work never runs out; a slot frees every 10 ms.
    let mut served_at = Vec::new();
    for step in 0..1_200u64 {
        let now = ms(step * 10);
        q.push("ui", Class::Interactive, 1, now);
        let p = q.pop(now);
        if let Some(p) = p.filter(|p| p.class == Class::Background) {
            assert!(p.aged);
            served_at.push(now);
        }
    }
    assert_eq!(
        served_at,
        vec![ms(2_000), ms(4_000), ms(6_000), ms(8_000), ms(10_000)],
        "at the bound, once per bound, until all five are done"
    );
}

#[test]
fn aged_flows_go_oldest_first_and_take_one_slot_each() {
    let mut q = queue();
    q.push("b-late", Class::Background, 1, ms(500));
    q.push("b-early", Class::Background, 1, ms(100));
    q.push("b-early", Class::Background, 1, ms(100));
    for _ in 0..10 {
        q.push("ui", Class::Interactive, 1, ms(2_400));
    }
    let order: Vec<String> = (0..5).map(|_| pop_agent(&mut q, ms(2_600))).collect();
    assert_eq!(
        order,
        ["b-early", "b-late", "ui", "ui", "ui"],
        "serving b-early reset its age, so its second call waits for interactive"
    );
}

#[test]
fn withdrawing_the_head_or_a_middle_call_keeps_order() {
    let mut q = queue();
    let t: Vec<Ticket> = (0..4)
        .map(|i| q.push("a", Class::Background, 1, ms(i)))
        .collect();
    assert!(q.remove(t[0]));
    assert!(q.remove(t[2]));
    assert!(!q.remove(t[2]));
    let order: Vec<Ticket> = std::iter::from_fn(|| q.pop(ms(10)).map(|p| p.ticket)).collect();
    assert_eq!(order, [t[1], t[3]]);
    assert_eq!(q.len(), 0);
}

#[test]
fn state_for_idle_agents_is_forgotten() {
    let mut q = queue();
    for i in 0..10_000u64 {
        q.push(&format!("agent-{i}"), Class::Background, 1, ms(i));
        assert!(q.pop(ms(i)).is_some());
    }
    let kept = q.tiers[Class::Background.index()].flows.len();
    assert!(kept <= 200, "{kept} flows kept");
    assert!(q.is_empty());
}

#[test]
fn the_policy_reads_from_configuration_in_milliseconds() {
    let p: Policy = serde_json::from_str(r#"{"aging_ms": 500}"#).unwrap_or_default();
    assert_eq!(p.aging, ms(500));
    let p: Policy = serde_json::from_str("{}").unwrap_or(Policy { aging: ms(1) });
    assert_eq!(p, Policy::default(), "defaults to 2 s");
    assert_eq!(
        serde_json::to_string(&Policy::default()).unwrap_or_default(),
        r#"{"aging_ms":2000}"#
    );
    assert!(serde_json::from_str::<Policy>(r#"{"aging": 5}"#).is_err());
}
