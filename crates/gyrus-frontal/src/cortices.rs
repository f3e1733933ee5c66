//! The configured cortices as the daemon runs them: the registry file read and watched, each
//! cortex's driver built (HTTP drivers at load, the embedded model at its first call), and
//! each one's health.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use gyrus_cortex::driver::{Driver, LocalDriver, Timeouts};
use gyrus_cortex::local::LocalModel;
use gyrus_cortex::registry::{
    CortexSpec, DriverKind, Registry, RegistryError, build_driver, resolve_key, resolve_model,
};
use gyrus_cortex::route::AvailableCortex;
use serde::Serialize;

/// Reads an environment variable of the daemon (a cortex's key).
pub type KeyEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How a cortex is reached once loaded.
#[derive(Clone)]
pub(crate) enum Reach {
    /// An HTTP driver, built.
    Http(Arc<dyn Driver>),
    /// The embedded model at this path, loaded at its first call.
    Local(PathBuf),
    /// It cannot be used: why, and what to do.
    Broken(String),
}

/// One configured cortex and how it is reached.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub spec: CortexSpec,
    pub reach: Reach,
}

/// A cortex as `gyrus cortex list` and `GET /api/v1/cortices` show it. Never a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CortexStatus {
    /// Its name; `gyrus/<name>` selects it.
    pub name: String,
    /// Its driver.
    pub driver: String,
    /// Its model.
    pub model: String,
    /// Its tier.
    pub tier: String,
    /// The URL it is reached at (none for the embedded cortex).
    pub url: Option<String>,
    /// Where its key comes from: `env:VAR`, `file:PATH` or none.
    pub key: Option<String>,
    /// Calls it takes at once.
    pub max_concurrency: u32,
    /// USD per million input tokens, when priced.
    pub price_in: Option<f64>,
    /// USD per million output tokens, when priced.
    pub price_out: Option<f64>,
    /// Whether it can be used: its key is there, its model file exists.
    pub healthy: bool,
    /// Why not, and what to do; or for the embedded cortex whether it is loaded.
    pub detail: String,
}

/// The registry file's identity, to notice edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// Everything read from one version of the registry file.
#[derive(Clone, Default)]
pub(crate) struct Snapshot {
    pub stamp: Option<Stamp>,
    pub cortices: Vec<Loaded>,
    /// Why the file could not be read, if it could not (then no cortex is configured).
    pub error: Option<String>,
}

impl Snapshot {
    /// Reads the registry at `path` and builds what each cortex needs.
    pub fn load(
        path: &Path,
        user_dir: &Path,
        models_dir: &Path,
        env: &KeyEnv,
        timeouts: Timeouts,
    ) -> Snapshot {
        let stamp = Stamp::of(path);
        let registry = match Registry::open(path) {
            Ok(registry) => registry,
            Err(e) => {
                return Snapshot {
                    stamp,
                    cortices: Vec::new(),
                    error: Some(e.to_string()),
                };
            }
        };
        let cortices = registry
            .list()
            .iter()
            .map(|spec| Loaded {
                reach: reach(spec, user_dir, models_dir, env, timeouts),
                spec: spec.clone(),
            })
            .collect();
        Snapshot {
            stamp,
            cortices,
            error: None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Loaded> {
        self.cortices.iter().find(|c| c.spec.name == name)
    }

    /// The cortices as the router sees them.
    pub fn available(&self) -> Vec<AvailableCortex> {
        self.cortices
            .iter()
            .map(|c| AvailableCortex {
                name: c.spec.name.clone(),
                tier: c.spec.tier,
                healthy: !matches!(c.reach, Reach::Broken(_)),
                price: c.spec.price.unwrap_or_default(),
            })
            .collect()
    }
}

fn reach(
    spec: &CortexSpec,
    user_dir: &Path,
    models_dir: &Path,
    env: &KeyEnv,
    timeouts: Timeouts,
) -> Reach {
    let built = if spec.driver == DriverKind::Local {
        resolve_model(spec, models_dir).map(Reach::Local)
    } else {
        resolve_key(spec, user_dir, |var| env(var))
            .and_then(|key| build_driver(spec, key, timeouts))
            .map(Reach::Http)
    };
    built.unwrap_or_else(|e: RegistryError| Reach::Broken(e.to_string()))
}

/// The status of `loaded`; `local_loaded` says whether its embedded model is in memory.
pub(crate) fn status(loaded: &Loaded, local_loaded: bool) -> CortexStatus {
    let spec = &loaded.spec;
    let (healthy, detail) = match &loaded.reach {
        Reach::Http(_) => (true, "ready".to_owned()),
        Reach::Local(path) if local_loaded => (true, format!("loaded from {}", path.display())),
        Reach::Local(path) => (
            true,
            format!("{} (loads at its first call)", path.display()),
        ),
        Reach::Broken(why) => (false, why.clone()),
    };
    CortexStatus {
        name: spec.name.clone(),
        driver: spec.driver.to_string(),
        model: spec.model.clone(),
        tier: spec.tier.to_string(),
        url: spec.base_url().map(str::to_owned),
        key: match &spec.key {
            gyrus_cortex::registry::KeySource::None => None,
            gyrus_cortex::registry::KeySource::Env(var) => Some(format!("env:{var}")),
            gyrus_cortex::registry::KeySource::File(path) => {
                Some(format!("file:{}", path.display()))
            }
        },
        max_concurrency: spec.max_concurrency,
        price_in: spec.price.map(|p| p.input_per_mtok),
        price_out: spec.price.map(|p| p.output_per_mtok),
        healthy,
        detail,
    }
}

/// Embedded models loaded so far, one per file, shared by every cortex that names it.
#[derive(Default)]
pub(crate) struct LocalModels {
    models: std::sync::Mutex<HashMap<PathBuf, Arc<LocalModel>>>,
    /// Serialises loads, so two first calls do not load one file twice.
    loading: tokio::sync::Mutex<()>,
}

impl LocalModels {
    pub fn is_loaded(&self, path: &Path) -> bool {
        self.lock().contains_key(path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<LocalModel>>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The driver of the embedded cortex `name` over the model at `path`, loading it once.
    pub async fn driver(&self, name: &str, path: &Path) -> Result<LocalDriver, String> {
        if let Some(model) = self.lock().get(path) {
            return Ok(LocalDriver::new(name, model.clone()));
        }
        let _one = self.loading.lock().await;
        if let Some(model) = self.lock().get(path) {
            return Ok(LocalDriver::new(name, model.clone()));
        }
        let file = path.to_owned();
        let model = tokio::task::spawn_blocking(move || LocalModel::load(&file))
            .await
            .map_err(|e| format!("loading {} stopped: {e}", path.display()))?
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let model = Arc::new(model);
        self.lock().insert(path.to_owned(), model.clone());
        Ok(LocalDriver::new(name, model))
    }
}
