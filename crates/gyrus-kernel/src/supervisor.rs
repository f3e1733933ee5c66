//! Runs agents' processes: each in its own process group with a fresh token, its output in
//! `runtime/agents/<id>.log`, restarted on failure with backoff until the start limit.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::registry::{AgentRecord, AgentRegistry, AgentState};
use crate::restart::{Next, RestartState};

/// A log grows to this size before it is rotated to `<id>.log.1` (at the next start).
const LOG_ROTATE_BYTES: u64 = 1024 * 1024;
/// SIGTERM, then this long before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Receives kernel events: a dotted kind such as `kernel.agent.started`, and its data.
pub type EventSink = Arc<dyn Fn(&str, serde_json::Value) + Send + Sync>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Supervises every agent that has a command.
pub struct Supervisor {
    registry: Arc<AgentRegistry>,
    /// What agents reach the API at (`GYRUS_URL`).
    url: String,
    logs: PathBuf,
    events: EventSink,
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("url", &self.url)
            .field("logs", &self.logs)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor whose agents reach the API at `url` and log into `logs`.
    pub fn new(
        registry: Arc<AgentRegistry>,
        url: String,
        logs: PathBuf,
        events: EventSink,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            registry,
            url,
            logs,
            events,
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent's log file.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// The last `max_bytes` of the agent's log (current file only).
    pub fn log_tail(&self, id: &str, max_bytes: u64) -> std::io::Result<String> {
        let mut file = match std::fs::File::open(self.log_path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Starts supervising `agent` if it has a command and is not already supervised.
    pub fn start(self: &Arc<Self>, agent: &AgentRecord) {
        if agent.manifest.command.is_none() {
            return;
        }
        let mut running = self.running();
        if running
            .get(&agent.id)
            .is_some_and(|r| !r.task.is_finished())
        {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.clone().supervise(agent.clone(), stop_rx));
        running.insert(agent.id.clone(), Running { stop, task });
    }

    /// Stops the agent's process (SIGTERM to its group, SIGKILL after a grace period) and
    /// waits until it is gone.
    pub async fn stop(&self, id: &str) {
        let entry = self.running().remove(id);
        if let Some(Running { stop, task }) = entry {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Stops every supervised process (daemon shutdown). Agents stay enabled, so the next
    /// daemon start brings them back.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running().drain().map(|(_, r)| r).collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        for r in all {
            let _ = r.task.await;
        }
    }

    /// At daemon start: kills processes orphaned by a daemon that died without stopping them
    /// (`kill -9`), then starts every enabled agent that has a command.
    pub fn resume(self: &Arc<Self>) -> Result<(), crate::registry::RegistryError> {
        for agent in self.registry.list(false)? {
            if let Some(pid) = agent.pid {
                reap_orphan(pid, &agent.id);
            }
            if agent.manifest.command.is_none() {
                continue;
            }
            if agent.enabled
                && agent.state != AgentState::Failed
                && agent.state != AgentState::Exited
            {
                self.start(&agent);
            } else if agent.state == AgentState::Running || agent.state == AgentState::Backoff {
                self.registry
                    .set_state(&agent.id, AgentState::Stopped, None, None, now())?;
            }
        }
        Ok(())
    }

    fn record(&self, id: &str, state: AgentState, pid: Option<u32>, error: Option<&str>) {
        if let Err(e) = self.registry.set_state(id, state, pid, error, now()) {
            tracing::error!(agent = id, error = %e, "cannot record agent state");
        }
    }

    fn emit(&self, kind: &str, agent: &AgentRecord, extra: serde_json::Value) {
        let mut data = json!({"agent": agent.id, "name": agent.name});
        if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        (self.events)(kind, data);
    }

    async fn supervise(self: Arc<Self>, agent: AgentRecord, mut stop: watch::Receiver<bool>) {
        let Some(command) = agent.manifest.command.clone() else {
            return;
        };
        let policy = agent.manifest.restart;
        let origin = Instant::now();
        let mut restarts = RestartState::default();
        loop {
            if *stop.borrow() {
                break;
            }
            let token = match self.registry.rotate_token(&agent.id) {
                Ok(t) => t,
                Err(e) => {
                    self.record(
                        &agent.id,
                        AgentState::Failed,
                        None,
                        Some(&format!("cannot mint its token: {e}")),
                    );
                    break;
                }
            };
            let log = match LogSink::open(&self.log_path(&agent.id)) {
                Ok(l) => Arc::new(Mutex::new(l)),
                Err(e) => {
                    self.record(
                        &agent.id,
                        AgentState::Failed,
                        None,
                        Some(&format!("cannot open its log: {e}")),
                    );
                    break;
                }
            };
            let mut cmd = tokio::process::Command::new(&command.program);
            cmd.args(&command.args)
                .envs(&command.env)
                .env("GYRUS_URL", &self.url)
                .env("GYRUS_TOKEN", &token)
                .env("GYRUS_AGENT", &agent.name)
                .env("GYRUS_AGENT_ID", &agent.id)
                .stdin(Stdio::null())
                .process_group(0)
                .kill_on_drop(true);
            // Output goes through pipes, so the log can be bounded while the agent runs.
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            if let Some(cwd) = &command.cwd {
                cmd.current_dir(cwd);
            }
            restarts.started(origin.elapsed());
            let started = Instant::now();
            let outcome = match cmd.spawn() {
                Err(e) => Err(format!("cannot start {}: {e}", command.program)),
                Ok(mut child) => {
                    let pid = child.id();
                    let pumps = [
                        child.stdout.take().map(|out| pump(out, log.clone())),
                        child.stderr.take().map(|err| pump(err, log.clone())),
                    ];
                    self.record(&agent.id, AgentState::Running, pid, None);
                    self.emit("kernel.agent.started", &agent, json!({"pid": pid}));
                    let exit = tokio::select! {
                        status = child.wait() => Some(match status {
                            Ok(s) if s.success() => Ok(()),
                            Ok(s) => Err(format!("exited with {s}")),
                            Err(e) => Err(format!("cannot wait for it: {e}")),
                        }),
                        _ = stop.changed() => {
                            terminate(&mut child, pid).await;
                            None
                        }
                    };
                    drain(pumps).await;
                    match exit {
                        Some(result) => result,
                        None => break,
                    }
                }
            };
            let error = outcome.as_ref().err().cloned();
            match restarts.exited(
                &policy,
                outcome.is_ok(),
                started.elapsed(),
                origin.elapsed(),
            ) {
                Next::Stay => {
                    let state = if outcome.is_ok() {
                        AgentState::Exited
                    } else {
                        AgentState::Failed
                    };
                    self.record(&agent.id, state, None, error.as_deref());
                    self.emit(
                        &format!("kernel.agent.{}", state.as_str()),
                        &agent,
                        json!({"error": error}),
                    );
                    return;
                }
                Next::GiveUp { starts } => {
                    let why = format!(
                        "start limit hit: {starts} starts within {} s; last: {}",
                        policy.start_limit_interval_secs,
                        error.as_deref().unwrap_or("exited")
                    );
                    self.record(&agent.id, AgentState::Failed, None, Some(&why));
                    self.emit("kernel.agent.failed", &agent, json!({"error": why}));
                    return;
                }
                Next::RestartAfter(delay) => {
                    self.record(&agent.id, AgentState::Backoff, None, error.as_deref());
                    self.emit(
                        "kernel.agent.backoff",
                        &agent,
                        json!({"error": error, "retry_in_ms": delay.as_millis() as u64}),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        self.record(&agent.id, AgentState::Stopped, None, None);
        self.emit("kernel.agent.stopped", &agent, json!({}));
    }
}

/// An agent's log. Past [`LOG_ROTATE_BYTES`] the file moves to `<id>.log.1` (replacing the
/// older one) and a new one starts, also while the agent runs, so an agent's output never
/// takes more than twice that on disk.
struct LogSink {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl LogSink {
    fn open(path: &Path) -> std::io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::open_file(path)?;
        let size = file.metadata()?.len();
        let mut sink = LogSink {
            path: path.to_path_buf(),
            file,
            size,
        };
        if sink.size > LOG_ROTATE_BYTES {
            sink.rotate()?;
        }
        Ok(sink)
    }

    fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(".1");
        std::fs::rename(&self.path, rotated)?;
        self.file = Self::open_file(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > LOG_ROTATE_BYTES {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Copies one of the agent's output pipes into its log until the pipe closes.
fn pump(
    mut stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<LogSink>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = log.write(&buf[..n]) {
                        tracing::warn!(path = %log.path.display(), error = %e, "cannot write an agent's log");
                    }
                }
            }
        }
    })
}

/// Lets the pumps copy what the process wrote before it ended. A grandchild that inherited the
/// pipes keeps them open, so this waits a moment only, then leaves the pumps running.
async fn drain(pumps: [Option<JoinHandle<()>>; 2]) {
    for pump in pumps.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), pump).await;
    }
}

/// SIGTERM to the whole process group, then SIGKILL if it does not exit in time.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>) {
    let group = pid.and_then(|p| Pid::from_raw(i32::try_from(p).ok()?));
    if let Some(group) = group {
        let _ = kill_process_group(group, Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = child.kill().await;
    }
}

/// Kills the process group led by `pid` if, and only if, that process is still this agent's
/// (its environment names the agent id), so a recycled pid is never hit.
fn reap_orphan(pid: u32, agent_id: &str) {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return;
    };
    let marker = format!("GYRUS_AGENT_ID={agent_id}");
    let ours = environ
        .split(|&b| b == 0)
        .any(|var| var == marker.as_bytes());
    if let Some(group) = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .filter(|_| ours)
    {
        tracing::warn!(
            agent = agent_id,
            pid,
            "killing an agent process left by an earlier daemon"
        );
        let _ = kill_process_group(group, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    type Setup = (
        tempfile::TempDir,
        Arc<AgentRegistry>,
        Arc<Supervisor>,
        AgentRecord,
        Arc<Mutex<Vec<String>>>,
    );

    fn setup(manifest: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(AgentRegistry::open(&dir.path().join("kernel.db")).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: EventSink = {
            let seen = seen.clone();
            Arc::new(move |kind, _| seen.lock().unwrap().push(kind.to_string()))
        };
        let sup = Supervisor::new(
            registry.clone(),
            "http://127.0.0.1:9".into(),
            dir.path().join("agents"),
            sink,
        );
        let agent = registry
            .register(&Manifest::parse(manifest).unwrap(), now())
            .unwrap();
        (dir, registry, sup, agent, seen)
    }

    async fn wait_for(registry: &AgentRegistry, id: &str, state: AgentState) -> AgentRecord {
        for _ in 0..500 {
            let a = registry.get(id).unwrap().unwrap();
            if a.state == state {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "agent never reached {state:?}: {:?}",
            registry.get(id).unwrap()
        );
    }

    #[tokio::test]
    async fn a_running_agent_gets_its_environment_and_stops_on_request() {
        let (_dir, registry, sup, agent, seen) = setup(
            r#"name = "env"
            [command]
            program = "sh"
            args = ["-c", "echo url=$GYRUS_URL agent=$GYRUS_AGENT id=$GYRUS_AGENT_ID token=${GYRUS_TOKEN%%_*}; exec sleep 60"]"#,
        );
        sup.start(&agent);
        let running = wait_for(&registry, &agent.id, AgentState::Running).await;
        assert!(running.pid.is_some());
        let mut log = String::new();
        for _ in 0..200 {
            log = sup.log_tail(&agent.id, 4096).unwrap();
            if log.contains("token=") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            log.trim(),
            format!(
                "url=http://127.0.0.1:9 agent=env id={} token=gyrus",
                agent.id
            )
        );
        sup.stop(&agent.id).await;
        let stopped = registry.get(&agent.id).unwrap().unwrap();
        assert_eq!(stopped.state, AgentState::Stopped);
        let pid = Pid::from_raw(running.pid.unwrap() as i32).unwrap();
        assert!(
            rustix::process::test_kill_process(pid).is_err(),
            "process is gone"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["kernel.agent.started", "kernel.agent.stopped"]
        );
    }

    #[tokio::test]
    async fn a_failing_agent_is_restarted_until_the_start_limit() {
        let (_dir, registry, sup, agent, seen) = setup(
            r#"name = "crashy"
            [command]
            program = "sh"
            args = ["-c", "echo started; exit 3"]
            [restart]
            initial_backoff_ms = 10
            max_backoff_ms = 40
            start_limit_burst = 3
            start_limit_interval_secs = 60"#,
        );
        sup.start(&agent);
        let failed = wait_for(&registry, &agent.id, AgentState::Failed).await;
        assert_eq!(failed.starts, 3);
        let error = failed.last_error.unwrap();
        assert!(
            error.starts_with("start limit hit: 3 starts within 60 s"),
            "{error}"
        );
        assert!(error.contains("exit status: 3"), "{error}");
        assert_eq!(
            sup.log_tail(&agent.id, 4096)
                .unwrap()
                .matches("started")
                .count(),
            3
        );
        let kinds = seen.lock().unwrap().clone();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| *k == "kernel.agent.started")
                .count(),
            3
        );
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("kernel.agent.failed")
        );
    }

    #[tokio::test]
    async fn a_chatty_agent_cannot_grow_its_log_beyond_the_bound_while_it_runs() {
        let (_dir, registry, sup, agent, _) = setup(
            r#"name = "chatty"
            [command]
            program = "sh"
            args = ["-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done; exec sleep 60"]"#,
        );
        sup.start(&agent);
        wait_for(&registry, &agent.id, AgentState::Running).await;
        for _ in 0..500 {
            if sup.log_tail(&agent.id, 64).unwrap().contains("done") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            sup.log_tail(&agent.id, 64).unwrap().contains("done"),
            "the agent's output reached its log"
        );
        let log = sup.log_path(&agent.id);
        let rotated = log.with_extension("log.1");
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(
            size(&log) <= LOG_ROTATE_BYTES,
            "current log: {}",
            size(&log)
        );
        assert!(
            size(&rotated) <= LOG_ROTATE_BYTES,
            "rotated log: {}",
            size(&rotated)
        );
        // 3 MB were written; at most two files' worth is kept.
        assert!(size(&log) + size(&rotated) <= 2 * LOG_ROTATE_BYTES);
        sup.stop(&agent.id).await;
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_with_the_reason() {
        let (_dir, registry, sup, agent, _) = setup(
            r#"name = "ghost"
            [command]
            program = "/nonexistent/agent"
            [restart]
            on_failure = false"#,
        );
        sup.start(&agent);
        let failed = wait_for(&registry, &agent.id, AgentState::Failed).await;
        assert!(
            failed
                .last_error
                .unwrap()
                .contains("cannot start /nonexistent/agent")
        );
    }

    #[tokio::test]
    async fn the_whole_process_group_is_stopped() {
        let (dir, registry, sup, agent, _) = setup(
            r#"name = "forker"
            [command]
            program = "sh"
            args = ["-c", "sleep 60 & echo $! > child.pid; wait"]"#,
        );
        // Run it in the temp dir so child.pid lands there.
        let mut m = agent.manifest.clone();
        if let Some(c) = m.command.as_mut() {
            c.cwd = Some(dir.path().to_path_buf());
        }
        let agent = AgentRecord {
            manifest: m,
            ..agent
        };
        sup.start(&agent);
        wait_for(&registry, &agent.id, AgentState::Running).await;
        let pid_file = dir.path().join("child.pid");
        let mut grandchild = None;
        for _ in 0..200 {
            if let Some(p) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                grandchild = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grandchild = Pid::from_raw(grandchild.unwrap()).unwrap();
        sup.stop(&agent.id).await;
        // It is reparented, not our child: once killed it may linger as a zombie until
        // whoever adopted it reaps it, so a zombie counts as gone.
        let gone = || {
            rustix::process::test_kill_process(grandchild).is_err()
                || std::fs::read_to_string(format!("/proc/{}/stat", grandchild.as_raw_nonzero()))
                    .ok()
                    .and_then(|stat| {
                        stat.rsplit_once(") ")
                            .map(|(_, rest)| rest.starts_with('Z'))
                    })
                    .unwrap_or(true)
        };
        for _ in 0..100 {
            if gone() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the grandchild outlived its agent");
    }
}
