//! From a spec to what runs it: its key, its model file, its driver.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CortexSpec, DriverKind, KeySource, LOCAL_ALIASES, RegistryError};
use crate::driver::{
    AnthropicDriver, Driver, DriverConfig, DriverError, GeminiDriver, OllamaDriver, OpenAiDriver,
    Secret, Timeouts,
};

/// The longest key file read; anything larger is not an API key.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Reads the key of `spec` from where its [`KeySource`] says: the environment through `env`,
/// or a key file inside `user_dir`. A key file must resolve (symlinks followed) to a regular
/// file inside `user_dir`, owned by the owner of `user_dir`, with mode 0600 or stricter; its
/// content, trimmed, is the key. Errors say where the key was looked for, never what it is.
pub fn resolve_key(
    spec: &CortexSpec,
    user_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, RegistryError> {
    spec.validate()?;
    let fail = |reason: String| RegistryError::Key {
        cortex: spec.name.clone(),
        reason,
    };
    match &spec.key {
        KeySource::None => Ok(None),
        KeySource::Env(var) => match env(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(Secret::new(value.trim()))),
            Some(_) => Err(fail(format!(
                "the environment variable {var} that holds its key is empty: set it in the \
                 daemon's environment, or use --key-file"
            ))),
            None => Err(fail(format!(
                "the environment variable {var} that holds its key is not set: set it in the \
                 daemon's environment, or use --key-file"
            ))),
        },
        KeySource::File(relative) => read_key_file(user_dir, relative).map(Some).map_err(fail),
    }
}

fn read_key_file(user_dir: &Path, relative: &Path) -> Result<Secret, String> {
    let shown = user_dir.join(relative);
    let shown = shown.display();
    let root = std::fs::canonicalize(user_dir)
        .map_err(|e| format!("cannot open the user layer {}: {e}", user_dir.display()))?;
    let real = match std::fs::canonicalize(user_dir.join(relative)) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "its key file {shown} does not exist: write the key into it and `chmod 600` it"
            ));
        }
        Err(e) => return Err(format!("cannot open its key file {shown}: {e}")),
    };
    if !real.starts_with(&root) {
        return Err(format!(
            "its key file {shown} leads outside the user layer ({}): keep key files inside {} \
             and not behind a symlink that points out",
            real.display(),
            root.display()
        ));
    }
    let mut file =
        std::fs::File::open(&real).map_err(|e| format!("cannot open its key file {shown}: {e}"))?;
    // The checks look at the opened file, so what is checked is what is read.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect its key file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "its key file {shown} is not a regular file: put the key in a plain file"
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !0o600 != 0 {
        return Err(format!(
            "its key file {shown} has mode {mode:04o}, so others may read it: run \
             `chmod 600 {shown}`"
        ));
    }
    let owner = std::fs::metadata(&root)
        .map_err(|e| format!("cannot inspect the user layer {}: {e}", root.display()))?
        .uid();
    if meta.uid() != owner {
        return Err(format!(
            "its key file {shown} belongs to another user (uid {}, the user layer's owner is \
             uid {owner}): `chown` it to the owner",
            meta.uid()
        ));
    }
    if meta.len() > MAX_KEY_BYTES {
        return Err(format!(
            "its key file {shown} is {} bytes, too large for an API key: put only the key in it",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.by_ref()
        .take(MAX_KEY_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                format!("its key file {shown} is not UTF-8 text: put only the key in it")
            }
            _ => format!("cannot read its key file {shown}: {}", e.kind()),
        })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!(
            "its key file {shown} is empty: write the key into it"
        ));
    }
    Ok(Secret::new(key))
}

/// The `.gguf` file of a `local` cortex: an alias resolved in `models_dir`, or the path
/// itself. The file must exist.
pub fn resolve_model(spec: &CortexSpec, models_dir: &Path) -> Result<PathBuf, RegistryError> {
    spec.validate()?;
    let fail = |reason: String| RegistryError::Model {
        cortex: spec.name.clone(),
        reason,
    };
    if spec.driver != DriverKind::Local {
        return Err(fail(format!(
            "is a {} cortex; only a local cortex has a model file",
            spec.driver
        )));
    }
    let (path, alias) = match LOCAL_ALIASES.iter().find(|(a, _)| *a == spec.model) {
        Some((alias, file)) => (models_dir.join(file), Some(alias)),
        None => (PathBuf::from(&spec.model), None),
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(fail(format!(
            "its model {} is not a regular file: give the path of a .gguf file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail(match alias {
            Some(alias) => format!(
                "its model `{alias}` is {}, which does not exist: put the file there \
                 (`gyrus cortex pull smollm2` fetches it) or give a .gguf path",
                path.display()
            ),
            None => format!(
                "its model file {} does not exist: give the path of a .gguf file",
                path.display()
            ),
        })),
        Err(e) => Err(fail(format!(
            "cannot open its model file {}: {e}",
            path.display()
        ))),
    }
}

/// The HTTP driver of `spec`, named after the cortex, with `key` and `timeouts`. A `local`
/// cortex has none: the daemon loads the embedded cortex itself.
pub fn build_driver(
    spec: &CortexSpec,
    key: Option<Secret>,
    timeouts: Timeouts,
) -> Result<Arc<dyn Driver>, RegistryError> {
    spec.validate()?;
    let Some(url) = spec.base_url() else {
        return Err(RegistryError::Local(spec.name.clone()));
    };
    let mut config = DriverConfig::new(spec.name.clone(), url).with_timeouts(timeouts);
    if let Some(key) = key {
        config = config.with_key(key);
    }
    let driver: Result<Arc<dyn Driver>, DriverError> = match spec.driver {
        DriverKind::Openai => OpenAiDriver::new(config).map(|d| Arc::new(d) as Arc<dyn Driver>),
        DriverKind::Anthropic => {
            AnthropicDriver::new(config).map(|d| Arc::new(d) as Arc<dyn Driver>)
        }
        DriverKind::Gemini => GeminiDriver::new(config).map(|d| Arc::new(d) as Arc<dyn Driver>),
        DriverKind::Ollama => OllamaDriver::new(config).map(|d| Arc::new(d) as Arc<dyn Driver>),
        DriverKind::Local => return Err(RegistryError::Local(spec.name.clone())),
    };
    driver.map_err(|source| RegistryError::Driver {
        cortex: spec.name.clone(),
        source,
    })
}
