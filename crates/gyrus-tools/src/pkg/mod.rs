//! `pkg.search`, `pkg.install` and `pkg.remove`, through Debian's apt.
//!
//! Every install or removal is planned first with `apt-get -s` (a simulation, which needs no
//! root and changes nothing) and the plan is returned; only with `dry_run: false` does apt
//! run for real, and only when the plan does exactly what the broker allowed:
//!
//! - an install that would remove any package is refused (remove them with `pkg.remove`,
//!   which needs its own grant), and runs with `--no-remove` as a backstop;
//! - a removal that would take other packages with it is refused until the call names them
//!   all, so that each one was decided; a removal plan that installs anything is refused.
//!
//! Package names are checked strictly, and apt is told to read them as names only
//! (`APT::Cmd::Pattern-Only`: no regular expressions), so `lib.` cannot select a hundred
//! packages. apt also reads a trailing `+` or `-` on an unknown name as "install" or
//! "remove"; names ending in `-` are refused, and the plan checks above catch the rest.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::env::ToolEnv;
use crate::registry::Tools;
use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};

pub mod plan;

use plan::parse_packages;
pub use plan::{
    MAX_PACKAGES, PackageSpec, PlanStep, StepAction, install_problem, parse_package, parse_plan,
    remove_problem,
};

/// The resource of `pkg.search`: the apt package database.
pub const APT_RESOURCE: &str = "pkg:apt";
/// The most bytes kept of a real run's output (its last part).
pub const OUTPUT_TAIL_BYTES: usize = 16 << 10;
/// The most bytes of a simulation read for its plan.
const PLAN_BYTES: usize = 8 << 20;

/// Registers `pkg.search`, `pkg.install` and `pkg.remove`, using the system's apt.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(Search { apt: Apt::system() }));
    tools.register(Typed::new(Install { apt: Apt::system() }));
    tools.register(Typed::new(Remove { apt: Apt::system() }));
}

/// Where apt's programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    /// The system's apt, in `/usr/bin`.
    pub fn system() -> Apt {
        Apt::at("/usr/bin")
    }

    /// apt's programs (`apt-get`, `apt-cache`) in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Apt {
        Apt { dir: dir.into() }
    }

    fn program(&self, name: &str) -> Result<PathBuf, ToolError> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ToolError::Unavailable(format!(
                "{} is not installed; the pkg tools support Debian and Ubuntu's apt only",
                path.display()
            )))
        }
    }

    /// A command for apt program `name` with a clean environment: the C locale (so its output
    /// parses), no prompts, and nothing from the daemon's environment (no `APT_CONFIG`).
    fn command(&self, name: &str) -> Result<Command, ToolError> {
        let mut cmd = Command::new(self.program(name)?);
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("APT_LISTCHANGES_FRONTEND", "none")
            .current_dir("/");
        Ok(cmd)
    }
}

// ---------------------------------------------------------------------------------------
// Running apt.

/// What a finished command printed and how it ended.
struct Finished {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stdout_tail: String,
    stderr_tail: String,
}

impl Finished {
    /// The `E:` lines of apt's output, or the end of stderr.
    fn apt_errors(&self) -> String {
        let errors: Vec<&str> = self
            .stderr_tail
            .lines()
            .chain(self.stdout_tail.lines())
            .filter(|l| l.starts_with("E: "))
            .collect();
        if errors.is_empty() {
            self.stderr_tail.trim().to_string()
        } else {
            errors.join("; ")
        }
    }
}

/// Keeps the first `head` and the last `tail` bytes of what `r` yields, reading it to the
/// end so the writer never blocks.
fn drain(mut r: impl Read, head: usize, tail: usize) -> (Vec<u8>, Vec<u8>) {
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let room = head.saturating_sub(first.len()).min(chunk.len());
        first.extend_from_slice(&chunk[..room]);
        if tail > 0 {
            last.extend_from_slice(chunk);
            if last.len() > 2 * tail {
                last.drain(..last.len() - tail);
            }
        }
    }
    if last.len() > tail {
        last.drain(..last.len() - tail);
    }
    (first, last)
}

/// Runs `cmd` in its own process group until it ends or `deadline` passes (then the whole
/// group is killed).
fn run_bounded(mut cmd: Command, deadline: Instant, what: &str) -> Result<Finished, ToolError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolError::Failed(format!("cannot start {what}: {e}")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ToolError::Internal(format!("{what} has no output pipes")));
    };
    let out = std::thread::spawn(move || drain(stdout, PLAN_BYTES, OUTPUT_TAIL_BYTES));
    let err = std::thread::spawn(move || drain(stderr, 0, OUTPUT_TAIL_BYTES));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.wait();
                return Err(ToolError::Timeout(millis(started.elapsed())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(ToolError::Failed(format!("waiting for {what} failed: {e}"))),
        }
    };
    let (stdout, stdout_tail) = out.join().unwrap_or_default();
    let (_, stderr_tail) = err.join().unwrap_or_default();
    Ok(Finished {
        success: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stdout_tail: String::from_utf8_lossy(&stdout_tail).into_owned(),
        stderr_tail: String::from_utf8_lossy(&stderr_tail).into_owned(),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Common options: names only (no regular expressions), no recommends, no prompts about
/// configuration files (keep the local one).
fn apt_get_options(cmd: &mut Command) {
    cmd.args([
        "-o",
        "APT::Cmd::Pattern-Only=true",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "--no-install-recommends",
    ]);
}

/// `apt-get -s <verb> …`: the plan.
fn simulate(
    apt: &Apt,
    verb: &str,
    extra: &[&str],
    packages: &[PackageSpec],
    deadline: Instant,
) -> Result<(Vec<PlanStep>, Option<String>), ToolError> {
    let mut cmd = apt.command("apt-get")?;
    cmd.arg("-s");
    apt_get_options(&mut cmd);
    cmd.arg(verb).args(extra).arg("--");
    cmd.args(packages.iter().map(PackageSpec::apt_arg));
    let done = run_bounded(cmd, deadline, "apt-get -s")?;
    if !done.success {
        return Err(ToolError::Failed(format!(
            "apt cannot plan this: {}",
            done.apt_errors()
        )));
    }
    let summary = done
        .stdout
        .lines()
        .find(|l| l.contains(" upgraded, ") && l.contains(" newly installed"))
        .map(str::to_string);
    Ok((parse_plan(&done.stdout), summary))
}

/// `apt-get -y <verb> …` for real.
fn execute(
    apt: &Apt,
    verb: &str,
    extra: &[&str],
    packages: &[PackageSpec],
    deadline: Instant,
) -> Result<String, ToolError> {
    let mut cmd = apt.command("apt-get")?;
    cmd.arg("-y");
    apt_get_options(&mut cmd);
    cmd.arg(verb).args(extra).arg("--");
    cmd.args(packages.iter().map(PackageSpec::apt_arg));
    let done = run_bounded(cmd, deadline, "apt-get").map_err(|e| match e {
        ToolError::Timeout(ms) => ToolError::Failed(format!(
            "apt-get {verb} ran past the call's deadline ({ms} ms) and was killed; run `dpkg --configure -a` as root to finish what it left"
        )),
        other => other,
    })?;
    let mut tail = done.stdout_tail.clone();
    if !done.stderr_tail.trim().is_empty() {
        tail.push_str(&done.stderr_tail);
    }
    if !done.success {
        let errors = done.apt_errors();
        let hint = if errors.contains("Permission denied") || errors.contains("are you root") {
            "; installing and removing packages needs the daemon to run as root"
        } else {
            ""
        };
        return Err(ToolError::Failed(format!(
            "apt-get {verb} failed (exit {}): {errors}{hint}",
            done.code.map_or("signal".to_string(), |c| c.to_string())
        )));
    }
    Ok(tail)
}

// ---------------------------------------------------------------------------------------
// pkg.search

fn default_limit() -> usize {
    20
}

/// Arguments of `pkg.search`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Part of a package name (lowercase letters, digits, `+`, `-`, `.`), matched literally.
    pub query: String,
    /// The most results (1 to 200).
    #[serde(default = "default_limit")]
    pub limit: usize,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Found {
    /// The package name.
    pub name: String,
    /// Its one-line description.
    pub description: String,
}

/// Results of `pkg.search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SearchOutput {
    /// Matching packages, an exact name first, then by name.
    pub packages: Vec<Found>,
    /// True when more matched than `limit`.
    pub truncated: bool,
}

/// `pkg.search`.
#[derive(Debug, Clone)]
pub struct Search {
    /// Where apt is.
    pub apt: Apt,
}

fn check_query(query: &str) -> Result<String, ToolError> {
    let q = query.to_ascii_lowercase();
    let ok = !q.is_empty()
        && q.len() <= 64
        && q.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    if ok {
        Ok(q)
    } else {
        Err(ToolError::InvalidArgs(
            "query: give 1 to 64 characters of a package name (letters, digits, + - .)".into(),
        ))
    }
}

/// `query` as a POSIX regular expression that matches it literally.
fn literal_regex(query: &str) -> String {
    let mut out = String::with_capacity(query.len() * 2);
    for c in query.chars() {
        if matches!(c, '.' | '+') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses `apt-cache search` output: `name - description` lines.
pub fn parse_search(text: &str) -> Vec<Found> {
    text.lines()
        .filter_map(|l| {
            let (name, description) = l.split_once(" - ")?;
            Some(Found {
                name: name.trim().to_string(),
                description: description.trim().to_string(),
            })
        })
        .collect()
}

impl TypedTool for Search {
    type Args = SearchArgs;
    type Output = SearchOutput;
    const NAME: &'static str = "pkg.search";
    const DESCRIPTION: &'static str = "Searches apt's package lists by name (no network; as fresh as the last apt update) and returns names and descriptions.";
    const RISK: Risk = Risk::Read;

    fn requirements(
        &self,
        args: &SearchArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        let query = check_query(&args.query)?;
        if !(1..=200).contains(&args.limit) {
            return Err(ToolError::InvalidArgs(
                "limit must be between 1 and 200".into(),
            ));
        }
        Ok(vec![
            Requirement::new(Self::NAME, APT_RESOURCE)?.with_attr("query", query),
        ])
    }

    fn run(&self, cx: &CallContext<'_>, args: SearchArgs) -> Result<Ran<SearchOutput>, ToolError> {
        let query = check_query(&args.query)?;
        let mut cmd = self.apt.command("apt-cache")?;
        cmd.args(["search", "--names-only", "--"])
            .arg(literal_regex(&query));
        let done = run_bounded(cmd, cx.deadline, "apt-cache search")?;
        if !done.success {
            return Err(ToolError::Failed(format!(
                "apt-cache search failed: {}",
                done.apt_errors()
            )));
        }
        let mut found = parse_search(&done.stdout);
        found.sort_by(|a, b| (a.name != query, &a.name).cmp(&(b.name != query, &b.name)));
        let truncated = found.len() > args.limit;
        found.truncate(args.limit);
        Ok(Ran::output(SearchOutput {
            packages: found,
            truncated,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// pkg.install and pkg.remove

fn yes() -> bool {
    true
}

/// Arguments of `pkg.install`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallArgs {
    /// Package names, each optionally pinned as `name=version`.
    pub packages: Vec<String>,
    /// Only plan (the default): return what apt would do and change nothing. With `false`
    /// the plan is made, checked and then carried out.
    #[serde(default = "yes")]
    pub dry_run: bool,
}

/// Arguments of `pkg.remove`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    /// Package names. Packages that depend on them must be named too, or the removal is
    /// refused.
    pub packages: Vec<String>,
    /// Only plan (the default): return what apt would do and change nothing.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Also delete the packages' configuration files.
    #[serde(default)]
    pub purge: bool,
}

/// What `pkg.install` or `pkg.remove` planned and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PlanOutput {
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// apt's plan, step by step.
    pub plan: Vec<PlanStep>,
    /// apt's one-line summary (`1 upgraded, 2 newly installed, …`).
    pub summary: Option<String>,
    /// Why this plan would not be carried out with `dry_run: false`, if it would not.
    pub blocked: Option<String>,
    /// True when apt carried the plan out.
    pub applied: bool,
    /// The last part of apt's output, when it ran for real.
    pub output_tail: Option<String>,
}

/// `pkg.install`.
#[derive(Debug, Clone)]
pub struct Install {
    /// Where apt is.
    pub apt: Apt,
}

/// `pkg.remove`.
#[derive(Debug, Clone)]
pub struct Remove {
    /// Where apt is.
    pub apt: Apt,
}

fn package_requirements(
    action: &str,
    packages: &[PackageSpec],
    dry_run: bool,
) -> Result<Vec<Requirement>, ToolError> {
    packages
        .iter()
        .map(|p| {
            let mut req = Requirement::new(action, format!("pkg:apt/{}", p.name))?
                .with_attr("dry_run", dry_run)
                .with_attr("manager", "apt");
            if let Some(v) = &p.version {
                req = req.with_attr("version", v.clone());
            }
            Ok(req)
        })
        .collect()
}

/// Plans, checks and (unless `dry_run`) carries out one apt operation.
fn plan_and_apply(
    apt: &Apt,
    verb: &str,
    extra: &[&str],
    packages: &[PackageSpec],
    dry_run: bool,
    deadline: Instant,
    problem: impl Fn(&[PlanStep]) -> Option<String>,
) -> Result<PlanOutput, ToolError> {
    let (plan, summary) = simulate(apt, verb, extra, packages, deadline)?;
    let blocked = problem(&plan);
    if dry_run {
        return Ok(PlanOutput {
            dry_run,
            plan,
            summary,
            blocked,
            applied: false,
            output_tail: None,
        });
    }
    if let Some(why) = blocked {
        return Err(ToolError::Conflict(format!("refused: {why}")));
    }
    if plan.is_empty() {
        // Nothing to do (already installed, or not installed): apt is not run for real.
        return Ok(PlanOutput {
            dry_run,
            plan,
            summary,
            blocked: None,
            applied: false,
            output_tail: None,
        });
    }
    let tail = execute(apt, verb, extra, packages, deadline)?;
    Ok(PlanOutput {
        dry_run,
        plan,
        summary,
        blocked: None,
        applied: true,
        output_tail: Some(tail),
    })
}

impl TypedTool for Install {
    type Args = InstallArgs;
    type Output = PlanOutput;
    const NAME: &'static str = "pkg.install";
    const DESCRIPTION: &'static str = "Installs Debian packages with apt. By default only plans (apt-get -s) and returns the plan; with dry_run false, carries it out unless it would remove any package.";
    const RISK: Risk = Risk::Irreversible;

    fn timeout(&self) -> Duration {
        Duration::from_secs(15 * 60)
    }

    fn requirements(
        &self,
        args: &InstallArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        package_requirements(Self::NAME, &parse_packages(&args.packages)?, args.dry_run)
    }

    fn run(&self, cx: &CallContext<'_>, args: InstallArgs) -> Result<Ran<PlanOutput>, ToolError> {
        let packages = parse_packages(&args.packages)?;
        // `--no-remove` makes apt stop rather than remove anything, should the package lists
        // change between the plan and the install.
        let out = plan_and_apply(
            &self.apt,
            "install",
            &["--no-remove"],
            &packages,
            args.dry_run,
            cx.deadline,
            install_problem,
        )?;
        Ok(Ran::output(out))
    }
}

impl TypedTool for Remove {
    type Args = RemoveArgs;
    type Output = PlanOutput;
    const NAME: &'static str = "pkg.remove";
    const DESCRIPTION: &'static str = "Removes Debian packages with apt. By default only plans (apt-get -s) and returns the plan; with dry_run false, carries it out unless it would remove packages not named or install any.";
    const RISK: Risk = Risk::Irreversible;

    fn timeout(&self) -> Duration {
        Duration::from_secs(15 * 60)
    }

    fn requirements(
        &self,
        args: &RemoveArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        let reqs =
            package_requirements(Self::NAME, &parse_packages(&args.packages)?, args.dry_run)?;
        Ok(reqs
            .into_iter()
            .map(|r| r.with_attr("purge", args.purge))
            .collect())
    }

    fn run(&self, cx: &CallContext<'_>, args: RemoveArgs) -> Result<Ran<PlanOutput>, ToolError> {
        let packages = parse_packages(&args.packages)?;
        let extra: &[&str] = if args.purge { &["--purge"] } else { &[] };
        let out = plan_and_apply(
            &self.apt,
            "remove",
            extra,
            &packages,
            args.dry_run,
            cx.deadline,
            |plan| remove_problem(plan, &packages),
        )?;
        Ok(Ran::output(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_output_parses_and_queries_are_literal() {
        let text = "hello - example package based on GNU hello\nhello-traditional - example package not using any helper package\n";
        assert_eq!(
            parse_search(text),
            vec![
                Found {
                    name: "hello".into(),
                    description: "example package based on GNU hello".into()
                },
                Found {
                    name: "hello-traditional".into(),
                    description: "example package not using any helper package".into()
                },
            ]
        );
        assert_eq!(literal_regex("g++"), r"g\+\+");
        assert_eq!(literal_regex("python3.11"), r"python3\.11");
        assert!(check_query("a b").is_err());
        assert!(check_query("^x$").is_err());
        assert_eq!(check_query("Hello").unwrap(), "hello");
    }

    #[test]
    fn drain_keeps_head_and_tail() {
        let data: Vec<u8> = (0..100u8).collect();
        let (head, tail) = drain(&data[..], 10, 5);
        assert_eq!(head, (0..10).collect::<Vec<u8>>());
        assert_eq!(tail, (95..100).collect::<Vec<u8>>());
    }
}
