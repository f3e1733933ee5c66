//! The Cedar side: the schema, the core policies, and the owner's policy files, all parsed and
//! validated in strict mode before any of them is used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

/// The Cedar schema every policy is validated against.
pub const SCHEMA_SRC: &str = include_str!("../policies/schema.cedarschema");
/// The core policies, shipped with the release.
pub const CORE_POLICIES_SRC: &str = include_str!("../policies/core.cedar");

/// The annotation that marks a permit as "ask the owner" rather than "allow".
const DECISION: &str = "decision";
/// The annotation that names a policy.
const ID: &str = "id";

/// Policies could not be loaded. Each message names the file and says what is wrong; the
/// daemon refuses to start on one rather than run with a policy silently left out.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The shipped schema or core policies are broken (a bug in this release).
    #[error("built-in {what} is invalid: {message}")]
    Builtin {
        /// `schema` or `core policies`.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The policy directory could not be read.
    #[error("{}: {message}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// One policy file is unreadable, does not parse, or fails strict validation.
    #[error("{}: {message}", file.display())]
    File {
        /// The file (or, for policies given in memory, its name).
        file: PathBuf,
        /// What is wrong, with line and column where Cedar says.
        message: String,
    },
    /// A protected-resource glob is malformed.
    #[error("invalid protected resource: {0}")]
    Protected(String),
}

/// Everything parsed and validated, ready for the authorizer.
#[derive(Debug)]
pub(crate) struct Policies {
    pub(crate) set: PolicySet,
    /// Ids of the permits annotated `@decision("ask")`.
    pub(crate) ask: HashSet<String>,
    /// Ids of the owner's policies, in load order.
    pub(crate) owner: Vec<String>,
}

/// The schema and a validator for it, built once.
#[derive(Debug)]
pub(crate) struct Cedar {
    pub(crate) validator: Validator,
}

impl Cedar {
    pub(crate) fn new() -> Result<Cedar, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA_SRC).map_err(|e| PolicyError::Builtin {
                what: "schema",
                message: render(&e, SCHEMA_SRC),
            })?;
        Ok(Cedar {
            validator: Validator::new(schema),
        })
    }

    /// Core policies plus the owner's `(file name, text)` sources, all validated.
    /// Errors name `dir.join(file name)` when `dir` is given.
    pub(crate) fn build(
        &self,
        sources: &[(String, String)],
        dir: Option<&Path>,
    ) -> Result<Policies, PolicyError> {
        let core = self
            .parse_and_validate("core.cedar", CORE_POLICIES_SRC, true)
            .map_err(|message| PolicyError::Builtin {
                what: "core policies",
                message,
            })?;
        let mut set = PolicySet::new();
        let mut ask = HashSet::new();
        let mut owner = Vec::new();
        for (policy, is_ask) in core {
            if is_ask {
                ask.insert(policy.id().to_string());
            }
            set.add(policy).map_err(|e| PolicyError::Builtin {
                what: "core policies",
                message: e.to_string(),
            })?;
        }
        for (name, text) in sources {
            let file_err = |message: String| PolicyError::File {
                file: dir.map_or_else(|| PathBuf::from(name), |d| d.join(name)),
                message,
            };
            for (policy, is_ask) in self
                .parse_and_validate(name, text, false)
                .map_err(file_err)?
            {
                let id = policy.id().to_string();
                set.add(policy).map_err(|_| {
                    file_err(format!(
                        "policy id {id:?} is already used by another policy; ids must be unique across files"
                    ))
                })?;
                if is_ask {
                    ask.insert(id.clone());
                }
                owner.push(id);
            }
        }
        Ok(Policies { set, ask, owner })
    }

    /// Parses one file, names its policies (`@id`, else `<file>#<n>`), checks the annotations
    /// gyrus gives meaning to, and validates the file in strict mode.
    fn parse_and_validate(
        &self,
        name: &str,
        text: &str,
        core: bool,
    ) -> Result<Vec<(Policy, bool)>, String> {
        let parsed = PolicySet::from_str(text).map_err(|e| {
            e.iter()
                .map(|e| render(e, text))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        if parsed.templates().next().is_some() {
            return Err(
                "templates (policies with ?principal or ?resource slots) are not supported; write static policies".into(),
            );
        }
        // `from_str` names policies policy0, policy1, … in file order.
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut out = Vec::with_capacity(policies.len());
        for (n, policy) in policies.into_iter().enumerate() {
            let id = match policy.annotation(ID) {
                Some(id) if id.trim().is_empty() => {
                    return Err(format!("policy #{} has an empty @id", n + 1));
                }
                Some(id) => id.to_string(),
                None => format!("{name}#{}", n + 1),
            };
            if !core && id.starts_with("core.") {
                return Err(format!(
                    "policy {id:?}: ids starting with \"core.\" are reserved for the built-in policies"
                ));
            }
            let is_ask = match policy.annotation(DECISION) {
                None => false,
                Some("ask") if policy.effect() == Effect::Permit => true,
                Some("ask") => {
                    return Err(format!(
                        "policy {id:?}: @decision(\"ask\") only makes sense on a permit"
                    ));
                }
                Some(other) => {
                    return Err(format!(
                        "policy {id:?}: unknown @decision({other:?}); the only one is @decision(\"ask\")"
                    ));
                }
            };
            out.push((policy.new_id(PolicyId::new(&id)), is_ask));
        }
        let set = PolicySet::from_policies(out.iter().map(|(p, _)| p.clone()))
            .map_err(|e| format!("{e} (two policies share an @id)"))?;
        let result = self.validator.validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            return Err(result
                .validation_errors()
                .map(|e| render(e, text))
                .collect::<Vec<_>>()
                .join("; "));
        }
        Ok(out)
    }
}

/// Reads every `*.cedar` file directly in `dir`, sorted by name. A missing directory means no
/// owner policies; an unreadable one, or a file that is not UTF-8, is an error.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let dir_err = |e: std::io::Error| PolicyError::Dir {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_err(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(dir_err)?.path();
        if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::File {
                file: path.clone(),
                message: e.to_string(),
            })?;
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Ok((name, text))
        })
        .collect()
}

/// A Cedar diagnostic as one line: `line L:C: message (help)`.
fn render(d: &dyn Diagnostic, text: &str) -> String {
    let mut out = String::new();
    if let Some(offset) = d.labels().and_then(|mut l| l.next()).map(|l| l.offset()) {
        let before = text.get(..offset.min(text.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        out.push_str(&format!("line {line}:{col}: "));
    }
    out.push_str(&d.to_string());
    if let Some(help) = d.help() {
        out.push_str(&format!(" (help: {help})"));
    }
    out
}
