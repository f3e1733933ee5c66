//! The overhead of a tool call: `fs.read` of a 1 KiB file through `Tools::call` (schema
//! check, path resolution, consent decision, decision and outcome entries in the audit
//! trail) against the same read done directly, measured in interleaved rounds in the same
//! run. Target: overhead p50 <= 200 µs.
//!
//! The audit trail commits every entry with `synchronous=FULL` and signs a checkpoint
//! after each commit, so on a real disk the call is bound by two fsyncs; the benchmark
//! runs once with the home on the disk (`$TMPDIR`) and once on tmpfs (`/dev/shm`), where
//! fsync is free, to show the CPU cost apart from the disk's.
//! `cargo bench -p gyrus-tools --bench call` runs 400 calls per home; without `--bench`
//! (e.g. `cargo test --benches`) it runs 20.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use gyrus_home::Home;
use gyrus_policy::{IntentSource, Principal};
use gyrus_tools::{ToolCall, ToolEnv};
use serde_json::json;

const TARGET_P50: Duration = Duration::from_micros(200);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn run(base: &Path, label: &str, calls: usize) {
    let dir = tempfile::tempdir_in(base).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap_or_else(|e| panic!("home: {e}"));
    let kernel = gyrus_kernel::Kernel::open(&home, "http://127.0.0.1:1".into())
        .unwrap_or_else(|e| panic!("kernel: {e}"));
    let tools = gyrus_tools::builtin(ToolEnv::new(home)).unwrap_or_else(|e| panic!("tools: {e}"));
    let file = dir.path().join("small.txt");
    std::fs::write(&file, vec![b'x'; 1024]).unwrap_or_else(|e| panic!("file: {e}"));
    let call = ToolCall {
        principal: Principal::Owner { uid: 1000 },
        tool: "fs.read".into(),
        args: json!({"path": file.display().to_string()}),
        intent: "benchmark".into(),
        intent_source: IntentSource::Owner,
        plan_id: None,
    };
    // Warm up: page cache, SQLite statements, Cedar.
    for _ in 0..5 {
        black_box(
            tools
                .call(&kernel, &call)
                .unwrap_or_else(|e| panic!("call: {e}")),
        );
    }
    let (mut direct, mut total, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..calls {
        let t = Instant::now();
        black_box(std::fs::read(&file).unwrap_or_else(|e| panic!("read: {e}")));
        let d = t.elapsed();
        let t = Instant::now();
        let r = tools
            .call(&kernel, &call)
            .unwrap_or_else(|e| panic!("call: {e}"));
        let c = t.elapsed();
        assert!(r.is_ok(), "{r:?}");
        direct.push(d);
        total.push(c);
        overhead.push(c.saturating_sub(d));
    }
    // Where the time goes: one audit append alone (a call makes two: decision, outcome).
    let mut append = Vec::new();
    for i in 0..calls.min(100) {
        let t = Instant::now();
        kernel
            .record(gyrus_audit::NewEntry {
                request_id: format!("req_bench{i}"),
                principal: "owner".into(),
                action: "bench.append".into(),
                resource: "bench:x".into(),
                ..gyrus_audit::NewEntry::default()
            })
            .unwrap_or_else(|e| panic!("append: {e}"));
        append.push(t.elapsed());
    }
    append.sort();
    for v in [&mut direct, &mut total, &mut overhead] {
        v.sort();
    }
    let p50 = pct(&overhead, 0.5);
    println!(
        "{label:>5}: direct read p50 {:>8.1} µs | tool call p50 {:>8.1} µs p99 {:>8.1} µs | overhead p50 {:>8.1} µs p99 {:>8.1} µs (target p50 <= {} µs: {})",
        us(pct(&direct, 0.5)),
        us(pct(&total, 0.5)),
        us(pct(&total, 0.99)),
        us(p50),
        us(pct(&overhead, 0.99)),
        TARGET_P50.as_micros(),
        if p50 <= TARGET_P50 { "met" } else { "MISSED" }
    );
    println!(
        "{label:>5}: of which one audit append (commit, hash chain, signed checkpoint) p50 {:>8.1} µs; a call makes two",
        us(pct(&append, 0.5))
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let calls = if full { 400 } else { 20 };
    println!("tool call overhead around fs.read of 1 KiB, {calls} interleaved rounds per home");
    run(&std::env::temp_dir(), "disk", calls);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        run(shm, "tmpfs", calls);
    } else {
        println!("tmpfs: /dev/shm is missing; skipped");
    }
}
