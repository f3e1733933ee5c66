//! ANN benchmark: our HNSW against hnswlib on ANN-Benchmarks' random angular datasets.
//!
//! `cargo bench -p gyrus-memory --bench ann` regenerates `random-xs-20-angular` and
//! `random-s-100-angular` with `bench/datasets.py` (into `target/ann-data/`), measures
//! hnswlib with `bench/hnswlib_ref.py` in the same run, then builds our index with the same
//! `M` and `ef_construction` and prints recall@10 and single-thread QPS per `ef`. The Python
//! packages live in a venv at `.cache/bench-venv` (created when missing). `ANN_DATASETS`
//! (comma separated) picks datasets. Without `--bench` (as under `cargo test --benches`) it
//! only runs a tiny smoke check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gyrus_memory::vector::{HnswConfig, HnswIndex, VectorIndex};

const M: usize = 16;
const EF_CONSTRUCTION: usize = 200;
const SEED: u64 = 100;
const EFS: [usize; 6] = [10, 20, 40, 80, 160, 320];

/// A minimal `.npy` reader for 2-D little-endian `<f4` / `<i4` arrays.
fn npy(path: &Path) -> (Vec<u8>, usize, usize) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'fortran_order': False"));
    assert!(header.contains("<f4") || header.contains("<i4"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (b[start + hlen..].to_vec(), dims[0], dims[1])
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn i32s(raw: &[u8]) -> Vec<i32> {
    raw.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn python(root: &Path) -> PathBuf {
    let venv = root.join(".cache/bench-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!("creating {}", venv.display());
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .unwrap()
            .success();
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "numpy", "scikit-learn", "hnswlib"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install failed");
    }
    py
}

fn run_py(py: &Path, script: &Path, args: &[String]) -> String {
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn quick() {
    let dim = 16;
    let mut ix = HnswIndex::new(
        dim,
        HnswConfig {
            m: 8,
            ef_construction: 32,
            ..HnswConfig::default()
        },
    )
    .unwrap();
    let mut s = 1u64;
    let mut next = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let data: Vec<Vec<f32>> = (0..500)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    for (i, v) in data.iter().enumerate() {
        ix.insert(i as u64, 0, v).unwrap();
    }
    let hits = ix.search(&data[3], 5, &|_| true);
    assert_eq!(hits[0].id, 3);
    println!(
        "ann bench quick check: ok (run `cargo bench -p gyrus-memory --bench ann` for numbers)"
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        quick();
        return;
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.join("../..").canonicalize().unwrap();
    let data_dir = root.join("target/ann-data");
    let names: Vec<String> = std::env::var("ANN_DATASETS")
        .unwrap_or_else(|_| "random-xs-20-angular,random-s-100-angular".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let py = python(&root);
    let mut args = vec![data_dir.display().to_string()];
    args.extend(names.iter().cloned());
    run_py(&py, &crate_dir.join("bench/datasets.py"), &args);

    println!(
        "M = {M}, ef_construction = {EF_CONSTRUCTION}, k = 10, one thread, queries one at a time"
    );
    for name in &names {
        let dir = data_dir.join(name);
        let mut ref_args = vec![
            dir.display().to_string(),
            M.to_string(),
            EF_CONSTRUCTION.to_string(),
            SEED.to_string(),
        ];
        ref_args.extend(EFS.iter().map(|e| e.to_string()));
        let reference: serde_json::Value = serde_json::from_str(&run_py(
            &py,
            &crate_dir.join("bench/hnswlib_ref.py"),
            &ref_args,
        ))
        .unwrap();

        let (raw, n, dim) = npy(&dir.join("train.npy"));
        let train = f32s(&raw);
        let (raw, nq, _) = npy(&dir.join("test.npy"));
        let test = f32s(&raw);
        let (raw, _, kgt) = npy(&dir.join("neighbors.npy"));
        let truth = i32s(&raw);

        let cfg = HnswConfig {
            m: M,
            ef_construction: EF_CONSTRUCTION,
            ef_search: 10,
            seed: SEED,
        };
        let mut ix = HnswIndex::new(dim, cfg).unwrap();
        let t = Instant::now();
        for (i, v) in train.chunks_exact(dim).enumerate() {
            ix.insert(i as u64, 0, v).unwrap();
        }
        let build = t.elapsed().as_secs_f64();
        let ref_build = reference["build_s"].as_f64().unwrap();
        println!();
        println!("{name}: {n} train x {dim}, {nq} queries");
        println!(
            "  build: ours {build:.2} s ({:.0} inserts/s), hnswlib {ref_build:.2} s ({:.0} inserts/s)",
            n as f64 / build,
            n as f64 / ref_build
        );
        println!(
            "  {:>5} {:>11} {:>10} {:>14} {:>12} {:>12}",
            "ef", "our recall", "our QPS", "hnswlib recall", "hnswlib QPS", "QPS ratio"
        );
        for (i, &ef) in EFS.iter().enumerate() {
            ix.set_ef_search(ef);
            let t = Instant::now();
            let results: Vec<Vec<u64>> = test
                .chunks_exact(dim)
                .map(|q| ix.search(q, 10, &|_| true).iter().map(|h| h.id).collect())
                .collect();
            let secs = t.elapsed().as_secs_f64();
            let mut found = 0usize;
            for (qi, r) in results.iter().enumerate() {
                let g: HashSet<u64> = truth[qi * kgt..qi * kgt + 10]
                    .iter()
                    .map(|&x| x as u64)
                    .collect();
                found += r.iter().filter(|id| g.contains(id)).count();
            }
            let recall = found as f64 / (nq * 10) as f64;
            let qps = nq as f64 / secs;
            let run = &reference["runs"][i];
            let (rr, rq) = (
                run["recall"].as_f64().unwrap(),
                run["qps"].as_f64().unwrap(),
            );
            println!(
                "  {ef:>5} {recall:>11.4} {qps:>10.0} {rr:>14.4} {rq:>12.0} {:>11.2}x",
                qps / rq
            );
        }
    }
}
