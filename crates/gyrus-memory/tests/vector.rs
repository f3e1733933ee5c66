//! Integration tests of the vector indexes through the `VectorIndex` trait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use gyrus_memory::vector::{FlatIndex, HnswConfig, HnswIndex, IndexError, VectorIndex};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f32 {
        ((-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()) as f32
    }
}

/// `n` vectors around `centers` random centres, like `make_blobs`.
fn clustered(n: usize, dim: usize, centers: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = Rng(seed);
    let cs: Vec<Vec<f32>> = (0..centers)
        .map(|_| (0..dim).map(|_| (r.unit() as f32 - 0.5) * 20.0).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &cs[(r.next() % centers as u64) as usize];
            c.iter().map(|x| x + r.gauss()).collect()
        })
        .collect()
}

/// Splits off the last `q` vectors as queries (same distribution as the data).
fn split(mut all: Vec<Vec<f32>>, q: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let queries = all.split_off(all.len() - q);
    (all, queries)
}

const DIM: usize = 32;
const ALL: &dyn Fn(u32) -> bool = &|_| true;

fn build(data: &[Vec<f32>], ns: impl Fn(usize) -> u32) -> (FlatIndex, HnswIndex) {
    let mut flat = FlatIndex::new(DIM).unwrap();
    let cfg = HnswConfig {
        m: 12,
        ef_construction: 100,
        ef_search: 64,
        seed: 42,
    };
    let mut hnsw = HnswIndex::new(DIM, cfg).unwrap();
    for (i, v) in data.iter().enumerate() {
        flat.insert(i as u64, ns(i), v).unwrap();
        hnsw.insert(i as u64, ns(i), v).unwrap();
    }
    (flat, hnsw)
}

fn recall(
    flat: &FlatIndex,
    hnsw: &HnswIndex,
    queries: &[Vec<f32>],
    filter: &dyn Fn(u32) -> bool,
) -> f64 {
    let mut found = 0usize;
    let mut total = 0usize;
    for q in queries {
        let truth: HashSet<u64> = flat.search(q, 10, filter).iter().map(|h| h.id).collect();
        let got = hnsw.search(q, 10, filter);
        found += got.iter().filter(|h| truth.contains(&h.id)).count();
        total += truth.len();
    }
    found as f64 / total.max(1) as f64
}

#[test]
fn hnsw_recall_at_10_matches_flat() {
    let (data, queries) = split(clustered(6000 + 200, DIM, 60, 1), 200);
    let (flat, hnsw) = build(&data, |_| 0);
    let r = recall(&flat, &hnsw, &queries, ALL);
    assert!(r >= 0.95, "recall {r}");
    // Best first, scores are cosines.
    let hits = hnsw.search(&queries[0], 10, ALL);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| h.score <= 1.0001 && h.score >= -1.0001));
}

#[test]
fn namespace_filters_never_leak() {
    let (data, queries) = split(clustered(5000 + 50, DIM, 50, 3), 50);
    // 100 namespaces: filters passing 50%, 10% and 1% of items.
    let (flat, hnsw) = build(&data, |i| (i % 100) as u32);
    let half = |ns: u32| ns < 50;
    let tenth = |ns: u32| ns % 10 == 3;
    let one = |ns: u32| ns == 77;
    for (name, f) in [
        ("half", &half as &dyn Fn(u32) -> bool),
        ("tenth", &tenth),
        ("one", &one),
    ] {
        for q in &queries {
            let hits = hnsw.search(q, 10, f);
            assert_eq!(hits.len(), 10, "{name}");
            assert!(hits.iter().all(|h| f((h.id % 100) as u32)), "{name} leaked");
            let exact = flat.search(q, 10, f);
            assert!(exact.iter().all(|h| f((h.id % 100) as u32)));
        }
        let r = recall(&flat, &hnsw, &queries, f);
        assert!(r >= 0.95, "{name} recall {r}");
    }
    let none = |_: u32| false;
    assert!(hnsw.search(&queries[0], 10, &none).is_empty());
    // k larger than the passing set returns exactly the passing set.
    let hits = hnsw.search(&queries[0], 1000, &one);
    assert_eq!(hits.len(), 50);
}

#[test]
fn each_namespace_is_a_graph_of_its_own() {
    use gyrus_memory::vector::hnsw::EXACT_MAX;
    // Three namespaces too large to scan, so every search walks graphs.
    let per = 2 * EXACT_MAX + 300;
    let (data, queries) = split(clustered(3 * per + 60, DIM, 40, 13), 60);
    let (mut flat, mut hnsw) = build(&data, |i| (i % 3) as u32);
    let one = |ns: u32| ns == 1;
    let two = |ns: u32| ns != 2;
    let check = |flat: &FlatIndex, hnsw: &HnswIndex, name: &str| {
        for (f, label) in [
            (&one as &dyn Fn(u32) -> bool, "one"),
            (&two, "two"),
            (ALL, "all"),
        ] {
            for q in &queries {
                let hits = hnsw.search(q, 10, f);
                assert_eq!(hits.len(), 10, "{name} {label}");
                assert!(
                    hits.iter().all(|h| f((h.id % 3) as u32)),
                    "{name} {label} leaked"
                );
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            }
            let r = recall(flat, hnsw, &queries, f);
            assert!(r >= 0.95, "{name} {label} recall {r}");
        }
    };
    check(&flat, &hnsw, "built");
    // Empty namespace 0: its graph is all tombstones and nothing of it returns; new vectors
    // in it start a fresh graph that finds them.
    for id in (0..3 * per as u64).filter(|id| id % 3 == 0) {
        assert!(hnsw.remove(id));
        assert!(flat.remove(id));
    }
    assert!(hnsw.tombstones() > 0, "no rebuild yet");
    let zero = |ns: u32| ns == 0;
    assert!(hnsw.search(&queries[0], 10, &zero).is_empty());
    // The same vectors under new ids (the queries' distribution).
    for (i, v) in data.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let id = 3_000_000 + i as u64;
        hnsw.insert(id, 0, v).unwrap();
        flat.insert(id, 0, v).unwrap();
    }
    let r = recall(&flat, &hnsw, &queries, &zero);
    assert!(r >= 0.95, "recall in the refilled namespace {r}");
    for q in &queries {
        assert!(hnsw.search(q, 10, &zero).iter().all(|h| h.id >= 3_000_000));
    }
    check(&flat, &hnsw, "refilled");
    // The file keeps every graph (and loading it checks that no link crosses namespaces).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hnsw.idx");
    hnsw.save(&path).unwrap();
    let loaded = HnswIndex::load(&path).unwrap();
    for q in &queries {
        for f in [&one as &dyn Fn(u32) -> bool, &two, &zero, ALL] {
            assert_eq!(hnsw.search(q, 10, f), loaded.search(q, 10, f));
        }
    }
}

#[test]
fn deleted_items_never_return_and_recall_holds() {
    let (data, queries) = split(clustered(6000 + 200, DIM, 60, 5), 200);
    let (mut flat, mut hnsw) = build(&data, |_| 0);
    let mut r = Rng(9);
    let mut gone = HashSet::new();
    while gone.len() < 1800 {
        let id = r.next() % 6000;
        if gone.insert(id) {
            assert!(hnsw.remove(id));
            assert!(flat.remove(id));
        }
    }
    assert!(!hnsw.remove(*gone.iter().next().unwrap()));
    assert_eq!(hnsw.len(), 4200);
    for q in &queries {
        assert!(
            hnsw.search(q, 10, ALL)
                .iter()
                .all(|h| !gone.contains(&h.id))
        );
    }
    let rc = recall(&flat, &hnsw, &queries, ALL);
    assert!(rc >= 0.95, "recall after deleting 30%: {rc}");
    // Deleting most of the index triggers a rebuild; the rest is still found.
    for id in 0..6000u64 {
        if id % 10 != 0 {
            hnsw.remove(id);
            flat.remove(id);
        }
    }
    assert_eq!(hnsw.len(), flat.len());
    assert!(hnsw.tombstones() <= hnsw.len() / 2 + 16);
    let rc = recall(&flat, &hnsw, &queries, ALL);
    assert!(rc >= 0.95, "recall after deleting 90%: {rc}");
    for id in 0..6000u64 {
        hnsw.remove(id);
    }
    assert!(hnsw.is_empty());
    assert!(hnsw.search(&queries[0], 10, ALL).is_empty());
    hnsw.insert(1, 0, &queries[0]).unwrap();
    assert_eq!(hnsw.search(&queries[0], 10, ALL)[0].id, 1);
}

#[test]
fn insert_replaces_by_id() {
    let mut a = vec![0.0f32; DIM];
    a[0] = 1.0;
    let mut b = vec![0.0f32; DIM];
    b[1] = 1.0;
    let mut flat = FlatIndex::new(DIM).unwrap();
    let mut hnsw = HnswIndex::new(DIM, HnswConfig::default()).unwrap();
    for ix in [&mut flat as &mut dyn VectorIndex, &mut hnsw] {
        ix.insert(7, 1, &a).unwrap();
        ix.insert(8, 1, &b).unwrap();
        ix.insert(7, 2, &b).unwrap();
        assert_eq!(ix.len(), 2);
        let hits = ix.search(&a, 5, ALL);
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.score.abs() < 1e-6));
        let only2 = ix.search(&b, 5, &|ns| ns == 2);
        assert_eq!(only2.len(), 1);
        assert_eq!(only2[0].id, 7);
        assert!((only2[0].score - 1.0).abs() < 1e-6);
    }
}

#[test]
fn bad_vectors_are_rejected_and_leave_the_index_unchanged() {
    let mut flat = FlatIndex::new(3).unwrap();
    let mut hnsw = HnswIndex::new(3, HnswConfig::default()).unwrap();
    for ix in [&mut flat as &mut dyn VectorIndex, &mut hnsw] {
        ix.insert(1, 0, &[1.0, 0.0, 0.0]).unwrap();
        assert!(matches!(
            ix.insert(1, 0, &[1.0, 0.0]),
            Err(IndexError::WrongDimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            ix.insert(1, 0, &[0.0; 3]),
            Err(IndexError::ZeroVector)
        ));
        assert!(matches!(
            ix.insert(2, 0, &[f32::NAN, 1.0, 0.0]),
            Err(IndexError::NonFinite { index: 0 })
        ));
        assert!(matches!(
            ix.insert(2, 0, &[1.0, f32::NEG_INFINITY, 0.0]),
            Err(IndexError::NonFinite { index: 1 })
        ));
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.search(&[1.0, 0.0, 0.0], 1, ALL)[0].id, 1);
        assert!(ix.search(&[1.0, 0.0], 1, ALL).is_empty());
    }
    assert!(FlatIndex::new(0).is_err());
    assert!(
        HnswIndex::new(
            3,
            HnswConfig {
                m: 1,
                ..HnswConfig::default()
            }
        )
        .is_err()
    );
}

#[test]
fn persistence_round_trip_gives_identical_results() {
    let (data, queries) = split(clustered(3000 + 50, DIM, 30, 7), 50);
    let (mut flat, mut hnsw) = build(&data, |i| (i % 4) as u32);
    for id in (0..3000).step_by(7) {
        flat.remove(id);
        hnsw.remove(id);
    }
    let dir = tempfile::tempdir().unwrap();
    let (fp, hp) = (dir.path().join("flat.idx"), dir.path().join("hnsw.idx"));
    flat.save(&fp).unwrap();
    hnsw.save(&hp).unwrap();
    let flat2 = FlatIndex::load(&fp).unwrap();
    let mut hnsw2 = HnswIndex::load(&hp).unwrap();
    assert_eq!(hnsw2.len(), hnsw.len());
    let f = |ns: u32| ns != 1;
    for q in &queries {
        assert_eq!(flat.search(q, 10, &f), flat2.search(q, 10, &f));
        assert_eq!(hnsw.search(q, 10, &f), hnsw2.search(q, 10, &f));
    }
    // Inserting after a load continues deterministically.
    hnsw.insert(99_999, 0, &queries[0]).unwrap();
    hnsw2.insert(99_999, 0, &queries[0]).unwrap();
    for q in &queries {
        assert_eq!(hnsw.search(q, 10, ALL), hnsw2.search(q, 10, ALL));
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn corrupt_or_truncated_files_are_errors() {
    let data = clustered(500, DIM, 5, 9);
    let (flat, hnsw) = build(&data, |_| 0);
    let dir = tempfile::tempdir().unwrap();
    let (fp, hp) = (dir.path().join("flat.idx"), dir.path().join("hnsw.idx"));
    flat.save(&fp).unwrap();
    hnsw.save(&hp).unwrap();
    let bad = dir.path().join("bad.idx");
    for (good, is_hnsw) in [(&fp, false), (&hp, true)] {
        let bytes = std::fs::read(good).unwrap();
        let load = |b: &[u8]| {
            std::fs::write(&bad, b).unwrap();
            if is_hnsw {
                HnswIndex::load(&bad).map(|_| ())
            } else {
                FlatIndex::load(&bad).map(|_| ())
            }
        };
        for cut in [0, 5, 16, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                matches!(load(&bytes[..cut]), Err(IndexError::Corrupt { .. })),
                "cut {cut}"
            );
        }
        let mut r = Rng(11);
        for _ in 0..50 {
            let mut b = bytes.clone();
            let at = (r.next() % b.len() as u64) as usize;
            b[at] ^= 1 << (r.next() % 8);
            assert!(load(&b).is_err(), "flip at {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(load(&longer).is_err());
    }
    // A flat file is not an HNSW file.
    assert!(HnswIndex::load(&fp).is_err());
    assert!(matches!(
        FlatIndex::load(&dir.path().join("missing")),
        Err(IndexError::Io { .. })
    ));
}
