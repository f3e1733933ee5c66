//! The memory store's semantics on a real SQLite file with the bundled encoder: versions and
//! history, as-of and time-range queries, TTL expiry, namespaces, forgetting for real, and
//! durability across `kill -9` of a real writer process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cloned_ref_to_slice_refs
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use gyrus_memory::embed::{Embedder, PocketEmbedder};
use gyrus_memory::model::{Kind, Namespace, NewItem};
use gyrus_memory::store::{MemoryError, MemoryStore, Mode, Query, Update};

fn embedder() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    E.get_or_init(|| PocketEmbedder::shared().unwrap()).clone()
}

fn ns(s: &str) -> Namespace {
    Namespace::parse(s).unwrap()
}

fn q(text: &str, nss: &[&str]) -> Query {
    Query {
        text: text.into(),
        namespaces: nss.iter().map(|n| ns(n)).collect(),
        ..Query::default()
    }
}

fn open(dir: &tempfile::TempDir) -> MemoryStore {
    MemoryStore::open(&dir.path().join("memory.db"), embedder()).unwrap()
}

#[test]
fn the_latest_version_wins_and_history_stays() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let owner = ns("owner");
    let v1 = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "The build server is hal9000"),
            1_000,
        )
        .unwrap();
    let v2 = s
        .update(
            &v1.id,
            Update {
                content: Some("The build server is deepthought".into()),
                ..Update::default()
            },
            2_000,
        )
        .unwrap();
    assert_eq!(v2.supersedes.as_deref(), Some(v1.id.as_str()));
    // Only the current version is found, by words of either.
    for text in ["build server", "hal9000", "deepthought"] {
        let hits = s.query(&q(text, &["owner"]), 3_000).unwrap();
        assert!(
            hits.iter().all(|h| h.item.id != v1.id),
            "{text}: old version shown"
        );
        if text != "hal9000" {
            assert_eq!(hits[0].item.id, v2.id, "{text}");
        }
    }
    // History: both, oldest first, the old one closed at the update.
    let h = s.history(&v2.id).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].id, v1.id);
    assert_eq!(h[0].valid_to, Some(2_000));
    assert_eq!(h[1].valid_to, None);
    assert_eq!(s.history(&v1.id).unwrap(), h);
    // An old version cannot be updated: the error names its successor.
    let e = s.update(&v1.id, Update::default(), 4_000).unwrap_err();
    assert!(
        matches!(&e, MemoryError::NotCurrent { by, .. } if *by == v2.id),
        "{e}"
    );
}

#[test]
fn as_of_queries_see_what_held_then() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let owner = ns("owner");
    let v1 = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "Favourite editor: vim"),
            1_000,
        )
        .unwrap();
    let v2 = s
        .update(
            &v1.id,
            Update {
                content: Some("Favourite editor: helix".into()),
                ..Update::default()
            },
            5_000,
        )
        .unwrap();
    for mode in [Mode::Hybrid, Mode::Text, Mode::Vector] {
        let at = |t: i64| {
            let mut query = q("favourite editor", &["owner"]);
            query.as_of = Some(t);
            query.mode = mode;
            s.query(&query, 9_000)
                .unwrap()
                .into_iter()
                .map(|h| h.item.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(500), Vec::<String>::new(), "{mode:?}: before anything");
        assert_eq!(at(1_000), [v1.id.clone()], "{mode:?}");
        assert_eq!(at(4_999), [v1.id.clone()], "{mode:?}");
        assert_eq!(at(5_000), [v2.id.clone()], "{mode:?}");
        assert_eq!(at(8_000), [v2.id.clone()], "{mode:?}");
    }
}

#[test]
fn time_ranges_select_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let owner = ns("owner");
    let mut ids = Vec::new();
    for t in 0..10 {
        let item = s
            .store(
                &owner,
                NewItem::new(Kind::Episodic, format!("ran backup job number {t}"))
                    .tagged(["backup"]),
                1_000 * (t + 1),
            )
            .unwrap();
        ids.push(item.id);
    }
    s.store(
        &owner,
        NewItem::new(Kind::Semantic, "backups go to the NAS"),
        3_500,
    )
    .unwrap();
    // Newest first without text; [3000, 7000) holds episodes 2..=5.
    let mut query = q("", &["owner"]);
    query.kinds = vec![Kind::Episodic];
    query.from = Some(3_000);
    query.to = Some(7_000);
    let got: Vec<String> = s
        .query(&query, 20_000)
        .unwrap()
        .into_iter()
        .map(|h| h.item.id)
        .collect();
    let want: Vec<String> = ids[2..6].iter().rev().cloned().collect();
    assert_eq!(got, want);
    // With text, the same range and a tag.
    query.text = "backup job".into();
    query.tags = vec!["BACKUP".into()];
    let mut got: Vec<String> = s
        .query(&query, 20_000)
        .unwrap()
        .into_iter()
        .map(|h| h.item.id)
        .collect();
    got.sort();
    let mut want = ids[2..6].to_vec();
    want.sort();
    assert_eq!(got, want);
    // An empty range is an error, not an empty answer.
    query.from = Some(7_000);
    assert!(matches!(
        s.query(&query, 20_000),
        Err(MemoryError::Invalid(_))
    ));
}

#[test]
fn ttl_items_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let owner = ns("owner");
    let mut e = NewItem::new(Kind::Semantic, "the one-time code is 493021");
    e.ttl_ms = Some(1_000);
    let item = s.store(&owner, e, 10_000).unwrap();
    assert_eq!(item.expires_at, Some(11_000));
    let lasting = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "the door code is 1234"),
            10_000,
        )
        .unwrap();
    let found = |now| {
        s.query(&q("code", &["owner"]), now)
            .unwrap()
            .into_iter()
            .map(|h| h.item.id)
            .collect::<Vec<_>>()
    };
    assert!(found(10_999).contains(&item.id));
    // Invisible from its expiry on, even before the sweep deletes it.
    assert_eq!(found(11_000), [lasting.id.clone()]);
    assert_eq!(s.expire(10_500).unwrap(), 0);
    assert_eq!(s.expire(11_000).unwrap(), 1);
    assert!(s.get(&item.id).unwrap().is_none());
    assert!(s.get(&lasting.id).unwrap().is_some());
}

#[test]
fn a_query_never_leaves_its_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let secret = "the launch password is swordfish";
    s.store(
        &ns("agent:ag_1"),
        NewItem::new(Kind::Semantic, secret).tagged(["secret"]),
        1_000,
    )
    .unwrap();
    s.store(
        &ns("owner"),
        NewItem::new(Kind::Semantic, secret).tagged(["secret"]),
        1_000,
    )
    .unwrap();
    let mine = s
        .store(
            &ns("agent:ag_2"),
            NewItem::new(Kind::Semantic, "my notes on rockets"),
            1_000,
        )
        .unwrap();
    for mode in [Mode::Hybrid, Mode::Text, Mode::Vector] {
        for text in [
            "launch password swordfish",
            "",
            "*",
            "secret",
            "\" OR 1=1 --",
            "swordfish*",
        ] {
            for as_of in [None, Some(2_000)] {
                for tags in [vec![], vec!["secret".to_string()]] {
                    let mut query = q(text, &["agent:ag_2"]);
                    query.mode = mode;
                    query.as_of = as_of;
                    query.tags = tags;
                    let hits = s.query(&query, 5_000).unwrap();
                    assert!(
                        hits.iter().all(|h| h.item.id == mine.id),
                        "{mode:?} {text:?} leaked {hits:?}"
                    );
                }
            }
        }
    }
    // A namespace nobody has used is simply empty.
    assert!(
        s.query(&q("swordfish", &["agent:ag_9"]), 5_000)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn forget_deletes_every_version_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.db");
    let s = MemoryStore::open(&path, embedder()).unwrap();
    let owner = ns("owner");
    let v1 = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "my bank pin is zqxjkv7781"),
            1_000,
        )
        .unwrap();
    let v2 = s
        .update(
            &v1.id,
            Update {
                content: Some("my bank pin is wvutsr6652".into()),
                ..Update::default()
            },
            2_000,
        )
        .unwrap();
    let keep = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "my bank is the credit union"),
            1_000,
        )
        .unwrap();
    let f = s.forget(&v2.id, "owner", 3_000).unwrap();
    assert_eq!(f.versions, [v1.id.clone(), v2.id.clone()]);
    assert!(s.get(&v1.id).unwrap().is_none() && s.get(&v2.id).unwrap().is_none());
    assert!(matches!(s.history(&v2.id), Err(MemoryError::NotFound(_))));
    let hits = s.query(&q("bank pin", &["owner"]), 4_000).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.item.id.clone()).collect::<Vec<_>>(),
        [keep.id.clone()]
    );
    // The owner can see that something was forgotten, and by whom, but not what.
    let records = s.forgotten(&[owner.clone()]).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].by, "owner");
    drop(s);
    // Not in the database file, its write-ahead log or the full-text index's pages.
    for suffix in ["", "-wal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(std::path::PathBuf::from(p)) {
            for word in [&b"zqxjkv7781"[..], b"wvutsr6652"] {
                assert!(
                    !bytes.windows(word.len()).any(|w| w == word),
                    "{} still holds {}",
                    suffix,
                    String::from_utf8_lossy(word)
                );
            }
        }
    }
}

#[test]
fn a_store_of_another_embedder_is_refused() {
    struct Other(gyrus_memory::embed::EmbedderId);
    impl Embedder for Other {
        fn id(&self) -> &gyrus_memory::embed::EmbedderId {
            &self.0
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, gyrus_memory::embed::EmbedError> {
            Ok(texts.iter().map(|_| vec![1.0; 384]).collect())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.store(&ns("owner"), NewItem::new(Kind::Semantic, "hello"), 1)
        .unwrap();
    drop(s);
    let mut id = embedder().id().clone();
    id.revision = "a different weights digest".into();
    let e = MemoryStore::open(&dir.path().join("memory.db"), Arc::new(Other(id))).unwrap_err();
    assert!(matches!(e, MemoryError::EmbedderMismatch { .. }), "{e}");
}

#[test]
fn the_hnsw_index_takes_over_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.db");
    let owner = ns("owner");
    let topics = [
        "disk", "network", "backup", "editor", "kernel", "music", "garden", "travel",
    ];
    let s = MemoryStore::open_with(&path, embedder(), 50).unwrap();
    let news: Vec<NewItem> = (0..80)
        .map(|i| {
            NewItem::new(
                Kind::Semantic,
                format!("note {i} about the {}", topics[i % 8]),
            )
        })
        .collect();
    let items = s.store_many(&owner, news, 1_000).unwrap();
    assert_eq!(s.stats().unwrap().index, "flat");
    assert!(s.maintain().unwrap());
    assert_eq!(s.stats().unwrap().index, "hnsw");
    // Changes after the save: one forgotten, one added.
    s.forget(&items[3].id, "owner", 2_000).unwrap();
    let late = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "a late note about the orchard"),
            2_000,
        )
        .unwrap();
    let vector = |s: &MemoryStore, text: &str| {
        let mut query = q(text, &["owner"]);
        query.mode = Mode::Vector;
        query.limit = Some(80);
        s.query(&query, 3_000)
            .unwrap()
            .into_iter()
            .map(|h| h.item.id)
            .collect::<Vec<_>>()
    };
    let before = vector(&s, "note about the orchard");
    assert_eq!(before[0], late.id);
    assert!(!before.contains(&items[3].id));
    drop(s);
    let s = MemoryStore::open_with(&path, embedder(), 50).unwrap();
    assert_eq!(s.stats().unwrap().index, "hnsw");
    assert_eq!(s.stats().unwrap().indexed, 80);
    assert_eq!(vector(&s, "note about the orchard"), before);
}

/// Run as a child process by `acknowledged_writes_survive_kill_9`: stores items one by one
/// and prints each id once `store` returned, until killed.
#[test]
fn writer_child() {
    let Ok(path) = std::env::var("GYRUS_MEMORY_WRITER_DB") else {
        return;
    };
    let s = MemoryStore::open(std::path::Path::new(&path), embedder()).unwrap();
    let owner = ns("owner");
    let mut out = std::io::stdout();
    for i in 0.. {
        let item = s
            .store(
                &owner,
                NewItem::new(Kind::Episodic, format!("event number {i} happened")),
                i,
            )
            .unwrap();
        writeln!(out, "ack {}", item.id).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env("GYRUS_MEMORY_WRITER_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 40 {
        let line = lines.next().expect("the writer stopped").unwrap();
        if let Some(id) = line.strip_prefix("ack ") {
            acked.push(id.to_string());
        }
    }
    // SIGKILL mid-stream: the child is inside later stores' transactions by now.
    child.kill().unwrap();
    child.wait().unwrap();
    let s = open(&dir);
    for id in &acked {
        let item = s
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {id} lost"));
        assert!(item.content.starts_with("event number"));
    }
    // Every stored item is whole: content, vector and full-text entry together.
    let stats = s.stats().unwrap();
    let n = stats.current.get("episodic").copied().unwrap_or(0);
    assert!(n >= 40);
    assert_eq!(
        stats.indexed as u64, n,
        "an item without its vector, or the reverse"
    );
    let mut query = q("event number happened", &["owner"]);
    query.mode = Mode::Text;
    query.limit = Some(1000);
    assert_eq!(s.query(&query, i64::MAX / 2).unwrap().len() as u64, n);
}

/// The in-RAM tier never serves a stale copy: a version read through it shows its
/// supersession, retirement, expiry and forgetting at once.
#[test]
fn the_in_ram_tier_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let owner = ns("owner");
    let v1 = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "The NAS is called vault"),
            1_000,
        )
        .unwrap();
    assert_eq!(s.get(&v1.id).unwrap().unwrap().valid_to, None);
    let v2 = s
        .update(
            &v1.id,
            Update {
                content: Some("The NAS is called fortress".into()),
                ..Update::default()
            },
            2_000,
        )
        .unwrap();
    assert_eq!(s.get(&v1.id).unwrap().unwrap().valid_to, Some(2_000));
    assert_eq!(s.get(&v2.id).unwrap().unwrap().content, v2.content);
    s.retire(&v2.id, 3_000).unwrap();
    assert_eq!(s.get(&v2.id).unwrap().unwrap().valid_to, Some(3_000));
    assert!(
        s.query(&q("NAS fortress", &["owner"]), 4_000)
            .unwrap()
            .is_empty()
    );

    let mut short = NewItem::new(Kind::Episodic, "a passing thought");
    short.ttl_ms = Some(10);
    let t = s.store(&owner, short, 5_000).unwrap();
    assert!(s.get(&t.id).unwrap().is_some());
    assert_eq!(s.expire(6_000).unwrap(), 1);
    assert!(s.get(&t.id).unwrap().is_none());

    let f = s
        .store(
            &owner,
            NewItem::new(Kind::Semantic, "to be forgotten"),
            7_000,
        )
        .unwrap();
    assert!(s.get(&f.id).unwrap().is_some());
    s.forget(&f.id, "owner", 8_000).unwrap();
    assert!(s.get(&f.id).unwrap().is_none());
    // A repeated question reuses its embedding.
    let before = s.stats().unwrap().hot.1;
    s.query(&q("what is the NAS called", &["owner"]), 9_000)
        .unwrap();
    s.query(&q("what is the NAS called", &["owner"]), 9_000)
        .unwrap();
    assert_eq!(s.stats().unwrap().hot.1, before + 1);
}

/// A store whose full-text index predates its namespace column is rebuilt at open, and
/// text search works on it as before.
#[test]
fn an_older_full_text_index_is_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.db");
    {
        let s = open(&dir);
        s.store(
            &ns("owner"),
            NewItem::new(Kind::Semantic, "The printer is on the landing"),
            1,
        )
        .unwrap();
        s.store(
            &ns("agent:x"),
            NewItem::new(Kind::Semantic, "The printer is broken"),
            1,
        )
        .unwrap();
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TRIGGER items_fts_add; DROP TRIGGER items_fts_del; DROP TABLE items_fts;
             CREATE VIRTUAL TABLE items_fts USING fts5(
               content, tags, content='items', content_rowid='rowid', tokenize='porter unicode61');
             INSERT INTO items_fts (items_fts) VALUES ('rebuild');",
        )
        .unwrap();
    }
    let s = open(&dir);
    let mut text = q("printer", &["owner"]);
    text.mode = Mode::Text;
    let hits = s.query(&text, 2).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].item.content.contains("landing"));
    let c = rusqlite::Connection::open(&path).unwrap();
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'items_fts'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sql.contains(" ns,"), "{sql}");
}

/// Writes and queries from many threads at once all finish, and each thread sees only its
/// own namespace. The encoder's work, batch embedding and a hybrid query's full-text search
/// all run on rayon's pool; this fails (instead of hanging) if a lock holder ever waits on
/// that pool while its workers wait on the lock.
#[test]
fn concurrent_writes_and_queries_finish_and_stay_apart() {
    const THREADS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..THREADS {
        let s = s.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let name = format!("agent:ag_{t}");
            let me = ns(&name);
            for round in 0..3 {
                let news = (0..9)
                    .map(|i| {
                        NewItem::new(
                            Kind::Semantic,
                            format!("round {round} note {i}: the pump in hall {t} was serviced"),
                        )
                    })
                    .collect();
                s.store_many(&me, news, 1_000 + round).unwrap();
                for mode in [Mode::Hybrid, Mode::Vector, Mode::Text] {
                    let mut query = q(&format!("when was hall {t}'s pump serviced"), &[&name]);
                    query.mode = mode;
                    let hits = s.query(&query, 10_000).unwrap();
                    assert_eq!(hits.len(), 10.min(9 * (round as usize + 1)), "{mode:?}");
                    assert!(
                        hits.iter().all(|h| h.item.namespace == me),
                        "{mode:?} leaked into {name}: {hits:?}"
                    );
                }
            }
            tx.send(t).unwrap();
        });
    }
    drop(tx);
    let mut done = Vec::new();
    // A thread that fails drops its sender without sending; one that hangs times out.
    while let Ok(t) = rx.recv_timeout(std::time::Duration::from_secs(300)) {
        done.push(t);
    }
    done.sort_unstable();
    assert_eq!(
        done,
        (0..THREADS).collect::<Vec<_>>(),
        "a thread failed or hung"
    );
}
