//! The daemon's side: start the launcher, feed it stdin, read its result, and kill it if it
//! outlives its timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::policy::{self, Capture};
use super::{LAUNCHER_ARG, LauncherMessage, SandboxOutcome, SandboxSpec};
use crate::spec::ToolError;

/// How long past the command's timeout the launcher has to kill it and report.
const GRACE: Duration = Duration::from_secs(5);
/// The most of the launcher's own stderr kept for error messages.
const LAUNCHER_STDERR: usize = 16 << 10;

/// Runs `program` with `args` in a sandbox built from `spec`, by starting `launcher`
/// (the `gyrus` binary) as `launcher __sandbox-exec SPEC -- PROGRAM ARGS…` in a process
/// group of its own. `stdin`, if given, is the command's whole standard input (otherwise
/// it reads `/dev/null`). Blocking.
///
/// Errors: [`ToolError::Unavailable`] when the kernel lacks a sandbox layer and
/// `spec.allow_unsandboxed` is off, or the launcher cannot start; [`ToolError::Failed`] when
/// the command cannot start; [`ToolError::Timeout`] when even the launcher had to be
/// killed. A command that runs and fails, or is killed for its timeout, is an `Ok` outcome.
pub fn run(
    launcher: &Path,
    spec: &SandboxSpec,
    program: &Path,
    args: &[String],
    stdin: Option<&[u8]>,
) -> Result<SandboxOutcome, ToolError> {
    if let Some(problem) = policy::spec_problem(spec) {
        return Err(ToolError::InvalidArgs(problem));
    }
    let json = serde_json::to_string(spec).map_err(ToolError::internal)?;
    let mut child = Command::new(launcher)
        .arg(LAUNCHER_ARG)
        .arg(json)
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ToolError::Unavailable(format!(
                "cannot start the sandbox launcher {}: {e}",
                launcher.display()
            ))
        })?;
    let writer = match (child.stdin.take(), stdin) {
        (Some(mut pipe), Some(data)) => {
            let data = data.to_vec();
            // A command that does not read all of it closes the pipe; that is its business.
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let started_pid = Arc::new(AtomicI32::new(0));
    // The outcome holds both outputs, each escaped as JSON; leave room for that.
    let result_limit = spec
        .max_output_bytes
        .saturating_mul(12)
        .saturating_add(64 << 10);
    let messages = child
        .stdout
        .take()
        .map(|out| read_messages(out, result_limit, Arc::clone(&started_pid)));
    let launcher_err = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut c = Capture::new(LAUNCHER_STDERR);
            let mut buf = [0u8; 4096];
            let mut err = err;
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                c.push(&buf[..n]);
            }
            c.finish().0
        })
    });

    let deadline = Instant::now() + Duration::from_millis(spec.timeout_ms) + GRACE;
    let mut backstop = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() >= deadline {
            backstop = true;
            kill_everything(child.id(), started_pid.load(Ordering::SeqCst));
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let message = messages.and_then(|m| m.join().ok()).flatten();
    let launcher_err = launcher_err.and_then(|e| e.join().ok()).unwrap_or_default();
    match message {
        Some(LauncherMessage::Done(outcome)) => Ok(outcome),
        Some(LauncherMessage::Refused { message }) => Err(ToolError::Unavailable(message)),
        Some(LauncherMessage::Failed { message }) => Err(ToolError::Failed(message)),
        Some(LauncherMessage::Started { .. }) | None if backstop => {
            Err(ToolError::Timeout(spec.timeout_ms))
        }
        Some(LauncherMessage::Started { .. }) | None => {
            let status = status.map_or_else(|| "an unknown status".to_string(), |s| s.to_string());
            Err(ToolError::Internal(format!(
                "the sandbox launcher ended ({status}) without a result: {}",
                launcher_err.trim()
            )))
        }
    }
}

/// Reads the launcher's JSON lines; remembers the command's pid; returns the last result.
fn read_messages(
    out: impl Read + Send + 'static,
    limit: usize,
    started_pid: Arc<AtomicI32>,
) -> JoinHandle<Option<LauncherMessage>> {
    std::thread::spawn(move || {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let mut reader = BufReader::new(out.take(limit));
        let mut last = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            match serde_json::from_slice::<LauncherMessage>(&line) {
                Ok(LauncherMessage::Started { pid }) => started_pid.store(pid, Ordering::SeqCst),
                Ok(message) => last = Some(message),
                Err(_) => {}
            }
        }
        // Drain whatever is left past the limit so the launcher never blocks on us.
        let _ = std::io::copy(reader.get_mut().get_mut(), &mut std::io::sink());
        last
    })
}

/// The last resort: SIGKILL the launcher's process group and the command (PID 1 of the
/// sandbox's PID namespace: killing it kills everything in it).
fn kill_everything(launcher: u32, command: i32) {
    if let Some(pgid) = i32::try_from(launcher).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
    if let Some(pid) = Pid::from_raw(command) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}
