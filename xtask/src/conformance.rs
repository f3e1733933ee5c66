//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, from npm) against
//! a real daemon's `/mcp`.
//!
//! The suite is installed pinned into `.cache/tools/conformance/`. A `gyrus up` starts on a
//! temporary home and a loopback port, a device token is minted, and the suite's server
//! scenarios run against `/mcp`. The run fails only on regressions: every scenario listed in
//! `xtask/conformance-passing.txt` must pass. Scenarios that pass but are not listed are
//! printed, to be added.
//!
//! The suite cannot send a bearer token (its client takes a URL and nothing else), and `/mcp`
//! needs one like every route. Rather than open a hole in the daemon's authentication, the
//! suite talks to a small loopback proxy here that adds `Authorization: Bearer <token>` to
//! each request and passes everything else through unchanged (Host and Origin included, so
//! the DNS-rebinding scenario meets the real guard).
//!
//! `GYRUS_SKIP_CONFORMANCE=1` skips it for local iteration; it is refused under CI.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The suite, pinned. 0.1.13 is the newest release that runs on Node 20: 0.1.14 and later
/// import `fs.globSync`, which only Node 22 has.
const PACKAGE: &str = "@modelcontextprotocol/conformance";
const VERSION: &str = "0.1.13";

/// The scenarios that pass today, one per line (`#` starts a comment).
const PASSING: &str = "xtask/conformance-passing.txt";

/// Set to skip the suite while iterating locally. Never honoured in CI.
const SKIP_VAR: &str = "GYRUS_SKIP_CONFORMANCE";

/// The suite's own per-run limit is 30 s a scenario; this is a hang guard for all of them.
const SUITE_DEADLINE: Duration = Duration::from_secs(20 * 60);

pub fn run(root: &Path, gyrus: &Path) -> anyhow::Result<()> {
    println!("==> MCP conformance ({PACKAGE}@{VERSION}) against /mcp");
    if std::env::var_os(SKIP_VAR).is_some_and(|v| !v.is_empty()) {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            bail!(
                "{SKIP_VAR} is for local iteration only; CI always runs the MCP conformance suite"
            );
        }
        println!("==> MCP conformance: skipped ({SKIP_VAR} is set)");
        return Ok(());
    }
    let start = Instant::now();
    let cli = install(root)?;
    let expected = passing(root)?;
    let all = scenarios(&cli)?;

    let work = std::env::temp_dir().join(format!("gyrus-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let outcome = (|| {
        let daemon = Daemon::start(gyrus, &work.join("home"))?;
        let token = daemon.token("conformance")?;
        let proxy = proxy(daemon.addr, token)?;
        let results = work.join("results");
        suite(&cli, &format!("http://{proxy}/mcp"), &results)?;
        let (ran, passed) = read_results(&results, &all)?;
        Ok::<_, anyhow::Error>((ran, passed, daemon))
    })();
    let (ran, passed, daemon) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    drop(daemon);
    let _ = std::fs::remove_dir_all(&work);

    let failed: Vec<&String> = ran.iter().filter(|s| !passed.contains(*s)).collect();
    println!("==> MCP conformance summary (the active suite):");
    for s in &ran {
        println!(
            "    {} {s}",
            if passed.contains(s) { "pass" } else { "FAIL" }
        );
    }
    println!(
        "==> MCP conformance: {} of {} scenarios pass; the {} others exercise the suite's own test tools or capabilities gyrus does not offer (resources, prompts, logging, completion)",
        passed.len(),
        ran.len(),
        failed.len()
    );
    let new: Vec<&String> = passed.iter().filter(|s| !expected.contains(*s)).collect();
    if !new.is_empty() {
        println!(
            "==> newly passing (add to {PASSING}): {}",
            new.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let regressed: Vec<&String> = expected.iter().filter(|s| !passed.contains(*s)).collect();
    if !regressed.is_empty() {
        bail!(
            "MCP conformance regressed: {} passed before and fail now (listed in {PASSING})",
            regressed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "==> MCP conformance: ok in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `npm install --prefix .cache/tools/conformance PACKAGE@VERSION`, unless that version is
/// already there. Returns the suite's entry point.
fn install(root: &Path) -> anyhow::Result<PathBuf> {
    let prefix = root.join(".cache/tools/conformance");
    let package = prefix.join("node_modules").join(PACKAGE);
    let cli = package.join("dist/index.js");
    let installed = std::fs::read_to_string(package.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if installed.as_deref() == Some(VERSION) && cli.is_file() {
        return Ok(cli);
    }
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    let spec = format!("{PACKAGE}@{VERSION}");
    if Command::new("npm").arg("--version").output().is_err() {
        // A fresh Debian machine may lack Node; its packages are enough to run the suite.
        println!("==> npm is missing: apt-get install nodejs npm");
        for args in [
            &["update", "-q"][..],
            &["install", "-y", "-q", "nodejs", "npm"][..],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .status()
                .context("cannot run apt-get to install Node.js; install nodejs and npm")?;
            if !status.success() {
                bail!(
                    "apt-get {} failed ({status}); install nodejs and npm",
                    args.join(" ")
                );
            }
        }
    }
    println!("==> npm install --prefix {} {spec}", prefix.display());
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--save-exact",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(&spec)
        .status()
        .context("cannot run npm (Node 20 and npm are needed for the MCP conformance suite)")?;
    if !status.success() {
        bail!("npm install {spec} failed ({status})");
    }
    if !cli.is_file() {
        bail!("{spec} installed, but {} is missing", cli.display());
    }
    Ok(cli)
}

/// The scenarios expected to pass.
fn passing(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let path = root.join(PASSING);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Every server scenario of the active suite, as `conformance list --server` names them.
fn scenarios(cli: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("node")
        .arg(cli)
        .args(["list", "--server"])
        .output()
        .context("cannot run node")?;
    if !out.status.success() {
        bail!(
            "conformance list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(str::to_string)
        .collect())
}

/// Runs the active suite, printing its report. Its exit code is not the verdict (it fails on
/// any failing scenario); [`read_results`] and the passing list are.
fn suite(cli: &Path, url: &str, results: &Path) -> anyhow::Result<()> {
    let mut child = Command::new("node")
        .arg(cli)
        .args(["server", "--url", url, "--output-dir"])
        .arg(results)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run node")?;
    let deadline = Instant::now() + SUITE_DEADLINE;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the conformance suite did not finish within {} s",
                SUITE_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scenarios that ran, and those whose checks all passed: each wrote
/// `server-<scenario>-<timestamp>/checks.json`, and a scenario passes when it has checks and
/// none of them is a `FAILURE` (a `WARNING` is not a failure).
fn read_results(
    results: &Path,
    all: &[String],
) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut ran, mut passed) = (BTreeSet::new(), BTreeSet::new());
    let entries = std::fs::read_dir(results)
        .with_context(|| format!("the suite wrote no results to {}", results.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        // The timestamp is ISO 8601 with `:` and `.` made `-`: 24 characters.
        let Some(scenario) = all.iter().find(|s| {
            name.strip_prefix(&format!("server-{s}-"))
                .is_some_and(|stamp| {
                    stamp.len() == 24 && stamp.starts_with(|c: char| c.is_ascii_digit())
                })
        }) else {
            continue;
        };
        ran.insert(scenario.clone());
        let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
            continue;
        };
        let checks: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(checks) = checks.as_array() else {
            continue;
        };
        if !checks.is_empty() && checks.iter().all(|c| c["status"] != "FAILURE") {
            passed.insert(scenario.clone());
        }
    }
    Ok((ran, passed))
}

/// A `gyrus up` on a temporary home and a free loopback port; stopped on drop.
struct Daemon {
    child: Child,
    gyrus: PathBuf,
    home: PathBuf,
    addr: SocketAddr,
}

fn gyrus_command(gyrus: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(gyrus);
    cmd.arg("--home")
        .arg(home)
        .env_remove("GYRUS_URL")
        .env_remove("GYRUS_TOKEN")
        .env_remove("GYRUS_HOME")
        .env("GYRUS_LOG", "warn")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

impl Daemon {
    fn start(gyrus: &Path, home: &Path) -> anyhow::Result<Daemon> {
        let mut child = gyrus_command(gyrus, home)
            .args(["up", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", gyrus.display()))?;
        let banner = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let banner = banner.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut b) = banner.lock() {
                        b.push_str(&line);
                        b.push('\n');
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Some(status) = child.try_wait()? {
                bail!("gyrus up exited with {status}");
            }
            let text = banner.lock().map(|b| b.clone()).unwrap_or_default();
            // The banner's `http` line is printed once both listeners serve.
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("http    http://"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
            {
                break addr;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("gyrus up did not become ready within 60 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Daemon {
            child,
            gyrus: gyrus.to_path_buf(),
            home: home.to_path_buf(),
            addr,
        })
    }

    /// Mints a device token and returns its secret.
    fn token(&self, name: &str) -> anyhow::Result<String> {
        let out = gyrus_command(&self.gyrus, &self.home)
            .args(["token", "create", name, "--json"])
            .output()?;
        if !out.status.success() {
            bail!(
                "gyrus token create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v["secret"]
            .as_str()
            .map(str::to_string)
            .context("gyrus token create printed no secret")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM for a clean stop; SIGKILL if it takes longer than the grace period.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback proxy to `upstream` that sets `Authorization: Bearer <token>` on every request.
/// Each connection carries one request (`Connection: close` is sent upstream), so each request
/// head is seen and rewritten; everything else passes through byte for byte.
fn proxy(upstream: SocketAddr, token: String) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the auth proxy")?;
    let addr = listener.local_addr()?;
    let token = Arc::new(token);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let token = token.clone();
            std::thread::spawn(move || {
                let _ = forward(client, upstream, &token);
            });
        }
    });
    Ok(addr)
}

fn forward(mut client: TcpStream, upstream: SocketAddr, token: &str) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buffer.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
    let mut lines = head.split("\r\n");
    let mut rewritten = String::from(lines.next().unwrap_or_default());
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        if ["authorization", "connection", "keep-alive"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        rewritten.push_str("\r\n");
        rewritten.push_str(line);
    }
    rewritten.push_str(&format!(
        "\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ));
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(rewritten.as_bytes())?;
    server.write_all(&buffer[end + 4..])?;
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    let upload = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = upload.join();
    Ok(())
}
