//! Agent manifests: what an agent is, what it asks for, what it may use, and how to run it.
//!
//! ```toml
//! name = "disk-janitor"
//! role = "ops"
//! description = "Keeps the disks tidy"
//! capabilities = ["sys.health", { action = "fs.delete", resources = ["path:/var/tmp/**"] }]
//!
//! [quotas]
//! tool_calls_per_minute = 30
//!
//! [command]            # optional: gyrus runs and supervises this process
//! program = "/usr/bin/python3"
//! args = ["janitor.py"]
//!
//! [restart]            # optional; these are the defaults
//! initial_backoff_ms = 500
//! start_limit_burst = 5
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use gyrus_bus::subject::Pattern;
use serde::{Deserialize, Serialize};

use crate::restart::RestartPolicy;

/// A capability the agent requests: an action pattern and, optionally, the resources it
/// concerns. Requesting is not granting: the owner approves it (a grant) or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Capability {
    /// Just an action pattern, e.g. `"fs.read"` or `"fs.*"`.
    Action(String),
    /// An action pattern with resource globs.
    Scoped {
        /// Action pattern.
        action: String,
        /// Resource globs such as `path:/home/u/project/**`.
        #[serde(default)]
        resources: Vec<String>,
    },
}

impl Capability {
    /// The action pattern.
    pub fn action(&self) -> &str {
        match self {
            Capability::Action(a) | Capability::Scoped { action: a, .. } => a,
        }
    }
}

/// Limits on what an agent may consume. `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Tool calls per minute.
    pub tool_calls_per_minute: Option<u32>,
    /// Model tokens per day.
    pub model_tokens_per_day: Option<u64>,
    /// Bytes of memory-fabric storage.
    pub memory_bytes: Option<u64>,
}

/// The process gyrus starts and supervises for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Program to run: an absolute path, or a name looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory; the daemon's if unset.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (GYRUS_URL, GYRUS_TOKEN, GYRUS_AGENT and GYRUS_AGENT_ID
    /// are always set by gyrus and cannot be overridden).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique among live agents: 1 to 64 letters, digits, '.', '_' or '-'.
    pub name: String,
    /// What kind of agent it is, e.g. `ops`.
    #[serde(default)]
    pub role: String,
    /// One sentence for people.
    #[serde(default)]
    pub description: String,
    /// Capabilities it requests.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Its limits.
    #[serde(default)]
    pub quotas: Quotas,
    /// The process to supervise; without one the agent connects by itself with its token.
    #[serde(default)]
    pub command: Option<Command>,
    /// How its process is restarted.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// A manifest that cannot be used, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid TOML or JSON, or a wrong or unknown field.
    #[error("the manifest is not valid {format}: {message}")]
    Syntax {
        /// "TOML" or "JSON".
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A value breaks a rule.
    #[error("manifest {field}: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

const RESERVED_ENV: [&str; 4] = ["GYRUS_URL", "GYRUS_TOKEN", "GYRUS_AGENT", "GYRUS_AGENT_ID"];

/// Whether `name` follows the agent naming rule.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Manifest {
    /// Parses TOML or JSON (JSON if the text starts with `{`), then checks it.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| ManifestError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| ManifestError::Syntax {
                format: "TOML",
                message: e.message().to_string(),
            })?
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks every rule; the first broken one is the error.
    pub fn check(&self) -> Result<(), ManifestError> {
        let invalid = |field: &str, problem: String| {
            Err(ManifestError::Invalid {
                field: field.to_string(),
                problem,
            })
        };
        if !valid_name(&self.name) {
            return invalid(
                "name",
                format!(
                    "{:?} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                    self.name
                ),
            );
        }
        for capability in &self.capabilities {
            if let Err(e) = Pattern::new(capability.action()) {
                return invalid("capabilities", e.to_string());
            }
        }
        if let Some(command) = &self.command {
            if command.program.trim().is_empty() {
                return invalid("command.program", "must not be empty".into());
            }
            if let Some(key) = command
                .env
                .keys()
                .find(|k| RESERVED_ENV.contains(&k.as_str()))
            {
                return invalid(
                    "command.env",
                    format!("{key} is set by gyrus and cannot be overridden"),
                );
            }
        }
        let r = &self.restart;
        if r.start_limit_burst == 0 || r.start_limit_interval_secs == 0 {
            return invalid(
                "restart",
                "start_limit_burst and start_limit_interval_secs must be at least 1".into(),
            );
        }
        if r.initial_backoff_ms > r.max_backoff_ms {
            return invalid(
                "restart",
                "initial_backoff_ms must not exceed max_backoff_ms".into(),
            );
        }
        Ok(())
    }

    /// The requested action patterns (already validated by [`Manifest::check`]).
    pub fn requested_actions(&self) -> Vec<Pattern> {
        self.capabilities
            .iter()
            .filter_map(|c| Pattern::new(c.action()).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_manifests_parse_the_same() {
        let toml = r#"
            name = "janitor"
            role = "ops"
            capabilities = ["sys.health", { action = "fs.delete", resources = ["path:/var/tmp/**"] }]
            [quotas]
            tool_calls_per_minute = 30
            [command]
            program = "sleep"
            args = ["60"]
        "#;
        let json = r#"{"name":"janitor","role":"ops",
            "capabilities":["sys.health",{"action":"fs.delete","resources":["path:/var/tmp/**"]}],
            "quotas":{"tool_calls_per_minute":30},
            "command":{"program":"sleep","args":["60"]}}"#;
        let a = Manifest::parse(toml).unwrap();
        assert_eq!(a, Manifest::parse(json).unwrap());
        assert_eq!(a.capabilities[1].action(), "fs.delete");
        assert_eq!(a.quotas.tool_calls_per_minute, Some(30));
        assert_eq!(a.restart, RestartPolicy::default());
        let actions: Vec<String> = a
            .requested_actions()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(actions, ["sys.health", "fs.delete"]);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let err = |text: &str| Manifest::parse(text).unwrap_err().to_string();
        assert!(err("name = \"a b\"").contains("manifest name"));
        assert!(err("name = \"a\"\nnmae = 1").contains("unknown field `nmae`"));
        assert!(
            err("name = \"a\"\ncapabilities = [\"fs..read\"]").contains("manifest capabilities")
        );
        assert!(err("{\"name\": 3}").contains("not valid JSON"));
        assert!(
            err("name = \"a\"\n[command]\nprogram = \"x\"\nenv = { GYRUS_TOKEN = \"mine\" }")
                .contains("cannot be overridden")
        );
        assert!(err("name = \"a\"\n[restart]\nstart_limit_burst = 0").contains("restart"));
    }
}
