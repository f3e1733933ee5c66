//! The session store against real SQLite files: its rules one by one, a model-based property
//! test, and several processes racing for one lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gyrus_sessions::store::SessionFilter;
use gyrus_sessions::{
    Claim, Client, Lease, LeaseMode, NewSession, NoteKind, SessionState, SessionStore, StoreError,
};
use pretty_assertions::assert_eq;
use proptest::prelude::*;
use tempfile::TempDir;

const WT: &str = "/work/repo";

fn open() -> (TempDir, SessionStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("memory/sessions.db")).unwrap();
    (dir, store)
}

fn new_session(client_session_id: &str, worktree: &str) -> NewSession {
    NewSession {
        client: Client::ClaudeCode,
        client_session_id: client_session_id.to_string(),
        cwd: worktree.to_string(),
        worktree: worktree.to_string(),
        repository: "/work/repo/.git".to_string(),
        branch: Some("main".to_string()),
        task: None,
    }
}

/// Registers a session in [`WT`] and returns its id.
fn register(store: &SessionStore, name: &str, now_ms: i64) -> String {
    store.register(&new_session(name, WT), now_ms).unwrap().0.id
}

fn claim(glob: &str, mode: LeaseMode, ttl_ms: i64) -> Claim {
    Claim {
        glob: glob.to_string(),
        mode,
        ttl_ms,
        key: None,
    }
}

fn exclusive(glob: &str) -> Claim {
    claim(glob, LeaseMode::Exclusive, 60_000)
}

fn shared(glob: &str) -> Claim {
    claim(glob, LeaseMode::Shared, 60_000)
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

/// The lease a claim won; panics with the conflict otherwise.
fn won(result: Result<Result<Lease, gyrus_sessions::Conflict>, StoreError>) -> Lease {
    match result.unwrap() {
        Ok(lease) => lease,
        Err(conflict) => panic!("expected the lease, got a conflict: {conflict:?}"),
    }
}

/// The session id holding the conflicting lease; panics if the claim was won.
fn lost_to<T: std::fmt::Debug>(
    result: Result<Result<T, gyrus_sessions::Conflict>, StoreError>,
) -> String {
    match result.unwrap() {
        Ok(value) => panic!("expected a conflict, got {value:?}"),
        Err(conflict) => {
            assert_eq!(conflict.lease.session_id, conflict.holder.id);
            conflict.holder.id
        }
    }
}

#[test]
fn register_is_idempotent_by_client_and_client_session_id() {
    let (_dir, store) = open();
    let (first, created) = store.register(&new_session("abc", WT), 1_000).unwrap();
    assert!(created);
    assert!(
        first.id.starts_with("ses_") && first.id.len() == 20,
        "{}",
        first.id
    );
    assert_eq!(first.state, SessionState::Active);
    assert_eq!((first.started_ms, first.last_seen_ms), (1_000, 1_000));

    let mut again = new_session("abc", WT);
    again.branch = Some("feature".into());
    again.task = Some("fix the parser".into());
    let (second, created) = store.register(&again, 2_000).unwrap();
    assert!(!created);
    assert_eq!(second.id, first.id);
    assert_eq!((second.started_ms, second.last_seen_ms), (1_000, 2_000));
    assert_eq!(second.branch.as_deref(), Some("feature"));
    assert_eq!(second.task.as_deref(), Some("fix the parser"));

    // A task of None keeps the one known.
    let (third, _) = store.register(&new_session("abc", WT), 3_000).unwrap();
    assert_eq!(third.task.as_deref(), Some("fix the parser"));

    // The same client session id of another client is another session.
    let mut codex = new_session("abc", WT);
    codex.client = Client::Codex;
    let (other, created) = store.register(&codex, 3_000).unwrap();
    assert!(created);
    assert_ne!(other.id, first.id);

    assert_eq!(
        store.find(Client::ClaudeCode, "abc").unwrap().unwrap().id,
        first.id
    );
    assert_eq!(
        store.find(Client::Codex, "abc").unwrap().unwrap().id,
        other.id
    );
    assert_eq!(store.find(Client::Gemini, "abc").unwrap(), None);
    assert_eq!(store.get(&first.id).unwrap().unwrap(), third);
    assert_eq!(store.get("ses_0000000000000000").unwrap(), None);

    // Registering an ended session revives it with its id.
    store.end(&first.id, 4_000).unwrap();
    let (revived, created) = store.register(&new_session("abc", WT), 5_000).unwrap();
    assert!(!created);
    assert_eq!(revived.id, first.id);
    assert_eq!(revived.state, SessionState::Active);
}

#[test]
fn touch_and_set_task_are_heartbeats() {
    let (_dir, store) = open();
    let id = register(&store, "a", 1_000);
    let s = store.touch(&id, Some(SessionState::Idle), 2_000).unwrap();
    assert_eq!((s.state, s.last_seen_ms), (SessionState::Idle, 2_000));
    let s = store.touch(&id, None, 3_000).unwrap();
    assert_eq!((s.state, s.last_seen_ms), (SessionState::Idle, 3_000));
    let s = store.set_task(&id, Some("write docs"), 4_000).unwrap();
    assert_eq!(
        (s.task.as_deref(), s.last_seen_ms),
        (Some("write docs"), 4_000)
    );
    let s = store.set_task(&id, None, 5_000).unwrap();
    assert_eq!(s.task, None);
    assert!(matches!(
        store.touch(&id, Some(SessionState::Ended), 6_000),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn exclusive_against_exclusive_conflicts_and_names_the_holder() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    let lease = won(store.claim(&a, &exclusive("src/lib.rs"), 1_000));
    assert!(
        lease.id.starts_with("lea_") && lease.id.len() == 20,
        "{}",
        lease.id
    );
    assert_eq!(lease.key, "exclusive:src/lib.rs");
    assert_eq!((lease.acquired_ms, lease.expires_ms), (1_000, 61_000));
    assert_eq!(lease.worktree, WT);

    let conflict = store
        .claim(&b, &exclusive("src/**"), 1_001)
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.path, "src/**");
    assert_eq!(conflict.lease, lease);
    assert_eq!(conflict.holder.id, a);
    // Nothing was written for b.
    assert_eq!(store.session_leases(&b, 1_001).unwrap(), vec![]);
    // A path that does not overlap is free.
    won(store.claim(&b, &exclusive("src/main.rs"), 1_001));
    won(store.claim(&b, &exclusive("docs"), 1_001));
    // A session never conflicts with itself.
    won(store.claim(&a, &shared("src/lib.rs"), 1_002));
}

#[test]
fn shared_leases_coexist_but_exclude_exclusive_ones() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    let c = register(&store, "c", 1_000);
    won(store.claim(&a, &shared("docs/**"), 1_000));
    won(store.claim(&b, &shared("docs/guide.md"), 1_000));
    // Exclusive against shared, either way round.
    assert_eq!(
        lost_to(store.claim(&c, &exclusive("docs/guide.md"), 1_000)),
        a
    );
    won(store.claim(&c, &exclusive("src/*.rs"), 1_000));
    assert_eq!(lost_to(store.claim(&a, &shared("src/lib.rs"), 1_000)), c);
    // Patterns that cannot meet do not conflict.
    won(store.claim(&a, &shared("src/*.md"), 1_000));
    assert_eq!(store.leases(Some(WT), 1_000).unwrap().len(), 4);
}

#[test]
fn claiming_the_same_key_renews_the_lease() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let first = won(store.claim(&a, &claim("src", LeaseMode::Exclusive, 100), 1_000));
    let renewed = won(store.claim(&a, &claim("src", LeaseMode::Exclusive, 500), 1_050));
    assert_eq!(renewed.id, first.id);
    assert_eq!((renewed.acquired_ms, renewed.expires_ms), (1_000, 1_550));

    // An explicit key renews whatever glob and mode it now names.
    let mut keyed = claim("docs", LeaseMode::Shared, 100);
    keyed.key = Some("my-docs".into());
    let k1 = won(store.claim(&a, &keyed, 1_100));
    keyed.glob = "docs/**".into();
    keyed.mode = LeaseMode::Exclusive;
    let k2 = won(store.claim(&a, &keyed, 1_200));
    assert_eq!(k2.id, k1.id);
    assert_eq!(
        (k2.glob.as_str(), k2.mode, k2.key.as_str()),
        ("docs/**", LeaseMode::Exclusive, "my-docs")
    );
    assert_eq!(store.session_leases(&a, 1_200).unwrap(), vec![k2, renewed]);
}

#[test]
fn a_lease_lapses_at_its_ttl() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    let lease = won(store.claim(&a, &claim("src/lib.rs", LeaseMode::Exclusive, 100), 1_000));
    assert_eq!(lease.expires_ms, 1_100);
    assert_eq!(lost_to(store.claim(&b, &exclusive("src/lib.rs"), 1_099)), a);
    assert_eq!(store.leases(None, 1_099).unwrap(), vec![lease]);
    // At expires_ms it is gone.
    assert_eq!(store.leases(None, 1_100).unwrap(), vec![]);
    assert_eq!(store.session_leases(&a, 1_100).unwrap(), vec![]);
    won(store.claim(&b, &exclusive("src/lib.rs"), 1_100));
}

#[test]
fn ending_a_session_releases_its_leases() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    won(store.claim(&a, &exclusive("src"), 1_000));
    won(store.claim(&a, &shared("docs"), 1_000));
    assert_eq!(lost_to(store.claim(&b, &exclusive("src/lib.rs"), 1_000)), a);
    let ended = store.end(&a, 2_000).unwrap();
    assert_eq!(
        (ended.state, ended.last_seen_ms),
        (SessionState::Ended, 2_000)
    );
    assert_eq!(store.session_leases(&a, 2_000).unwrap(), vec![]);
    won(store.claim(&b, &exclusive("src/lib.rs"), 2_000));
    // Ending again is fine and changes nothing.
    assert_eq!(store.end(&a, 3_000).unwrap(), ended);
    // History is kept.
    assert_eq!(store.list(&SessionFilter::default()).unwrap().len(), 2);
    let live = store.list(&SessionFilter {
        live_only: true,
        ..SessionFilter::default()
    });
    assert_eq!(live.unwrap().len(), 1);
}

#[test]
fn expire_ends_silent_sessions_and_frees_their_leases() {
    let (_dir, store) = open();
    let quiet = register(&store, "quiet", 1_000);
    let busy = register(&store, "busy", 1_000);
    won(store.claim(&quiet, &exclusive("src"), 1_000));
    won(store.claim(&busy, &claim("docs", LeaseMode::Exclusive, 500), 1_000));
    store.touch(&busy, None, 5_000).unwrap();
    // Silent for exactly the limit is not yet expired.
    assert_eq!(store.expire(6_000, 5_000).unwrap(), vec![]);
    let expired = store.expire(6_001, 5_000).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id.as_str(), expired[0].state),
        (quiet.as_str(), SessionState::Expired)
    );
    // The quiet session's lease is gone with it; busy's lapsed lease has been swept.
    won(store.claim(&busy, &exclusive("src/lib.rs"), 6_001));
    assert_eq!(store.leases(None, 6_001).unwrap().len(), 1);
    assert!(matches!(
        store.touch(&quiet, None, 6_002),
        Err(StoreError::NotLive {
            state: SessionState::Expired,
            ..
        })
    ));
    // An expired session can be ended, and re-registering revives it.
    assert_eq!(store.end(&quiet, 6_003).unwrap().state, SessionState::Ended);
    let (revived, created) = store.register(&new_session("quiet", WT), 7_000).unwrap();
    assert_eq!(
        (revived.id, created, revived.state),
        (quiet, false, SessionState::Active)
    );
}

#[test]
fn different_worktrees_never_conflict() {
    let (_dir, store) = open();
    let a = store
        .register(&new_session("a", "/work/repo"), 1_000)
        .unwrap()
        .0
        .id;
    let b = store
        .register(&new_session("b", "/work/repo-feature"), 1_000)
        .unwrap()
        .0
        .id;
    won(store.claim(&a, &exclusive("**"), 1_000));
    won(store.claim(&b, &exclusive("**"), 1_000));
    let took = store
        .claim_paths(&b, &paths(&["src/lib.rs"]), 1_000, 1_000)
        .unwrap();
    assert!(took.is_ok());
    assert_eq!(store.leases(Some("/work/repo"), 1_000).unwrap().len(), 1);
    assert_eq!(
        store
            .leases(Some("/work/repo-feature"), 1_000)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.leases(None, 1_000).unwrap().len(), 3);
    // Moving a session to another worktree drops its leases in the old one.
    store
        .register(&new_session("a", "/work/repo-feature"), 2_000)
        .unwrap();
    assert_eq!(store.leases(Some("/work/repo"), 2_000).unwrap(), vec![]);
}

#[test]
fn claim_paths_is_all_or_nothing() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    won(store.claim(&b, &shared("docs/**"), 1_000));
    let conflict = store
        .claim_paths(&a, &paths(&["src/lib.rs", "docs/guide.md"]), 1_000, 1_000)
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.path, "docs/guide.md");
    assert_eq!(conflict.holder.id, b);
    // No lease was left on the first path.
    assert_eq!(store.session_leases(&a, 1_000).unwrap(), vec![]);

    let leases = store
        .claim_paths(
            &a,
            &paths(&["src/lib.rs", "src/main.rs", "src/lib.rs"]),
            1_000,
            1_000,
        )
        .unwrap()
        .unwrap();
    let keys: Vec<_> = leases
        .iter()
        .map(|l| (l.key.as_str(), l.glob.as_str(), l.mode))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("edit:src/lib.rs", "src/lib.rs", LeaseMode::Exclusive),
            ("edit:src/main.rs", "src/main.rs", LeaseMode::Exclusive),
        ]
    );
    // Taking them again renews them.
    let again = store
        .claim_paths(&a, &paths(&["src/lib.rs"]), 5_000, 2_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        (again[0].id.as_str(), again[0].expires_ms),
        (leases[0].id.as_str(), 7_000)
    );
    // Now b is blocked on them, by either kind of claim.
    assert_eq!(
        lost_to(store.claim_paths(&b, &paths(&["src/lib.rs"]), 1_000, 2_000)),
        a
    );
    assert_eq!(lost_to(store.claim(&b, &shared("src/*.rs"), 2_000)), a);
}

#[test]
fn check_paths_reports_without_taking() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    won(store.claim(&b, &shared("docs"), 1_000));
    won(store.claim(&b, &exclusive("src/*.rs"), 1_000));
    let conflicts = store
        .check_paths(&a, &paths(&["docs/a.md", "README.md", "src/lib.rs"]), 1_000)
        .unwrap();
    let found: Vec<_> = conflicts
        .iter()
        .map(|c| (c.path.as_str(), c.lease.glob.as_str(), c.holder.id.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("docs/a.md", "docs", b.as_str()),
            ("src/lib.rs", "src/*.rs", b.as_str())
        ]
    );
    assert_eq!(store.session_leases(&a, 1_000).unwrap(), vec![]);
    assert_eq!(
        store
            .check_paths(&b, &paths(&["docs/a.md"]), 1_000)
            .unwrap(),
        vec![]
    );
}

#[test]
fn paths_with_glob_metacharacters_are_taken_literally() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    let leases = store
        .claim_paths(&a, &paths(&["app/[id]/page.tsx", "src/*.rs"]), 1_000, 1_000)
        .unwrap()
        .unwrap();
    assert_eq!(leases[0].key, "edit:app/[id]/page.tsx");
    // Neither lease spreads to what the characters would match as a pattern.
    store
        .claim_paths(&b, &paths(&["app/i/page.tsx", "src/lib.rs"]), 1_000, 1_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        lost_to(store.claim_paths(&b, &paths(&["src/*.rs"]), 1_000, 1_000)),
        a
    );
    assert_eq!(
        lost_to(store.claim_paths(&b, &paths(&["app/[id]/page.tsx"]), 1_000, 1_000)),
        a
    );
}

#[test]
fn release_by_id_glob_key_or_all() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let src = won(store.claim(&a, &exclusive("src"), 1_000));
    won(store.claim(&a, &shared("docs/"), 1_000));
    won(store.claim(&a, &exclusive("tests"), 1_000));
    store
        .claim_paths(&a, &paths(&["README.md", "Cargo.toml"]), 1_000, 1_000)
        .unwrap()
        .unwrap();
    assert_eq!(store.release(&a, &src.id).unwrap(), 1);
    assert_eq!(store.release(&a, "docs").unwrap(), 1);
    assert_eq!(store.release(&a, "edit:README.md").unwrap(), 1);
    assert_eq!(store.release(&a, "nothing").unwrap(), 0);
    assert_eq!(store.release(&a, "*").unwrap(), 2);
    assert_eq!(store.session_leases(&a, 1_000).unwrap(), vec![]);
}

#[test]
fn messages_are_sent_delivered_once_and_acknowledged() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let b = register(&store, "b", 1_000);
    let m1 = store
        .send(Some(&a), &b, "I'm on the parser", 1_000)
        .unwrap();
    let m2 = store.send(None, &b, "from the owner", 1_001).unwrap();
    assert!(m2.id > m1.id);
    assert_eq!(
        (m1.from_session.as_deref(), m1.to_session.as_str()),
        (Some(a.as_str()), b.as_str())
    );

    let delivered = store.take_undelivered(&b, 2_000).unwrap();
    assert_eq!(
        delivered.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![m1.id, m2.id]
    );
    assert!(delivered.iter().all(|m| m.delivered_ms == Some(2_000)));
    assert_eq!(store.take_undelivered(&b, 2_001).unwrap(), vec![]);
    assert_eq!(store.take_undelivered(&a, 2_001).unwrap(), vec![]);

    let acked = store.ack_at(&b, m1.id, 3_000).unwrap();
    assert_eq!(
        (acked.delivered_ms, acked.acked_ms),
        (Some(2_000), Some(3_000))
    );
    // Idempotent: the first acknowledgement's time stays.
    assert_eq!(store.ack_at(&b, m1.id, 4_000).unwrap(), acked);
    assert!(store.ack(&b, m2.id).unwrap().acked_ms.is_some());
    // Only the recipient can acknowledge.
    assert!(matches!(
        store.ack_at(&a, m1.id, 4_000),
        Err(StoreError::NoMessage { .. })
    ));
    assert!(matches!(
        store.ack_at(&b, 9_999, 4_000),
        Err(StoreError::NoMessage { .. })
    ));

    let m3 = store.send(Some(&a), &b, "one more", 5_000).unwrap();
    let unacked: Vec<_> = store
        .inbox(&b, false)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(unacked, vec![m3.id]);
    let all: Vec<_> = store
        .inbox(&b, true)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(all, vec![m1.id, m2.id, m3.id]);
    // An acknowledged message is not delivered later.
    let m4 = store.send(None, &b, "seen already", 5_001).unwrap();
    store.ack_at(&b, m4.id, 5_002).unwrap();
    assert_eq!(
        store
            .take_undelivered(&b, 6_000)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![m3.id]
    );

    // Messages go to live sessions only.
    store.end(&b, 7_000).unwrap();
    assert!(matches!(
        store.send(None, &b, "hello?", 7_001),
        Err(StoreError::NotLive { .. })
    ));
    assert!(matches!(
        store.send(None, "ses_nobody", "hi", 7_001),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.send(Some("ses_nobody"), &a, "hi", 7_001),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn the_board_keeps_order_and_limit() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    for i in 0..5 {
        let kind = if i == 2 {
            NoteKind::Decision
        } else {
            NoteKind::Note
        };
        store
            .post("/repo-one", Some(&a), kind, &format!("note {i}"), 1_000 + i)
            .unwrap();
    }
    store
        .post("/repo-two", None, NoteKind::Note, "elsewhere", 2_000)
        .unwrap();
    let texts = |limit| -> Vec<String> {
        store
            .board("/repo-one", limit)
            .unwrap()
            .into_iter()
            .map(|n| n.text)
            .collect()
    };
    assert_eq!(texts(3), vec!["note 2", "note 3", "note 4"]);
    assert_eq!(texts(10).len(), 5);
    assert_eq!(texts(0), Vec::<String>::new());
    let board = store.board("/repo-one", 5).unwrap();
    assert_eq!(board[2].kind, NoteKind::Decision);
    assert_eq!(board[0].session_id.as_deref(), Some(a.as_str()));
    assert_eq!(store.board("/repo-two", 5).unwrap()[0].session_id, None);
    assert!(matches!(
        store.post("/repo-one", Some("ses_nobody"), NoteKind::Note, "x", 3_000),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn bad_input_and_dead_sessions_are_errors() {
    let (_dir, store) = open();
    let a = register(&store, "a", 1_000);
    let ended = register(&store, "ended", 1_000);
    store.end(&ended, 1_000).unwrap();

    assert!(matches!(
        store.claim("ses_nobody", &exclusive("src"), 1_000),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.claim(&ended, &exclusive("src"), 1_000),
        Err(StoreError::NotLive {
            state: SessionState::Ended,
            ..
        })
    ));
    assert!(matches!(
        store.touch("ses_nobody", None, 1_000),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.touch(&ended, None, 1_000),
        Err(StoreError::NotLive { .. })
    ));
    assert!(matches!(
        store.set_task(&ended, Some("x"), 1_000),
        Err(StoreError::NotLive { .. })
    ));
    assert!(matches!(
        store.end("ses_nobody", 1_000),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.claim_paths(&ended, &paths(&["a"]), 1_000, 1_000),
        Err(StoreError::NotLive { .. })
    ));
    assert!(matches!(
        store.release("ses_nobody", "*"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.inbox("ses_nobody", true),
        Err(StoreError::NotFound(_))
    ));
    let not_live = store.touch(&ended, None, 1_000).unwrap_err().to_string();
    assert!(
        not_live.contains("is ended; it must register again"),
        "{not_live}"
    );

    for glob in ["", "/etc", "a/../b", "a//b", "./a", "src/[a", "{a/b,c}"] {
        let err = store.claim(&a, &exclusive(glob), 1_000).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidGlob { .. }),
            "{glob:?}: {err}"
        );
    }
    for path in ["", "/abs/path", "../up"] {
        let err = store
            .claim_paths(&a, &paths(&[path]), 1_000, 1_000)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidGlob { .. }),
            "{path:?}: {err}"
        );
    }
    assert!(matches!(
        store.claim(&a, &claim("src", LeaseMode::Exclusive, 0), 1_000),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.claim_paths(&a, &paths(&["src"]), 0, 1_000),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.post("/r", None, NoteKind::Note, "", 1_000),
        Err(StoreError::Invalid(_))
    ));
    let big = "x".repeat(8193);
    assert!(matches!(
        store.post("/r", None, NoteKind::Note, &big, 1_000),
        Err(StoreError::Invalid(_))
    ));
    store
        .post("/r", None, NoteKind::Note, &big[..8192], 1_000)
        .unwrap();
    assert!(matches!(
        store.send(None, &a, "", 1_000),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.send(None, &a, &big, 1_000),
        Err(StoreError::Invalid(_))
    ));
    // Nothing bad was written.
    assert_eq!(store.session_leases(&a, 1_000).unwrap(), vec![]);
}

#[test]
fn list_filters_by_liveness_repository_and_worktree() {
    let (_dir, store) = open();
    let a = store
        .register(&new_session("a", "/w/one"), 3_000)
        .unwrap()
        .0
        .id;
    let b = store
        .register(&new_session("b", "/w/two"), 1_000)
        .unwrap()
        .0
        .id;
    let mut other = new_session("c", "/w/three");
    other.repository = "/other/.git".into();
    let c = store.register(&other, 2_000).unwrap().0.id;
    store.end(&b, 4_000).unwrap();
    let ids = |filter: SessionFilter| -> Vec<String> {
        store
            .list(&filter)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(
        ids(SessionFilter::default()),
        vec![b.clone(), c.clone(), a.clone()]
    );
    assert_eq!(
        ids(SessionFilter {
            live_only: true,
            ..Default::default()
        }),
        vec![c.clone(), a.clone()]
    );
    let repo = Some("/work/repo/.git".to_string());
    assert_eq!(
        ids(SessionFilter {
            repository: repo,
            ..Default::default()
        }),
        vec![b, a.clone()]
    );
    let wt = Some("/w/one".to_string());
    assert_eq!(
        ids(SessionFilter {
            worktree: wt,
            ..Default::default()
        }),
        vec![a]
    );
}

#[test]
fn writes_are_seen_by_another_handle_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let one = SessionStore::open(&path).unwrap();
    let two = SessionStore::open(&path).unwrap();
    let a = register(&one, "a", 1_000);
    let b = register(&two, "b", 1_000);
    won(one.claim(&a, &exclusive("src"), 1_000));
    assert_eq!(lost_to(two.claim(&b, &exclusive("src/lib.rs"), 1_000)), a);
}

// ---------------------------------------------------------------------------------------------
// The model: the same rules over a plain list of leases, compared operation by operation.

/// Lease globs the property test claims: literal paths and directories.
const TARGETS: &[&str] = &["a", "a/x.rs", "a/y.rs", "b/z.md", "b", "a/**", "b/**"];
/// Paths it edits.
const PATHS: &[&str] = &["a/x.rs", "a/y.rs", "b/z.md"];
const MODEL_SESSIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Register(usize),
    Touch(usize),
    Claim {
        s: usize,
        target: usize,
        exclusive: bool,
        ttl: i64,
    },
    ClaimPaths {
        s: usize,
        paths: Vec<usize>,
        ttl: i64,
    },
    Release {
        s: usize,
        target: Option<usize>,
    },
    End(usize),
    Advance(i64),
    Expire(i64),
}

/// What an operation came to, in terms both sides can give.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Registered { created: bool },
    Done,
    Won,
    ConflictWith(usize),
    Released(usize),
    Expired(Vec<usize>),
    NotFound,
    NotLive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelState {
    Live,
    Ended,
    Expired,
}

#[derive(Debug, Clone)]
struct ModelLease {
    s: usize,
    glob: String,
    exclusive: bool,
    key: String,
    expires: i64,
}

#[derive(Debug)]
struct Model {
    now: i64,
    /// Per session: its state and last-seen time, once registered.
    sessions: [Option<(ModelState, i64)>; MODEL_SESSIONS],
    /// In the order first taken (a renewal keeps its place).
    leases: Vec<ModelLease>,
}

/// A test glob as its directory components and whether it ends in `/**`.
fn shape(glob: &str) -> (Vec<&str>, bool) {
    match glob.strip_suffix("/**") {
        Some(dir) => (dir.split('/').collect(), true),
        None => (glob.split('/').collect(), false),
    }
}

/// Literal `p` covers `p` and everything below; `d/**` everything below `d`. Both "may
/// overlap" exactly when one's directory components are a prefix of the other's.
fn model_overlap(a: &str, b: &str) -> bool {
    let (a, _) = shape(a);
    let (b, _) = shape(b);
    a.iter().zip(&b).all(|(x, y)| x == y)
}

fn model_covers(glob: &str, path: &str) -> bool {
    let (dir, below_only) = shape(glob);
    let parts: Vec<&str> = path.split('/').collect();
    let prefix = parts.len() >= dir.len() && parts[..dir.len()] == dir[..];
    prefix && (!below_only || parts.len() > dir.len())
}

impl Model {
    fn live(&self, s: usize) -> Result<(), Outcome> {
        match self.sessions[s] {
            None => Err(Outcome::NotFound),
            Some((ModelState::Live, _)) => Ok(()),
            Some(_) => Err(Outcome::NotLive),
        }
    }

    fn blocking(&self, s: usize, l: &ModelLease) -> bool {
        l.s != s
            && l.expires > self.now
            && matches!(self.sessions[l.s], Some((ModelState::Live, _)))
    }

    fn upsert(&mut self, s: usize, glob: &str, exclusive: bool, key: String, expires: i64) {
        match self.leases.iter_mut().find(|l| l.s == s && l.key == key) {
            Some(l) => {
                l.glob = glob.to_string();
                l.exclusive = exclusive;
                l.expires = expires;
            }
            None => self.leases.push(ModelLease {
                s,
                glob: glob.to_string(),
                exclusive,
                key,
                expires,
            }),
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Register(s) => {
                let created = self.sessions[s].is_none();
                self.sessions[s] = Some((ModelState::Live, self.now));
                Outcome::Registered { created }
            }
            Op::Touch(s) => {
                if let Err(o) = self.live(s) {
                    return o;
                }
                self.sessions[s] = Some((ModelState::Live, self.now));
                Outcome::Done
            }
            Op::Claim {
                s,
                target,
                exclusive,
                ttl,
            } => {
                if let Err(o) = self.live(s) {
                    return o;
                }
                let glob = TARGETS[target];
                if let Some(l) = self.leases.iter().find(|l| {
                    self.blocking(s, l)
                        && (exclusive || l.exclusive)
                        && model_overlap(&l.glob, glob)
                }) {
                    return Outcome::ConflictWith(l.s);
                }
                let mode = if exclusive { "exclusive" } else { "shared" };
                self.upsert(s, glob, exclusive, format!("{mode}:{glob}"), self.now + ttl);
                Outcome::Won
            }
            Op::ClaimPaths { s, ref paths, ttl } => {
                if let Err(o) = self.live(s) {
                    return o;
                }
                let mut wanted: Vec<&str> = Vec::new();
                for &p in paths {
                    if !wanted.contains(&PATHS[p]) {
                        wanted.push(PATHS[p]);
                    }
                }
                for path in &wanted {
                    if let Some(l) = self
                        .leases
                        .iter()
                        .find(|l| self.blocking(s, l) && model_covers(&l.glob, path))
                    {
                        return Outcome::ConflictWith(l.s);
                    }
                }
                for path in wanted {
                    self.upsert(s, path, true, format!("edit:{path}"), self.now + ttl);
                }
                Outcome::Won
            }
            Op::Release { s, target } => {
                if self.sessions[s].is_none() {
                    return Outcome::NotFound;
                }
                let before = self.leases.len();
                self.leases
                    .retain(|l| !(l.s == s && target.is_none_or(|t| l.glob == TARGETS[t])));
                Outcome::Released(before - self.leases.len())
            }
            Op::End(s) => {
                let Some((_, seen)) = self.sessions[s] else {
                    return Outcome::NotFound;
                };
                self.sessions[s] = Some((ModelState::Ended, seen));
                self.leases.retain(|l| l.s != s);
                Outcome::Done
            }
            Op::Advance(dt) => {
                self.now += dt;
                Outcome::Done
            }
            Op::Expire(silent) => {
                let cutoff = self.now - silent;
                let mut expired = Vec::new();
                for s in 0..MODEL_SESSIONS {
                    if let Some((ModelState::Live, seen)) = self.sessions[s]
                        && seen < cutoff
                    {
                        self.sessions[s] = Some((ModelState::Expired, seen));
                        expired.push(s);
                    }
                }
                let now = self.now;
                self.leases
                    .retain(|l| !expired.contains(&l.s) && l.expires > now);
                Outcome::Expired(expired)
            }
        }
    }

    /// (session, glob, exclusive, expires) of the leases that count now, sorted.
    fn lease_set(&self) -> Vec<(usize, String, bool, i64)> {
        let mut out: Vec<_> = self
            .leases
            .iter()
            .filter(|l| {
                l.expires > self.now && matches!(self.sessions[l.s], Some((ModelState::Live, _)))
            })
            .map(|l| (l.s, l.glob.clone(), l.exclusive, l.expires))
            .collect();
        out.sort();
        out
    }

    fn states(&self) -> Vec<(usize, &'static str)> {
        (0..MODEL_SESSIONS)
            .filter_map(|s| {
                self.sessions[s].map(|(state, _)| {
                    let name = match state {
                        ModelState::Live => "active",
                        ModelState::Ended => "ended",
                        ModelState::Expired => "expired",
                    };
                    (s, name)
                })
            })
            .collect()
    }
}

/// The real store, driven by the same operations.
struct Real {
    store: SessionStore,
    now: i64,
    ids: [Option<String>; MODEL_SESSIONS],
}

impl Real {
    fn id(&self, s: usize) -> String {
        self.ids[s]
            .clone()
            .unwrap_or_else(|| format!("ses_unregistered{s}"))
    }

    fn index(&self, id: &str) -> usize {
        self.ids
            .iter()
            .position(|i| i.as_deref() == Some(id))
            .unwrap()
    }

    fn outcome<T>(
        &self,
        result: Result<Result<T, gyrus_sessions::Conflict>, StoreError>,
    ) -> Outcome {
        match result {
            Ok(Ok(_)) => Outcome::Won,
            Ok(Err(c)) => Outcome::ConflictWith(self.index(&c.holder.id)),
            Err(e) => error_outcome(e),
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let now = self.now;
        match *op {
            Op::Register(s) => {
                let (session, created) = self
                    .store
                    .register(&new_session(&format!("model-{s}"), WT), now)
                    .unwrap();
                self.ids[s] = Some(session.id);
                Outcome::Registered { created }
            }
            Op::Touch(s) => done(self.store.touch(&self.id(s), None, now)),
            Op::Claim {
                s,
                target,
                exclusive,
                ttl,
            } => {
                let mode = if exclusive {
                    LeaseMode::Exclusive
                } else {
                    LeaseMode::Shared
                };
                let result = self
                    .store
                    .claim(&self.id(s), &claim(TARGETS[target], mode, ttl), now);
                self.outcome(result)
            }
            Op::ClaimPaths { s, ref paths, ttl } => {
                let list: Vec<String> = paths.iter().map(|&p| PATHS[p].to_string()).collect();
                let result = self.store.claim_paths(&self.id(s), &list, ttl, now);
                self.outcome(result)
            }
            Op::Release { s, target } => {
                match self
                    .store
                    .release(&self.id(s), target.map_or("*", |t| TARGETS[t]))
                {
                    Ok(n) => Outcome::Released(n),
                    Err(e) => error_outcome(e),
                }
            }
            Op::End(s) => done(self.store.end(&self.id(s), now)),
            Op::Advance(dt) => {
                self.now += dt;
                Outcome::Done
            }
            Op::Expire(silent) => {
                let expired = self.store.expire(now, silent).unwrap();
                let mut indices: Vec<usize> = expired.iter().map(|s| self.index(&s.id)).collect();
                indices.sort();
                Outcome::Expired(indices)
            }
        }
    }

    fn lease_set(&self) -> Vec<(usize, String, bool, i64)> {
        let mut out: Vec<_> = self
            .store
            .leases(None, self.now)
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    self.index(&l.session_id),
                    l.glob,
                    l.mode == LeaseMode::Exclusive,
                    l.expires_ms,
                )
            })
            .collect();
        out.sort();
        out
    }

    fn states(&self) -> Vec<(usize, &'static str)> {
        let mut out: Vec<_> = self
            .store
            .list(&SessionFilter::default())
            .unwrap()
            .into_iter()
            .map(|s| (self.index(&s.id), s.state.as_str()))
            .collect();
        out.sort();
        out
    }
}

fn done<T>(result: Result<T, StoreError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Done,
        Err(e) => error_outcome(e),
    }
}

fn error_outcome(e: StoreError) -> Outcome {
    match e {
        StoreError::NotFound(_) => Outcome::NotFound,
        StoreError::NotLive { .. } => Outcome::NotLive,
        other => panic!("unexpected store error: {other}"),
    }
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..MODEL_SESSIONS;
    prop_oneof![
        2 => s.clone().prop_map(Op::Register),
        1 => s.clone().prop_map(Op::Touch),
        6 => (s.clone(), 0..TARGETS.len(), any::<bool>(), 1i64..20)
            .prop_map(|(s, target, exclusive, ttl)| Op::Claim { s, target, exclusive, ttl }),
        3 => (s.clone(), prop::collection::vec(0..PATHS.len(), 1..=3), 1i64..20)
            .prop_map(|(s, paths, ttl)| Op::ClaimPaths { s, paths, ttl }),
        2 => (s.clone(), prop::option::of(0..TARGETS.len()))
            .prop_map(|(s, target)| Op::Release { s, target }),
        1 => s.prop_map(Op::End),
        3 => (0i64..12).prop_map(Op::Advance),
        1 => (0i64..30).prop_map(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_agrees_with_a_model(ops in prop::collection::vec(op(), 1..40)) {
        let (_dir, store) = open();
        let mut real = Real { store, now: 1_000, ids: [None, None, None] };
        let mut model = Model { now: 1_000, sessions: [None; MODEL_SESSIONS], leases: Vec::new() };
        for (step, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = real.apply(op);
            prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
            prop_assert_eq!(real.lease_set(), model.lease_set(), "leases after step {}: {:?}", step, op);
            prop_assert_eq!(real.states(), model.states(), "states after step {}: {:?}", step, op);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Several processes racing for one exclusive lease.

/// Set on the child processes: `<database path>,<child index>,<round>`.
const RACE_CHILD: &str = "GYRUS_STORE_RACE_CHILD";
const RACE_TEST: &str = "processes_race_for_one_exclusive_lease";
const RACERS: usize = 8;
const RACE_WT: &str = "/race/worktree";

/// This test re-runs its own binary as [`RACERS`] children, which all wait for a `go` file
/// and then claim the same exclusive glob: exactly one must win, the others must name it.
#[test]
fn processes_race_for_one_exclusive_lease() {
    if let Ok(spec) = std::env::var(RACE_CHILD) {
        race_child(&spec);
        return;
    }
    for round in 0..3 {
        race_round(round);
    }
}

fn race_glob(round: usize) -> String {
    format!("race/{round}/**")
}

fn race_child(spec: &str) {
    let (rest, round) = spec.rsplit_once(',').unwrap();
    let (db, index) = rest.rsplit_once(',').unwrap();
    let round: usize = round.parse().unwrap();
    let db = Path::new(db);
    let store = SessionStore::open(db).unwrap();
    let (me, _) = store
        .register(&new_session(&format!("racer-{index}"), RACE_WT), 1_000)
        .unwrap();
    let go = db.with_file_name("go");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no go signal");
        std::thread::sleep(Duration::from_micros(200));
    }
    match store
        .claim(&me.id, &exclusive(&race_glob(round)), 2_000)
        .unwrap()
    {
        Ok(lease) => println!("\nWON {}", lease.id),
        Err(conflict) => println!("\nLOST {}", conflict.holder.id),
    }
}

fn race_round(round: usize) {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet: the children and the parent create it together.
    let db = dir.path().join("memory").join("sessions.db");
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<Child> = (0..RACERS)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", RACE_TEST, "--nocapture", "--test-threads", "1"])
                .env(RACE_CHILD, format!("{},{i},{round}", db.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let store = SessionStore::open(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let live = SessionFilter {
        live_only: true,
        ..SessionFilter::default()
    };
    while store.list(&live).unwrap().len() < RACERS {
        for child in &mut children {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("a racer exited before the start: {status}");
            }
        }
        assert!(Instant::now() < deadline, "the racers did not all register");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(db.with_file_name("go"), b"go").unwrap();

    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "racer failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let words: Vec<&str> = stdout.split_whitespace().collect();
        let said = words.windows(2).find(|w| w[0] == "WON" || w[0] == "LOST");
        match said {
            Some(["WON", lease]) => winners.push(lease.to_string()),
            Some(["LOST", holder]) => holders.push(holder.to_string()),
            _ => panic!("a racer said neither WON nor LOST:\n{stdout}"),
        }
    }
    assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
    assert_eq!(holders.len(), RACERS - 1);
    let leases = store.leases(Some(RACE_WT), 2_000).unwrap();
    assert_eq!(leases.len(), 1, "round {round}: {leases:?}");
    assert_eq!(leases[0].id, winners[0]);
    assert_eq!(leases[0].glob, race_glob(round));
    assert!(
        holders.iter().all(|h| *h == leases[0].session_id),
        "{holders:?} vs {leases:?}"
    );
}
