//! The cortex registry: the configured model endpoints, kept in `user/cortices.toml`.
//!
//! A cortex is one model behind one driver, at one tier: `[[cortex]]` entries with its name
//! (which appears in `gyrus/<name>` model ids), driver, model, URL, where its key is found,
//! tier, max concurrency and price. The file holds no secret: only the name of an environment
//! variable or the path of a key file inside the user layer ([`KeySource`]). Keys are read
//! when a driver is built ([`resolve_key`]), and key files must be the owner's alone.
//!
//! [`CortexSpec::validate`] is pure; [`Registry`] reads and writes the file, replacing it
//! atomically so a crash leaves the old file or the new one, never half of one.
//!
//! - `check.rs` (pure): the field checks behind [`CortexSpec::validate`].
//! - `file.rs`: [`Registry`] and the file format.
//! - `resolve.rs`: a spec's key ([`resolve_key`]), model file ([`resolve_model`]) and driver
//!   ([`build_driver`]).

mod check;
mod file;
mod resolve;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::driver::{self, DriverError};
use crate::types::Price;

pub use crate::tier::Tier;
pub use file::Registry;
pub use resolve::{build_driver, resolve_key, resolve_model};

use check::{
    check_env_name, check_key_path, check_local_model, check_model, check_name, check_url,
};

/// Anthropic's endpoint, used when an `anthropic` cortex sets no URL.
pub const ANTHROPIC_URL: &str = driver::anthropic::DEFAULT_BASE_URL;
/// Google's endpoint, used when a `gemini` cortex sets no URL.
pub const GEMINI_URL: &str = driver::gemini::DEFAULT_BASE_URL;
/// Ollama's local address, used when an `ollama` cortex sets no URL.
pub const OLLAMA_URL: &str = driver::ollama::DEFAULT_BASE_URL;

/// The highest `max_concurrency` a cortex may have.
pub const MAX_CONCURRENCY: u32 = 256;

/// Model aliases a `local` cortex may name instead of a path: alias, file in the models dir.
pub const LOCAL_ALIASES: &[(&str, &str)] = &[("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")];

/// Which driver speaks to a cortex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// An OpenAI-compatible server (OpenAI, vLLM, llama.cpp, LM Studio, OpenRouter).
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// The Gemini API.
    Gemini,
    /// An Ollama server.
    Ollama,
    /// The embedded cortex: a GGUF file run in process.
    Local,
}

impl DriverKind {
    /// Every driver kind.
    pub const ALL: [DriverKind; 5] = [
        DriverKind::Openai,
        DriverKind::Anthropic,
        DriverKind::Gemini,
        DriverKind::Ollama,
        DriverKind::Local,
    ];

    /// The name used in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Openai => "openai",
            DriverKind::Anthropic => "anthropic",
            DriverKind::Gemini => "gemini",
            DriverKind::Ollama => "ollama",
            DriverKind::Local => "local",
        }
    }

    /// The URL used when a cortex sets none; `None` where there is no default (`openai`,
    /// whose servers are many, and `local`, which has no URL).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            DriverKind::Anthropic => Some(ANTHROPIC_URL),
            DriverKind::Gemini => Some(GEMINI_URL),
            DriverKind::Ollama => Some(OLLAMA_URL),
            DriverKind::Openai | DriverKind::Local => None,
        }
    }

    /// The max concurrency a cortex gets when it sets none: 1 for the embedded cortex (one
    /// model in this process's memory), 4 for a server.
    pub fn default_max_concurrency(self) -> u32 {
        match self {
            DriverKind::Local => 1,
            _ => 4,
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DriverKind {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DriverKind::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| RegistryError::UnknownValue {
                what: "driver",
                value: s.to_owned(),
                valid: "openai, anthropic, gemini, ollama, local",
            })
    }
}

/// Where a cortex's API key is found. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySource {
    /// The endpoint needs no key.
    #[default]
    None,
    /// The key is in this environment variable of the daemon.
    Env(String),
    /// The key is in this file, relative to the user layer, readable by the owner alone.
    File(PathBuf),
}

/// One configured cortex.
#[derive(Debug, Clone, PartialEq)]
pub struct CortexSpec {
    /// The name, `[a-z0-9][a-z0-9._-]{0,62}`; the model id `gyrus/<name>` selects it.
    pub name: String,
    /// The driver that speaks to it.
    pub driver: DriverKind,
    /// The vendor's model name, or for `local` a `.gguf` path or an alias ([`LOCAL_ALIASES`]).
    pub model: String,
    /// The base URL; `None` takes the driver's default ([`DriverKind::default_url`]).
    pub url: Option<String>,
    /// Where its key is found.
    pub key: KeySource,
    /// Its tier.
    pub tier: Tier,
    /// How many calls it takes at once (the scheduler's slots), 1..=256.
    pub max_concurrency: u32,
    /// What it costs; `None` when unknown.
    pub price: Option<Price>,
}

impl CortexSpec {
    /// A cortex with no URL, no key, no price and the driver's default max concurrency.
    pub fn new(
        name: impl Into<String>,
        driver: DriverKind,
        model: impl Into<String>,
        tier: Tier,
    ) -> Self {
        Self {
            name: name.into(),
            driver,
            model: model.into(),
            url: None,
            key: KeySource::None,
            tier,
            max_concurrency: driver.default_max_concurrency(),
            price: None,
        }
    }

    /// The URL the driver connects to: the configured one or the driver's default.
    pub fn base_url(&self) -> Option<&str> {
        self.url.as_deref().or(self.driver.default_url())
    }

    /// Checks every field; the error says what is wrong and what to do. Reads no file.
    pub fn validate(&self) -> Result<(), RegistryError> {
        check_name(&self.name)?;
        let invalid = |field: &'static str, reason: String| RegistryError::Invalid {
            cortex: self.name.clone(),
            field,
            reason,
        };
        if self.driver == DriverKind::Local {
            check_local_model(&self.model).map_err(|r| invalid("model", r))?;
            if self.url.is_some() {
                return Err(invalid(
                    "url",
                    "is set, but the embedded cortex runs in process and has no URL: drop --url"
                        .into(),
                ));
            }
            if self.key != KeySource::None {
                return Err(invalid(
                    "key",
                    "is set, but the embedded cortex runs in process and needs no key: \
                     drop --key-env/--key-file"
                        .into(),
                ));
            }
        } else {
            check_model(&self.model).map_err(|r| invalid("model", r))?;
            match &self.url {
                Some(url) => check_url(url).map_err(|r| invalid("url", r))?,
                None if self.driver == DriverKind::Openai => {
                    return Err(invalid(
                        "url",
                        "is missing: an openai cortex needs the server's base URL: add --url \
                         (https://api.openai.com/v1 for OpenAI itself, \
                         http://127.0.0.1:8080/v1 for a local server)"
                            .into(),
                    ));
                }
                None => {}
            }
            match &self.key {
                KeySource::None => {}
                KeySource::Env(var) => check_env_name(var).map_err(|r| invalid("key_env", r))?,
                KeySource::File(path) => {
                    check_key_path(path).map_err(|r| invalid("key_file", r))?
                }
            }
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(invalid(
                "max_concurrency",
                format!(
                    "is {}; it must be between 1 and {MAX_CONCURRENCY}",
                    self.max_concurrency
                ),
            ));
        }
        if let Some(price) = &self.price {
            for (field, value) in [
                ("price_in", price.input_per_mtok),
                ("price_out", price.output_per_mtok),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(invalid(
                        field,
                        format!("is {value}; give USD per million tokens, a number 0 or more"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why a registry operation failed. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A driver name that does not exist.
    #[error("unknown {what} `{value}`: use one of {valid}")]
    UnknownValue {
        /// `driver`.
        what: &'static str,
        /// What was given.
        value: String,
        /// The valid values.
        valid: &'static str,
    },
    /// A cortex name that is not `[a-z0-9][a-z0-9._-]{0,62}`.
    #[error(
        "cortex name `{name}` is not valid: use 1 to 63 characters from a-z, 0-9, `.`, `_`, `-`, \
         starting with a letter or digit (it appears in the model id gyrus/<name>)"
    )]
    Name {
        /// The name given.
        name: String,
    },
    /// A field of a cortex is wrong.
    #[error("cortex `{cortex}`: {field} {reason}")]
    Invalid {
        /// The cortex.
        cortex: String,
        /// The field (`url`, `model`, `key_file`, …).
        field: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// `add` of a name that is already configured.
    #[error(
        "a cortex named `{0}` already exists: pick another name, or `gyrus cortex remove {0}` first"
    )]
    Duplicate(String),
    /// No cortex has this name.
    #[error("no cortex named `{0}`: `gyrus cortex list` shows the configured ones")]
    NotFound(String),
    /// The registry file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry file could not be written.
    #[error("cannot write {path}: {source}; the previous file is unchanged")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// An entry of the registry file is not a valid cortex.
    #[error("{path}: {source}; fix or remove that [[cortex]] entry")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with the entry.
        source: Box<RegistryError>,
    },
    /// The key could not be read. The message names where it was looked for, never the key.
    #[error("cortex `{cortex}`: {reason}")]
    Key {
        /// The cortex.
        cortex: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The embedded model file could not be found.
    #[error("cortex `{cortex}`: {reason}")]
    Model {
        /// The cortex.
        cortex: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// `build_driver` of a `local` cortex: the daemon loads the embedded cortex itself.
    #[error(
        "cortex `{0}` is the embedded cortex, which the daemon loads itself (one copy of the \
         model in memory); it has no HTTP driver"
    )]
    Local(String),
    /// The driver refused its configuration.
    #[error("cortex `{cortex}`: cannot build its driver: {source}")]
    Driver {
        /// The cortex.
        cortex: String,
        /// Why.
        source: DriverError,
    },
}

#[cfg(test)]
mod tests {
    use super::check::check_name;
    use super::*;

    #[test]
    fn drivers_parse() {
        for kind in DriverKind::ALL {
            assert_eq!(kind.as_str().parse::<DriverKind>().ok(), Some(kind));
        }
    }

    #[test]
    fn names() {
        for good in ["a", "0", "claude-sonnet", "llama3.1_8b", &"a".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "A",
            "a b",
            "a/b",
            "gyrus/x",
            &"a".repeat(64),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
