//! Startup benchmark: time from exec to ready, and idle RSS, of `gyrus up`.
//!
//! "Ready" is the daemon's own `READY=1` on `NOTIFY_SOCKET` (the systemd protocol), sent once
//! the HTTP listener and the Unix socket serve, so no polling blurs the number. The reference,
//! measured in the same run on the same machine, is the exec floor: `gyrus --version`, the
//! same binary doing nothing. Targets (issue 2): ready ≤ 50 ms, idle RSS ≤ 30 MB.
//!
//! Run with `cargo bench -p gyrus-cli --bench startup` (or `cargo xtask bench`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GYRUS: &str = env!("CARGO_BIN_EXE_gyrus");
const RUNS: usize = 30;

struct Sample {
    ready: Duration,
    rss_kib: u64,
    shutdown: Duration,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn start_once(home: &std::path::Path, scratch: &std::path::Path) -> Sample {
    let notify = scratch.join("notify.sock");
    let _ = std::fs::remove_file(&notify);
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let start = Instant::now();
    let mut child = Command::new(GYRUS)
        .args(["up", "--listen", "127.0.0.1:0", "--home"])
        .arg(home)
        .env("NOTIFY_SOCKET", &notify)
        .env("GYRUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = socket.recv(&mut buf).expect("no READY=1 from gyrus up");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    let ready = start.elapsed();

    // Idle: let start-up allocations settle, then read the resident set.
    std::thread::sleep(Duration::from_millis(300));
    let rss_kib = status_kib(child.id(), "VmRSS:");

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let stop = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "gyrus up exited with {status}");
    Sample {
        ready,
        rss_kib,
        shutdown: stop.elapsed(),
    }
}

fn exec_floor() -> Duration {
    let start = Instant::now();
    let status = Command::new(GYRUS)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, mut values: Vec<Duration>) -> Duration {
    values.sort();
    let median = percentile(&values, 0.5);
    println!(
        "{name:<28} median {:>7.2} ms   p90 {:>7.2} ms   min {:>7.2} ms",
        ms(median),
        ms(percentile(&values, 0.9)),
        ms(values[0])
    );
    median
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { RUNS };
    let scratch = tempfile::tempdir().unwrap();

    let floor: Vec<Duration> = (0..runs).map(|_| exec_floor()).collect();

    let mut cold = Vec::new();
    for i in 0..runs {
        let home = scratch.path().join(format!("cold-{i}"));
        cold.push(start_once(&home, scratch.path()));
    }
    let warm_home = scratch.path().join("warm");
    start_once(&warm_home, scratch.path());
    let warm: Vec<Sample> = (0..runs)
        .map(|_| start_once(&warm_home, scratch.path()))
        .collect();

    println!(
        "gyrus startup benchmark: {runs} runs each, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let floor_median = report("exec floor (--version)", floor);
    let cold_median = report("ready, new home", cold.iter().map(|s| s.ready).collect());
    let warm_median = report(
        "ready, existing home",
        warm.iter().map(|s| s.ready).collect(),
    );
    report("SIGTERM to exit", warm.iter().map(|s| s.shutdown).collect());
    let mut rss: Vec<u64> = warm.iter().chain(&cold).map(|s| s.rss_kib).collect();
    rss.sort();
    let rss_median = rss[rss.len() / 2];
    println!(
        "{:<28} median {:>7.1} MiB  max {:>7.1} MiB",
        "idle RSS",
        rss_median as f64 / 1024.0,
        rss[rss.len() - 1] as f64 / 1024.0
    );
    println!(
        "ratio to exec floor: new home {:.1}x, existing home {:.1}x",
        cold_median.as_secs_f64() / floor_median.as_secs_f64(),
        warm_median.as_secs_f64() / floor_median.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: ready <= 50 ms {} ({:.2} ms, new home); idle RSS <= 30 MB {} ({:.1} MB)",
        verdict(ms(cold_median) <= 50.0),
        ms(cold_median),
        verdict(rss_median as f64 * 1024.0 <= 30e6),
        rss_median as f64 * 1024.0 / 1e6
    );
}
