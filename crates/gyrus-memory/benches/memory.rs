//! Memory store benchmark: write throughput and query latency at 100k items.
//!
//! `cargo bench -p gyrus-memory --bench memory` prints
//!
//! - store throughput: items/s for single `store` calls (one transaction and fsync each,
//!   embedding included) and for `store_many` batches of 100, beside embedding alone (one
//!   text per call and 100 per call) so the split between the encoder and SQLite shows;
//! - query latency at `MEMORY_BENCH_N` items (default 100,000, in 10 namespaces): the
//!   store is generated deterministically from templates and word lists, embedded, and
//!   cached under `target/memory-bench/` keyed by [`VERSION`] and N, so reruns skip the
//!   build (which takes many minutes: progress goes to stderr). Each run works on a copy:
//!   it times `maintain()` building the HNSW index, then runs `MEMORY_BENCH_QUERIES`
//!   (default 1,500) question-like queries, a third each in hybrid, text and vector mode,
//!   each limited to one namespace, and prints p50/p95/p99 per mode against the target
//!   (MemoryQuery p95 <= 10 ms at 100k items), with three references: the exact flat scan
//!   in vector mode, the hybrid questions asked a second time (their embeddings then come
//!   from the store's in-RAM tier), and the query embedding alone. Every question is
//!   distinct, so no mode gains from the embedding cache unless the line says so.
//!
//! Without `--bench` (as under `cargo test --benches`) it only runs a tiny smoke check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gyrus_memory::embed::{Embedder, PocketEmbedder};
use gyrus_memory::model::{Kind, Namespace, NewItem};
use gyrus_memory::store::{MemoryStore, Mode, Query};

/// Bump when the generator or the store's format changes, so a stale cache is not reused.
const VERSION: &str = "v1";
/// The target for MemoryQuery p95 at 100k items.
const TARGET_P95: Duration = Duration::from_millis(10);
const NAMESPACES: [&str; 10] = [
    "owner",
    "agent:assistant",
    "agent:coder",
    "agent:travel",
    "agent:finance",
    "agent:health",
    "session:s1",
    "session:s2",
    "shared:family",
    "shared:team",
];
const T0: i64 = 1_700_000_000_000;

/// A small deterministic generator (PCG-style LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const PEOPLE: &[&str] = &[
    "Ines", "Kofi", "Thandi", "Priya", "Dmitri", "Jonas", "Marta", "Grace", "Samuel", "Ana",
    "Efua", "Lwazi", "Naledi", "Sipho", "Yusuf", "Mei", "Oskar", "Lena", "Rafael", "Aiko",
    "Tomasz", "Fatima", "Henrik", "Chiara", "Mateo", "Noor", "Bjorn", "Sade", "Ravi", "Elif",
];
const HOSTS: &[&str] = &[
    "kestrel", "wren", "heron", "osprey", "magpie", "falcon", "swift", "robin", "plover", "curlew",
    "dunlin", "gannet", "merlin", "hobby", "petrel", "tern", "shrike", "linnet",
];
const SERVICES: &[&str] = &[
    "nginx",
    "postgres",
    "redis",
    "kafka",
    "restic",
    "grafana",
    "prometheus",
    "miniflux",
    "home-assistant",
    "syncthing",
    "caddy",
    "wireguard",
    "pihole",
    "gitea",
    "minio",
    "vault",
];
const ERRORS: &[&str] = &[
    "connection refused",
    "out of memory",
    "disk full",
    "certificate expired",
    "permission denied",
    "timeout",
    "segfault",
    "too many open files",
    "lock held",
    "checksum mismatch",
    "DNS failure",
    "port already in use",
];
const PROJECTS: &[&str] = &[
    "tidepool",
    "lanternfish",
    "bramble",
    "quill",
    "ember",
    "halyard",
    "saltmarsh",
    "foxglove",
    "tinder",
    "cobble",
    "driftwood",
    "larkspur",
];
const CAUSES: &[&str] = &[
    "a new compiler lint",
    "an expired token",
    "a flaky integration test",
    "a dependency upgrade",
    "a missing feature flag",
    "a race in the scheduler",
    "a wrong path in the Makefile",
    "an outdated lockfile",
];
const DRINKS: &[&str] = &[
    "flat white",
    "espresso",
    "green tea",
    "rooibos",
    "oat latte",
    "hot chocolate",
    "sparkling water",
    "chai",
    "filter coffee",
    "mint tea",
];
const TIMES: &[&str] = &["morning", "afternoon", "evening", "night", "weekend"];
const CITIES: &[&str] = &[
    "Lisbon",
    "Porto",
    "Manchester",
    "Cape Town",
    "Kyoto",
    "Zurich",
    "Leipzig",
    "Amsterdam",
    "Vienna",
    "Copenhagen",
    "Accra",
    "Madrid",
    "Oslo",
    "Prague",
    "Munich",
    "Milan",
];
const AIRLINES: &[&str] = &["TP", "LH", "BA", "KL", "SK", "OS", "LX", "IB"];
const ITEMS: &[&str] = &[
    "a standing desk",
    "a pottery wheel",
    "new running shoes",
    "a rice cooker",
    "a mechanical keyboard",
    "a bike lock",
    "a winter coat",
    "a drill",
    "a camera lens",
    "a tent",
    "noise-cancelling headphones",
    "a cast iron pan",
    "a monitor arm",
];
const SHOPS: &[&str] = &[
    "the hardware store",
    "Kleinanzeigen",
    "the camera shop",
    "the outdoor shop",
    "the market",
    "an online shop",
    "the department store",
];
const PLANTS: &[&str] = &[
    "monstera",
    "cactus",
    "fern",
    "basil",
    "orchid",
    "olive tree",
    "snake plant",
    "pothos",
];
const HOBBIES: &[&str] = &[
    "ceramics",
    "climbing",
    "chess",
    "jazz",
    "gardening",
    "cycling",
    "baking",
    "sailing",
    "birdwatching",
    "knitting",
    "photography",
    "swimming",
];
const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const TOPICS: &[&str] = &[
    "the quarterly roadmap",
    "the database migration",
    "the hiring plan",
    "the budget",
    "the on-call rotation",
    "the API redesign",
    "the holiday schedule",
    "the incident review",
];
const OSES: &[&str] = &[
    "Debian 12",
    "Fedora 40",
    "Ubuntu 24.04",
    "Arch",
    "NixOS 24.05",
];
const BOOKS: &[&str] = &[
    "The Dispossessed",
    "Piranesi",
    "The Left Hand of Darkness",
    "Exhalation",
    "The Overstory",
    "Klara and the Sun",
    "A Memory Called Empire",
    "Station Eleven",
];

/// One synthetic memory: varied templates over the word lists, with rare tokens (hostnames
/// with numbers, error codes, versions, flight numbers) for full-text search to find.
fn sentence(r: &mut Rng) -> String {
    match r.below(12) {
        0 => format!(
            "{} prefers {} in the {}.",
            r.pick(PEOPLE),
            r.pick(DRINKS),
            r.pick(TIMES)
        ),
        1 => format!(
            "Meeting with {} about {} on {} at {}:{:02}.",
            r.pick(PEOPLE),
            r.pick(TOPICS),
            r.pick(DAYS),
            8 + r.below(10),
            15 * r.below(4)
        ),
        2 => format!(
            "{} on {}-{} failed with {} (E{}) after upgrading to {}.{}.{}.",
            r.pick(SERVICES),
            r.pick(HOSTS),
            r.below(100),
            r.pick(ERRORS),
            1000 + r.below(9000),
            r.below(5),
            r.below(20),
            r.below(10)
        ),
        3 => format!(
            "{} recommended {} and said it changed how they think about {}.",
            r.pick(PEOPLE),
            r.pick(BOOKS),
            r.pick(HOBBIES)
        ),
        4 => format!(
            "Flight {}{} to {} departs on {} {} at {}:{:02}.",
            r.pick(AIRLINES),
            100 + r.below(900),
            r.pick(CITIES),
            1 + r.below(28),
            r.pick(MONTHS),
            6 + r.below(16),
            5 * r.below(12)
        ),
        5 => format!(
            "Bought {} from {} for {} EUR.",
            r.pick(ITEMS),
            r.pick(SHOPS),
            10 + r.below(990)
        ),
        6 => format!(
            "{}-{} runs {} with {} GB of RAM and a {} TB disk.",
            r.pick(HOSTS),
            r.below(100),
            r.pick(OSES),
            [8, 16, 32, 64, 128][r.below(5)],
            1 + r.below(16)
        ),
        7 => format!(
            "Water the {} every {} days; it sits by the {} window.",
            r.pick(PLANTS),
            2 + r.below(12),
            ["kitchen", "bedroom", "living room", "bathroom", "hall"][r.below(5)]
        ),
        8 => format!(
            "{}'s birthday is on {} {}; they are into {} lately.",
            r.pick(PEOPLE),
            1 + r.below(28),
            r.pick(MONTHS),
            r.pick(HOBBIES)
        ),
        9 => format!(
            "The {} build broke because of {}; {} fixed it in commit {:07x}.",
            r.pick(PROJECTS),
            r.pick(CAUSES),
            r.pick(PEOPLE),
            r.next() & 0xfff_ffff
        ),
        10 => format!(
            "Trip to {} with {} in {}: stay near the old town and try the local {}.",
            r.pick(CITIES),
            r.pick(PEOPLE),
            r.pick(MONTHS),
            ["bakery", "market", "wine bar", "noodle shop", "museum"][r.below(5)]
        ),
        _ => format!(
            "{} v{}.{}.{} was released with a fix for {} in the {} module.",
            r.pick(PROJECTS),
            r.below(3),
            r.below(20),
            r.below(10),
            r.pick(ERRORS),
            [
                "parser",
                "scheduler",
                "storage",
                "network",
                "cli",
                "decoder"
            ][r.below(6)]
        ),
    }
}

/// A question someone would ask of such memories (not copied from one).
fn question(r: &mut Rng) -> String {
    match r.below(12) {
        0 => format!("What does {} like to drink?", r.pick(PEOPLE)),
        1 => format!(
            "When am I meeting {} about {}?",
            r.pick(PEOPLE),
            r.pick(TOPICS)
        ),
        2 => format!("Why did {} fail on {}?", r.pick(SERVICES), r.pick(HOSTS)),
        3 => format!("Which book did {} recommend?", r.pick(PEOPLE)),
        4 => format!("When is my flight to {}?", r.pick(CITIES)),
        5 => format!("How much did I pay for {}?", r.pick(ITEMS)),
        6 => format!(
            "How much memory does {}-{} have?",
            r.pick(HOSTS),
            r.below(100)
        ),
        7 => format!("How often should I water the {}?", r.pick(PLANTS)),
        8 => format!("When is {}'s birthday?", r.pick(PEOPLE)),
        9 => format!("Why did the {} build break?", r.pick(PROJECTS)),
        10 => format!("What should we do in {}?", r.pick(CITIES)),
        _ => format!("What was fixed in the latest {} release?", r.pick(PROJECTS)),
    }
}

fn namespaces() -> Vec<Namespace> {
    NAMESPACES
        .iter()
        .map(|n| Namespace::parse(n).unwrap())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct Latency {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    n: usize,
    empty: usize,
}

fn run_queries(store: &MemoryStore, mode: Mode, qs: &[(String, Namespace)], now: i64) -> Latency {
    let mut times = Vec::with_capacity(qs.len());
    let mut empty = 0;
    for (text, ns) in qs {
        let q = Query {
            text: text.clone(),
            namespaces: vec![ns.clone()],
            limit: Some(10),
            mode,
            ..Query::default()
        };
        let t = Instant::now();
        let hits = store.query(&q, now).unwrap();
        times.push(t.elapsed());
        if hits.is_empty() {
            empty += 1;
        }
    }
    times.sort();
    Latency {
        p50: percentile(&times, 0.50),
        p95: percentile(&times, 0.95),
        p99: percentile(&times, 0.99),
        n: times.len(),
        empty,
    }
}

fn print_latency(name: &str, l: &Latency) {
    println!(
        "  {name:<22} n={:<5} p50 {:>9}  p95 {:>9}  p99 {:>9}{}",
        l.n,
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        if l.empty > 0 {
            format!("  ({} with no hits)", l.empty)
        } else {
            String::new()
        }
    );
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>8.1} items/s", n as f64 / d.as_secs_f64())
}

/// Store throughput, beside embedding alone.
fn throughput(embedder: &Arc<dyn Embedder>, singles: usize, batches: usize) {
    let mut r = Rng(7);
    let texts: Vec<String> = (0..singles + batches * 100)
        .map(|_| sentence(&mut r))
        .collect();
    let (single_texts, batch_texts) = texts.split_at(singles);
    let t = Instant::now();
    for s in single_texts {
        embedder.embed(&[s.as_str()]).unwrap();
    }
    let embed_one = t.elapsed();
    let t = Instant::now();
    for chunk in batch_texts.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        embedder.embed(&refs).unwrap();
    }
    let embed_batch = t.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(&dir.path().join("memory.db"), embedder.clone()).unwrap();
    let owner = Namespace::owner();
    let t = Instant::now();
    for (i, s) in single_texts.iter().enumerate() {
        store
            .store(
                &owner,
                NewItem::new(Kind::Semantic, s.clone()),
                T0 + i as i64,
            )
            .unwrap();
    }
    let store_one = t.elapsed();
    let t = Instant::now();
    for (i, chunk) in batch_texts.chunks(100).enumerate() {
        let news = chunk
            .iter()
            .map(|s| NewItem::new(Kind::Semantic, s.clone()))
            .collect();
        store
            .store_many(&owner, news, T0 + 1_000_000 + i as i64)
            .unwrap();
    }
    let store_batch = t.elapsed();
    println!("store throughput (embedding included; one transaction + fsync per call):");
    println!(
        "  store, 1 item per call    {}   (embedding alone, 1 per call:   {})",
        rate(singles, store_one),
        rate(singles, embed_one)
    );
    println!(
        "  store_many, 100 per call  {}   (embedding alone, 100 per call: {})",
        rate(batches * 100, store_batch),
        rate(batches * 100, embed_batch)
    );
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e3 / n as f64;
    let (s1, e1) = (per(store_one, singles), per(embed_one, singles));
    let (sb, eb) = (
        per(store_batch, batches * 100),
        per(embed_batch, batches * 100),
    );
    println!(
        "  per item: store {s1:.2} ms, of which embedding {e1:.2} ms and SQLite + index about {:.2} ms; \
         store_many {sb:.2} ms, of which embedding {eb:.2} ms and the rest about {:.2} ms",
        (s1 - e1).max(0.0),
        (sb - eb).max(0.0)
    );
}

/// Builds (or finds) the cached store of `n` items; returns its path.
fn cached_store(root: &Path, embedder: &Arc<dyn Embedder>, n: usize) -> PathBuf {
    let dir = root.join(format!("target/memory-bench/{VERSION}-n{n}"));
    let db = dir.join("memory.db");
    let done = dir.join("complete");
    if done.exists() {
        eprintln!("using the cached store {}", db.display());
        return db;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("building {} ({n} items; cached for reruns)", db.display());
    // Flat while building (the threshold is above n), so nothing but the database is saved.
    let store = MemoryStore::open_with(&db, embedder.clone(), usize::MAX).unwrap();
    let nss = namespaces();
    let mut r = Rng(42);
    let batch = 250;
    let t = Instant::now();
    let mut last = Instant::now();
    let mut stored = 0;
    while stored < n {
        let k = batch.min(n - stored);
        // Each batch goes to one namespace, in rotation, so all get an equal share.
        let ns = &nss[(stored / batch) % nss.len()];
        let news = (0..k)
            .map(|i| {
                let kind = if (stored + i) % 3 == 0 {
                    Kind::Episodic
                } else {
                    Kind::Semantic
                };
                NewItem::new(kind, sentence(&mut r))
            })
            .collect();
        store
            .store_many(ns, news, T0 + stored as i64 * 1000)
            .unwrap();
        stored += k;
        if last.elapsed() > Duration::from_secs(10) || stored == n {
            last = Instant::now();
            let per_s = stored as f64 / t.elapsed().as_secs_f64();
            eprintln!(
                "  {stored}/{n} items, {per_s:.0} items/s, about {:.0} s left",
                (n - stored) as f64 / per_s
            );
        }
    }
    drop(store);
    std::fs::write(&done, format!("{n}\n")).unwrap();
    println!(
        "built the {n}-item store in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        rate(n, t.elapsed())
    );
    db
}

fn copy_db(from: &Path, to_dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(to_dir);
    std::fs::create_dir_all(to_dir).unwrap();
    let to = to_dir.join("memory.db");
    std::fs::copy(from, &to).unwrap();
    for ext in ["-wal", "-shm"] {
        let mut f = from.as_os_str().to_owned();
        f.push(ext);
        let mut t = to.as_os_str().to_owned();
        t.push(ext);
        if Path::new(&f).exists() {
            std::fs::copy(&f, &t).unwrap();
        }
    }
    to
}

fn remove_index_files(db: &Path) {
    for ext in [".hnsw", ".hnsw.seq"] {
        let mut p = db.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn latency(root: &Path, embedder: &Arc<dyn Embedder>, n: usize, queries: usize) {
    let cached = cached_store(root, embedder, n);
    let work_dir = root.join("target/memory-bench/work");
    let work = copy_db(&cached, &work_dir);
    let now = T0 + n as i64 * 1000 + 1;

    // Open flat (threshold = n), add one item so the index outgrows the threshold, and
    // time maintain() building the HNSW index as it would in the daemon.
    let t = Instant::now();
    let store = MemoryStore::open_with(&work, embedder.clone(), n).unwrap();
    let open_flat = t.elapsed();
    store
        .store(
            &Namespace::owner(),
            NewItem::new(
                Kind::Semantic,
                "The benchmark probe item: one more than the threshold.",
            ),
            now,
        )
        .unwrap();
    let t = Instant::now();
    assert!(
        store.maintain().unwrap(),
        "maintain() should build the HNSW index"
    );
    let build = t.elapsed();
    let stats = store.stats().unwrap();
    assert_eq!(stats.index, "hnsw");
    println!(
        "{} items: open (flat index from the stored vectors) {:.1} s, maintain() building HNSW {:.1} s",
        stats.indexed,
        open_flat.as_secs_f64(),
        build.as_secs_f64()
    );
    drop(store);
    let t = Instant::now();
    let store = MemoryStore::open_with(&work, embedder.clone(), n).unwrap();
    println!(
        "  reopen with the saved HNSW index: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let nss = namespaces();
    let mut r = Rng(1234);
    let per_mode = queries.div_ceil(3);
    // Distinct questions for the warm-up and for each mode: the store keeps recent query
    // embeddings in RAM, and a question seen before would skip the encoder.
    let mut seen = std::collections::HashSet::new();
    let mut fresh = |count: usize| -> Vec<(String, Namespace)> {
        let mut out = Vec::with_capacity(count);
        let mut tries = 0usize;
        while out.len() < count {
            tries += 1;
            assert!(
                tries < 1000 * count,
                "the question generator ran out of distinct questions"
            );
            let text = question(&mut r);
            if seen.insert(text.clone()) {
                out.push((text, nss[r.below(nss.len())].clone()));
            }
        }
        out
    };
    let warm = fresh(20);
    let qs_hybrid = fresh(per_mode);
    let qs_text = fresh(per_mode);
    let qs = fresh(per_mode);
    // Warm up: the page cache, SQLite's statement cache, the encoder.
    for (text, ns) in &warm {
        let q = Query {
            text: text.clone(),
            namespaces: vec![ns.clone()],
            ..Query::default()
        };
        store.query(&q, now).unwrap();
    }
    let mut embed_times: Vec<Duration> = qs
        .iter()
        .take(200)
        .map(|(text, _)| {
            let t = Instant::now();
            embedder.embed(&[text.as_str()]).unwrap();
            t.elapsed()
        })
        .collect();
    embed_times.sort();
    let hybrid = run_queries(&store, Mode::Hybrid, &qs_hybrid, now);
    let text = run_queries(&store, Mode::Text, &qs_text, now);
    let vector = run_queries(&store, Mode::Vector, &qs, now);
    // For reference: the hybrid questions asked again, their embeddings now in RAM.
    let repeated = run_queries(&store, Mode::Hybrid, &qs_hybrid, now);
    drop(store);

    // The exact flat scan for reference: the saved index removed, threshold above n.
    remove_index_files(&work);
    let flat_store = MemoryStore::open_with(&work, embedder.clone(), usize::MAX).unwrap();
    assert_eq!(flat_store.stats().unwrap().index, "flat");
    let flat = run_queries(&flat_store, Mode::Vector, &qs, now);
    drop(flat_store);
    let _ = std::fs::remove_dir_all(&work_dir);

    println!(
        "MemoryQuery latency at {} items, {} namespaces, limit 10, one namespace per query ({} queries per mode):",
        stats.indexed,
        NAMESPACES.len(),
        per_mode
    );
    print_latency("hybrid (HNSW)", &hybrid);
    print_latency("text (FTS5 BM25)", &text);
    print_latency("vector (HNSW)", &vector);
    print_latency("vector (flat, exact)", &flat);
    print_latency("hybrid, asked again", &repeated);
    println!(
        "  query embedding alone  p50 {:>9}  p95 {:>9}",
        ms(percentile(&embed_times, 0.5)),
        ms(percentile(&embed_times, 0.95))
    );
    let all = [&hybrid, &text, &vector];
    let worst = all.iter().map(|l| l.p95).max().unwrap();
    println!(
        "target MemoryQuery p95 <= {} at 100k items: {} (worst mode p95 {}{})",
        ms(TARGET_P95),
        if worst <= TARGET_P95 {
            "MET"
        } else {
            "NOT MET"
        },
        ms(worst),
        if n == 100_000 {
            String::new()
        } else {
            format!("; measured at {n} items, not 100k")
        }
    );
}

/// The smoke check: a tiny store through every path, in a second or two.
fn quick(embedder: &Arc<dyn Embedder>) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        MemoryStore::open_with(&dir.path().join("memory.db"), embedder.clone(), 20).unwrap();
    let nss = namespaces();
    let mut r = Rng(3);
    for ns in nss.iter().take(2) {
        let news = (0..15)
            .map(|_| NewItem::new(Kind::Semantic, sentence(&mut r)))
            .collect();
        store.store_many(ns, news, T0).unwrap();
    }
    store
        .store(
            &nss[0],
            NewItem::new(Kind::Semantic, sentence(&mut r)),
            T0 + 1,
        )
        .unwrap();
    assert!(store.maintain().unwrap());
    for mode in [Mode::Hybrid, Mode::Text, Mode::Vector] {
        let l = run_queries(&store, mode, &[(question(&mut r), nss[0].clone())], T0 + 2);
        assert_eq!(l.n, 1);
    }
    println!(
        "memory bench quick check: ok (run `cargo bench -p gyrus-memory --bench memory` for numbers)"
    );
}

fn main() {
    let embedder = PocketEmbedder::shared().unwrap();
    if !std::env::args().any(|a| a == "--bench") {
        quick(&embedder);
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("MEMORY_BENCH_N", 100_000);
    let queries = env("MEMORY_BENCH_QUERIES", 1_500);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    throughput(&embedder, 200, 10);
    latency(&root, &embedder, n, queries);
}
