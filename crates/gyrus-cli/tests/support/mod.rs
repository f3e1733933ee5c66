//! Test harness: the real `gyrus` binary on a temporary home and a free port, and a raw
//! HTTP/1.1 client that can send what real clients would not (bad Host headers, oversized
//! chunked bodies).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const GYRUS: &str = env!("CARGO_BIN_EXE_gyrus");

/// How long a daemon may take to come up before the test gives up (a hang guard, not a
/// performance assertion: startup speed is measured by `benches/startup.rs`).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A `gyrus` command with a clean environment: no inherited GYRUS_* variables.
pub fn gyrus(home: &Path) -> Command {
    let mut cmd = Command::new(GYRUS);
    cmd.arg("--home")
        .arg(home)
        .env_remove("GYRUS_URL")
        .env_remove("GYRUS_TOKEN")
        .env_remove("GYRUS_HOME")
        .env_remove("GYRUS_LOG")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

/// The stdout of a command that must have succeeded (else the test fails with its stderr).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running daemon; killed on drop if still alive.
pub struct Daemon {
    pub child: Child,
    pub home: PathBuf,
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut out = into.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    })
}

impl Daemon {
    /// Starts `gyrus up` on `home` with port 0, after writing `config` (if any) as
    /// user/gyrus.toml, and waits until it serves.
    pub fn start(home: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        if let Some(config) = config {
            std::fs::create_dir_all(home.join("user")).unwrap();
            std::fs::write(home.join("user/gyrus.toml"), config).unwrap();
        }
        let mut cmd = gyrus(home);
        cmd.args(["up", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), output.clone()),
            collect(child.stderr.take().unwrap(), output.clone()),
        ];
        let deadline = Instant::now() + START_DEADLINE;
        let addr = loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("gyrus up exited with {status}:\n{}", output.lock().unwrap());
            }
            // The banner is printed once both the TCP listener and the socket serve.
            let banner = output.lock().unwrap().clone();
            if let Some(addr) = banner
                .lines()
                .find_map(|l| l.trim().strip_prefix("http    http://"))
                .and_then(|rest| rest.split_whitespace().next())
            {
                break addr.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "gyrus up did not become ready:\n{banner}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let listen: SocketAddr = std::fs::read_to_string(home.join("runtime/listen"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(listen, addr, "runtime/listen names the bound address");
        Daemon {
            child,
            home: home.to_path_buf(),
            addr,
            output,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a client command against this daemon's home.
    pub fn cli(&self, args: &[&str]) -> Output {
        gyrus(&self.home).args(args).output().unwrap()
    }

    /// [`Daemon::cli`] with extra environment variables.
    #[allow(dead_code)]
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = gyrus(&self.home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    }

    /// `gyrus token create NAME --json`, returning the secret.
    pub fn create_token(&self, name: &str) -> String {
        let out = self.cli(&["token", "create", name, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["secret"].as_str().unwrap().to_string()
    }

    /// A raw request over TCP; `head` is the request line and headers without the final
    /// blank line (Host and Connection are added unless present).
    pub fn tcp(&self, head: &str, body: &[u8]) -> Response {
        let stream = TcpStream::connect(self.addr).unwrap();
        exchange(stream, &with_defaults(head, &self.addr.to_string()), body)
    }

    /// A raw request over the Unix socket (as the owner).
    pub fn unix(&self, head: &str, body: &[u8]) -> Response {
        let stream = UnixStream::connect(self.home.join("runtime/gyrus.sock")).unwrap();
        exchange(stream, &with_defaults(head, "localhost"), body)
    }

    /// `GET path` over TCP with a bearer token.
    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
        self.tcp(&format!("GET {path} HTTP/1.1{auth}"), b"")
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit (hang guard: 60 s) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gyrus did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the daemon printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_defaults(head: &str, host: &str) -> String {
    let mut head = head.to_string();
    if !head.to_ascii_lowercase().contains("\r\nhost:") {
        head.push_str(&format!("\r\nHost: {host}"));
    }
    head.push_str("\r\nConnection: close\r\n\r\n");
    head
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// `error.code` of a uniform error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn exchange(mut stream: impl Read + Write, head: &str, body: &[u8]) -> Response {
    // The server may answer (413) and close before reading the whole body: ignore write errors
    // and read what it said.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}
