//! Repository automation, run as `cargo xtask <task>`.
//!
//! - `test`: installs what the test suite needs, then runs all of it: `cargo fmt --check`,
//!   `cargo clippy -D warnings`, `cargo deny` (bans, licences, sources) and every test. This is
//!   the README's test command and exactly what CI (`.ci/run`) runs. Then the official MCP
//!   conformance suite against a real daemon's `/mcp` (`conformance.rs`).
//! - `bench`: every benchmark: daemon startup, audit appends and verify, IPC, policy decisions,
//!   tool calls, hooks, the vector index, memory queries, the scheduler, the embedded cortex,
//!   routing quality.
//! - `deps`: only the installation step.
//! - `fetch-models`: only the test models (the embedded cortex's SmolLM2 GGUF), into
//!   `.cache/models/`, so `cargo test -p gyrus-cortex` finds them, and the `openai` Python
//!   client into `.cache/python/`, so `cargo test -p gyrus-cli --test gateway` finds it.

mod conformance;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

fn main() -> std::process::ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "bench" => bench(),
        "deps" => tools::install(&root()).map(|_| ()),
        "fetch-models" => tools::fetch_models(&root())
            .and_then(|_| tools::fetch_python(&root()))
            .map(|_| ()),
        "conformance" => conformance_only(),
        _ => {
            eprintln!("usage: cargo xtask <test|bench|deps|fetch-models|conformance>");
            eprintln!("  test   install test dependencies, then fmt, clippy, deny and every test");
            eprintln!("  bench  every benchmark (see BENCHES in xtask/src/main.rs)");
            eprintln!("  deps   only install test dependencies");
            eprintln!(
                "  fetch-models  only download the test models (and the openai Python client)"
            );
            eprintln!("  conformance  only the MCP conformance suite against a real daemon");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// cargo for one whole-workspace build rather than an edit loop: without incremental state,
/// which would only add gigabytes to target/, unless the caller asked for it.
fn full_build() -> Command {
    let mut command = cargo();
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        command.env("CARGO_INCREMENTAL", "0");
    }
    command
}

/// Runs one step, echoing it first, and fails with its name if it fails.
fn step(name: &str, mut command: Command) -> anyhow::Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    let status = command
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {name}"))?;
    if !status.success() {
        // A build that dies for want of disk says so only deep in its log; say how much is left.
        let _ = Command::new("df")
            .args(["-h", "."])
            .current_dir(root())
            .status();
        bail!("{name} failed ({status})");
    }
    println!("==> {name}: ok in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn test() -> anyhow::Result<()> {
    let root = root();
    let tools = tools::install(&root)?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("cargo fmt --check", fmt)?;

    let mut clippy = full_build();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    step("cargo clippy -D warnings", clippy)?;

    // cargo-deny reads the metadata of every package in Cargo.lock, for every platform;
    // a build downloads only this platform's, so fetch the rest first (registries only).
    let mut fetch = cargo();
    fetch.args(["fetch", "--locked"]);
    step("cargo fetch", fetch)?;

    let mut deny = Command::new(&tools.cargo_deny);
    deny.args(["--offline", "check", "bans", "licenses", "sources"]);
    step("cargo deny check bans licenses sources", deny)?;

    let mut test = full_build();
    test.args(["test", "--workspace", "--locked"]);
    // The gateway test runs the official openai Python client from here.
    test.env("GYRUS_PYTHONPATH", &tools.python_path);
    step("cargo test --workspace", test)?;

    // The official MCP conformance suite against a real daemon's /mcp: the binary the
    // integration tests just ran (building it again without dev-dependencies' features would
    // recompile much of the tree for nothing).
    let gyrus = target_dir().join("debug/gyrus");
    if !gyrus.is_file() {
        anyhow::bail!("cargo test did not leave {}", gyrus.display());
    }
    conformance::run(&root, &gyrus)?;
    Ok(())
}

/// `cargo xtask conformance`: builds gyrus and runs only the MCP conformance suite.
fn conformance_only() -> anyhow::Result<()> {
    let mut build = cargo();
    build.args(["build", "-p", "gyrus-cli", "--bin", "gyrus", "--locked"]);
    step("cargo build gyrus", build)?;
    conformance::run(&root(), &target_dir().join("debug/gyrus"))
}

/// Where cargo puts what it builds.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// (package, bench target, what it measures)
const BENCHES: [(&str, &str, &str); 12] = [
    (
        "gyrus-cli",
        "startup",
        "daemon startup: exec to ready, idle RSS",
    ),
    (
        "gyrus-audit",
        "audit",
        "audit appends (single, batched) and verify of 1M entries",
    ),
    (
        "gyrus-bus",
        "bus",
        "in-process IPC, request/reply, durable mailboxes",
    ),
    (
        "gyrus-policy",
        "decide",
        "consent decisions with 1,000 grants and 100 policies",
    ),
    (
        "gyrus-tools",
        "call",
        "tool call overhead (decision, audit, undo) around fs.read",
    ),
    (
        "gyrus-cli",
        "hook",
        "`gyrus hook claude` PreToolUse end to end, process start included",
    ),
    (
        "gyrus-memory",
        "ann",
        "vector index recall@10 and QPS against hnswlib (ANN-Benchmarks random-angular sets)",
    ),
    (
        "gyrus-memory",
        "memory",
        "memory store throughput and MemoryQuery latency at 100k items",
    ),
    (
        "gyrus-kernel",
        "scheduler",
        "model-call scheduler: interactive wait under a background flood, against FIFO",
    ),
    (
        "gyrus-cortex",
        "local",
        "embedded cortex (SmolLM2-135M GGUF): load, prompt and generation tokens/s",
    ),
    (
        "gyrus-cli",
        "gateway",
        "OpenAI gateway overhead: /v1/chat/completions against the scripted server directly",
    ),
    (
        "gyrus-cortex",
        "routellm",
        "router tier prediction on RouteLLM data: APGR and CPT against random and the oracle",
    ),
];

fn bench() -> anyhow::Result<()> {
    for (package, target, what) in BENCHES {
        let mut bench = cargo();
        bench.args(["bench", "-p", package, "--bench", target, "--locked"]);
        step(what, bench)?;
    }
    Ok(())
}
