//! `user/gyrus.toml`: the owner's configuration.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), missing keys take
//! their defaults, and every value is checked so the daemon never starts half-configured.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The file written on first start. Every key is shown with its default so the owner can see
/// what there is to change.
pub(crate) const DEFAULT_CONFIG: &str = r#"# gyrus configuration (user layer). Restart `gyrus up` after editing.
# Every key below shows its default; delete a key to go back to it.

[api]
# HTTP address of the API. Port 0 picks a free port (written to runtime/listen).
# `gyrus up --listen ADDR` overrides this.
listen = "127.0.0.1:7878"
# Host names accepted in the Host header besides IP literals and localhost
# (the guard against DNS rebinding). Add the name a reverse proxy forwards, e.g. "gyrus.example.org".
allowed_hosts = []
# A browser's Origin header must name the host the request was sent to; list other
# origins (scheme://host[:port]) that may call the API here.
allowed_origins = []
# Largest request body in bytes; larger bodies get 413.
body_limit_bytes = 1048576
# A request that takes longer gets 408.
request_timeout_secs = 30
# Requests handled at once; further requests get 503 at once instead of queueing.
max_concurrent_requests = 256

[api.rate_limit]
# Each token (and each unauthenticated peer address) may make `burst` requests at once,
# refilled at `per_second`. Beyond that: 429 with Retry-After.
per_second = 50
burst = 100

[daemon]
# On SIGINT/SIGTERM, how long in-flight requests may take to finish.
shutdown_grace_secs = 10

[tools]
# process.spawn runs every command in a sandbox (Landlock, seccomp, a user namespace and
# resource limits). On a kernel without them it refuses, unless this is true.
allow_unsandboxed = false
# How long `gyrus undo` can put a call back, and how many bytes of snapshots are kept
# (runtime/undo/); the oldest records go first.
undo_retention_days = 7
undo_max_bytes = 1073741824

[sessions]
# A registered LLM client session (Claude Code, Codex, Gemini CLI, Aider) that sends nothing
# for this long is expired, and its leases end.
expire_after_secs = 1800
# How long the lease an edit takes on a file lasts; each further edit renews it.
lease_ttl_secs = 900
# An edit of a file another live session holds exclusively: "deny" or "ask" (the client asks you).
on_conflict = "deny"
# A session's leases outlast the end of its turn (the client's Stop), so its files stay
# protected while you review; set true to release them at every Stop instead.
release_on_stop = false
# When the daemon is not running, hooks let the client go on with a one-line warning;
# set strict = true to block instead.
strict = false
# How often conflicts between sessions on different branches or worktrees are predicted.
conflict_check_secs = 60

[memory]
# How often consolidation runs: expire TTLs, merge duplicates, distil the episodic log,
# update the sketch, save the vector index.
consolidate_secs = 600
# The byte budget of the owner's sketch, the compact profile `gyrus memory sketch` shows.
sketch_budget_bytes = 2048
# Above this many vectors, semantic search uses the HNSW index instead of an exact scan.
hnsw_threshold = 20000

[router]
# The cheapest tier whose predicted chance of success reaches this many percent answers.
threshold_percent = 70
# What each agent may spend on priced cortices over a rolling day, in US cents; 0: no limit.
daily_budget_cents = 0
# The tokens each agent may use over a rolling day; 0: no limit.
daily_budget_tokens = 0
# One agent's own limits instead of those (0: no limit), e.g. for `gyrus ask --agent ci`:
# [router.agents.ci]
# daily_budget_cents = 500
# daily_budget_tokens = 0
"#;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[api]`: the HTTP API.
    pub api: ApiConfig,
    /// `[daemon]`: process behaviour.
    pub daemon: DaemonConfig,
    /// `[tools]`: sandboxing and undo.
    pub tools: ToolsConfig,
    /// `[sessions]`: the session manager.
    pub sessions: SessionsConfig,
    /// `[memory]`: the memory fabric.
    pub memory: MemoryConfig,
    /// `[router]`: the frontal lobe's router.
    pub router: RouterConfig,
}

/// `[router]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// The least predicted chance of success, in percent, for a tier to be chosen.
    pub threshold_percent: u8,
    /// Each agent's spending limit over a rolling day, in US cents; 0 for none.
    pub daily_budget_cents: u64,
    /// Each agent's token limit over a rolling day; 0 for none.
    pub daily_budget_tokens: u64,
    /// `[router.agents.NAME]`: limits of one agent that replace the two above for it.
    pub agents: std::collections::BTreeMap<String, AgentBudget>,
}

/// `[router.agents.NAME]`: one agent's daily limits; 0 (or unset) for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBudget {
    /// Its spending limit over a rolling day, in US cents.
    #[serde(default)]
    pub daily_budget_cents: u64,
    /// Its token limit over a rolling day.
    #[serde(default)]
    pub daily_budget_tokens: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            threshold_percent: 70,
            daily_budget_cents: 0,
            daily_budget_tokens: 0,
            agents: std::collections::BTreeMap::new(),
        }
    }
}

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Seconds between consolidation runs.
    pub consolidate_secs: u64,
    /// The sketch's byte budget.
    pub sketch_budget_bytes: usize,
    /// Vectors above which the HNSW index is used.
    pub hnsw_threshold: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            consolidate_secs: 600,
            sketch_budget_bytes: 2048,
            hnsw_threshold: 20_000,
        }
    }
}

/// What an edit of a path another session holds exclusively gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Refused, with the holder named.
    Deny,
    /// The client asks the owner.
    Ask,
}

/// `[sessions]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Seconds of silence after which a session expires.
    pub expire_after_secs: u64,
    /// Seconds an edit's automatic lease lasts.
    pub lease_ttl_secs: u64,
    /// Deny or ask on a conflicting edit.
    pub on_conflict: OnConflict,
    /// Release a session's leases when its turn ends.
    pub release_on_stop: bool,
    /// Hooks block when the daemon is unreachable.
    pub strict: bool,
    /// Seconds between conflict predictions.
    pub conflict_check_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            expire_after_secs: 1800,
            lease_ttl_secs: 900,
            on_conflict: OnConflict::Deny,
            release_on_stop: false,
            strict: false,
            conflict_check_secs: 60,
        }
    }
}

/// `[tools]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Let `process.spawn` run unsandboxed where the kernel lacks Landlock or seccomp.
    pub allow_unsandboxed: bool,
    /// Days undo records are kept.
    pub undo_retention_days: u64,
    /// Bytes the undo journal may keep.
    pub undo_max_bytes: u64,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            allow_unsandboxed: false,
            undo_retention_days: 7,
            undo_max_bytes: 1 << 30,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Extra Host names accepted (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Extra Origins accepted.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    pub body_limit_bytes: usize,
    /// Per-request timeout.
    pub request_timeout_secs: u64,
    /// Requests handled at once before shedding load.
    pub max_concurrent_requests: usize,
    /// `[api.rate_limit]`.
    pub rate_limit: RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 256,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `[api.rate_limit]`: a token bucket per principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 50,
            burst: 100,
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace_secs: 10,
        }
    }
}

/// The configuration file is unreadable or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {key} {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// The dotted key.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: one_line(&e),
        })?;
        config.check(origin)?;
        Ok(config)
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, problem| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                key,
                problem,
            })
        };
        let api = &self.api;
        let sessions = &self.sessions;
        if !(5..=7 * 24 * 3600).contains(&sessions.expire_after_secs) {
            return invalid("sessions.expire_after_secs", "must be between 5 and 604800");
        }
        if !(1..=7 * 24 * 3600).contains(&sessions.lease_ttl_secs) {
            return invalid("sessions.lease_ttl_secs", "must be between 1 and 604800");
        }
        if !(1..=24 * 3600).contains(&sessions.conflict_check_secs) {
            return invalid(
                "sessions.conflict_check_secs",
                "must be between 1 and 86400",
            );
        }
        if !(10..=7 * 24 * 3600).contains(&self.memory.consolidate_secs) {
            return invalid("memory.consolidate_secs", "must be between 10 and 604800");
        }
        if !(64..=65_536).contains(&self.memory.sketch_budget_bytes) {
            return invalid("memory.sketch_budget_bytes", "must be between 64 and 65536");
        }
        if !(100..=100_000_000).contains(&self.memory.hnsw_threshold) {
            return invalid("memory.hnsw_threshold", "must be between 100 and 100000000");
        }
        if !(1..=100).contains(&self.router.threshold_percent) {
            return invalid("router.threshold_percent", "must be between 1 and 100");
        }
        if self
            .router
            .agents
            .keys()
            .any(|name| name.is_empty() || name.len() > 128 || name.chars().any(char::is_control))
        {
            return invalid(
                "router.agents",
                "agent names must be 1 to 128 characters without control characters",
            );
        }
        if self.tools.undo_retention_days > 3650 {
            return invalid("tools.undo_retention_days", "must be at most 3650");
        }
        if api.body_limit_bytes == 0 {
            return invalid("api.body_limit_bytes", "must be at least 1");
        }
        if api.request_timeout_secs == 0 {
            return invalid("api.request_timeout_secs", "must be at least 1");
        }
        if api.max_concurrent_requests == 0 {
            return invalid("api.max_concurrent_requests", "must be at least 1");
        }
        if api.rate_limit.per_second == 0 {
            return invalid("api.rate_limit.per_second", "must be at least 1");
        }
        if api.rate_limit.burst == 0 {
            return invalid("api.rate_limit.burst", "must be at least 1");
        }
        if api
            .allowed_hosts
            .iter()
            .any(|h| h.is_empty() || h.contains('/'))
        {
            return invalid(
                "api.allowed_hosts",
                "entries must be host names like \"gyrus.example.org\" or \"host:port\"",
            );
        }
        if api
            .allowed_origins
            .iter()
            .any(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return invalid(
                "api.allowed_origins",
                "entries must look like \"https://host[:port]\"",
            );
        }
        Ok(())
    }
}

/// toml's messages span several lines (a source excerpt); keep the first line and the location
/// so the CLI can print one line.
fn one_line(e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{message} (at byte {})", span.start),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn default_file_parses_to_the_defaults() {
        assert_eq!(
            Config::parse(DEFAULT_CONFIG, "gyrus.toml").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_readme_shows_the_real_defaults() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(DEFAULT_CONFIG),
            "README.md's configuration block differs from DEFAULT_CONFIG; copy it over"
        );
    }

    #[test]
    fn missing_keys_take_defaults() {
        let c = Config::parse("[api.rate_limit]\nburst = 3\n", "t").unwrap();
        assert_eq!(c.api.rate_limit.burst, 3);
        assert_eq!(c.api.rate_limit.per_second, 50);
        assert_eq!(c.daemon, DaemonConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::parse("[api]\nlisten_addr = \"x\"\n", "gyrus.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("gyrus.toml: unknown field `listen_addr`"),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn bad_values_are_errors() {
        let err = Config::parse("[api]\nlisten = \"nowhere\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("invalid socket address"), "{err}");
        let err = Config::parse("[api]\nbody_limit_bytes = 0\n", "t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t: api.body_limit_bytes must be at least 1"
        );
        let err = Config::parse("[api]\nallowed_origins = [\"example.org\"]\n", "t").unwrap_err();
        assert!(err.to_string().contains("api.allowed_origins"), "{err}");
    }
}
