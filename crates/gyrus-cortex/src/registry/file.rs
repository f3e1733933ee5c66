//! [`Registry`]: the cortices in `user/cortices.toml`, read whole and replaced atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CortexSpec, DriverKind, KeySource, RegistryError, Tier};
use crate::types::Price;

/// The registry file's mode: the owner's alone, like everything in the user layer.
const FILE_MODE: u32 = 0o600;

/// The configured cortices, backed by `user/cortices.toml`.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    /// Sorted by tier, then name.
    cortices: Vec<CortexSpec>,
}

impl Registry {
    /// Reads the registry at `path`; a missing file is an empty registry. Unknown keys,
    /// invalid entries and duplicate names are errors naming the file and the entry.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let path = path.into();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(RegistryError::Read { path, source }),
        };
        let file: FileFormat = toml::from_str(&text).map_err(|e| RegistryError::Parse {
            message: parse_message(&e, &text),
            path: path.clone(),
        })?;
        let mut registry = Self {
            path,
            cortices: Vec::with_capacity(file.cortex.len()),
        };
        for entry in file.cortex {
            let spec = entry
                .into_spec()
                .and_then(|spec| registry.add(spec).map(|_| ()));
            if let Err(e) = spec {
                return Err(RegistryError::InFile {
                    path: registry.path,
                    source: Box::new(e),
                });
            }
        }
        Ok(registry)
    }

    /// The file this registry reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a cortex after [`CortexSpec::validate`]; a name already taken is an error. Only
    /// [`save`](Self::save) writes the file.
    pub fn add(&mut self, spec: CortexSpec) -> Result<&CortexSpec, RegistryError> {
        spec.validate()?;
        if self.get(&spec.name).is_some() {
            return Err(RegistryError::Duplicate(spec.name));
        }
        let at = self
            .cortices
            .partition_point(|c| (c.tier, c.name.as_str()) < (spec.tier, spec.name.as_str()));
        self.cortices.insert(at, spec);
        Ok(&self.cortices[at])
    }

    /// Removes the cortex `name` and returns it. Only [`save`](Self::save) writes the file.
    pub fn remove(&mut self, name: &str) -> Result<CortexSpec, RegistryError> {
        match self.cortices.iter().position(|c| c.name == name) {
            Some(at) => Ok(self.cortices.remove(at)),
            None => Err(RegistryError::NotFound(name.to_owned())),
        }
    }

    /// The cortex `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&CortexSpec> {
        self.cortices.iter().find(|c| c.name == name)
    }

    /// Every cortex, sorted by tier (cheapest first), then name.
    pub fn list(&self) -> &[CortexSpec] {
        &self.cortices
    }

    /// Writes the registry to its file, atomically: a temporary file with mode 0600 in the same
    /// directory, fsynced, renamed over the file, and the directory fsynced.
    pub fn save(&self) -> Result<(), RegistryError> {
        let file = FileFormat {
            cortex: self.cortices.iter().map(Entry::from).collect(),
        };
        let body = toml::to_string(&file).map_err(|e| RegistryError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let text = format!("{FILE_HEADER}{body}");
        gyrus_home::write_atomic(&self.path, text.as_bytes(), FILE_MODE).map_err(|source| {
            RegistryError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

const FILE_HEADER: &str = "\
# The configured cortices (model endpoints), written by `gyrus cortex add` and `remove`.
# No key is stored here: only the environment variable or the key file (inside user/) holding it.

";

/// The file: `[[cortex]]` entries.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    cortex: Vec<Entry>,
}

/// One `[[cortex]]` entry as written in the file; the flat keys match the CLI's flags.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    driver: DriverKind,
    model: String,
    tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price_in: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price_out: Option<f64>,
}

impl Entry {
    fn into_spec(self) -> Result<CortexSpec, RegistryError> {
        let invalid = |field, reason: &str| RegistryError::Invalid {
            cortex: self.name.clone(),
            field,
            reason: reason.to_owned(),
        };
        let key = match (&self.key_env, &self.key_file) {
            (None, None) => KeySource::None,
            (Some(var), None) => KeySource::Env(var.clone()),
            (None, Some(path)) => KeySource::File(PathBuf::from(path)),
            (Some(_), Some(_)) => {
                return Err(invalid("key_env", "and key_file are both set: keep one"));
            }
        };
        let price = match (self.price_in, self.price_out) {
            (None, None) => None,
            (Some(input), Some(output)) => Some(Price {
                input_per_mtok: input,
                output_per_mtok: output,
            }),
            _ => {
                return Err(invalid(
                    "price_in",
                    "and price_out go together: set both, or neither",
                ));
            }
        };
        Ok(CortexSpec {
            max_concurrency: self
                .max_concurrency
                .unwrap_or(self.driver.default_max_concurrency()),
            name: self.name,
            driver: self.driver,
            model: self.model,
            url: self.url,
            key,
            tier: self.tier,
            price,
        })
    }
}

impl From<&CortexSpec> for Entry {
    fn from(spec: &CortexSpec) -> Self {
        let (key_env, key_file) = match &spec.key {
            KeySource::None => (None, None),
            KeySource::Env(var) => (Some(var.clone()), None),
            // `validate` refused paths that are not UTF-8.
            KeySource::File(path) => (None, Some(path.to_string_lossy().into_owned())),
        };
        Self {
            name: spec.name.clone(),
            driver: spec.driver,
            model: spec.model.clone(),
            tier: spec.tier,
            url: spec.url.clone(),
            key_env,
            key_file,
            max_concurrency: Some(spec.max_concurrency),
            price_in: spec.price.map(|p| p.input_per_mtok),
            price_out: spec.price.map(|p| p.output_per_mtok),
        }
    }
}

/// The parser's message on one line, with the line number of the problem.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}
