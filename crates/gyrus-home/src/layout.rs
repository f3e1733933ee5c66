//! The home's four layers and the well-known files inside them.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_CONFIG;

/// One of the four state layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Immutable generations: built-in policies, skills, schemas.
    Core,
    /// The owner's configuration, policies and token hashes: irreplaceable.
    User,
    /// Memory database and audit log: continuously written.
    Memory,
    /// Socket, pid file, caches: ephemeral.
    Runtime,
}

impl Layer {
    /// All layers, in their canonical order.
    pub const ALL: [Layer; 4] = [Layer::Core, Layer::User, Layer::Memory, Layer::Runtime];

    /// The directory name of the layer inside the home.
    pub fn dir_name(self) -> &'static str {
        match self {
            Layer::Core => "core",
            Layer::User => "user",
            Layer::Memory => "memory",
            Layer::Runtime => "runtime",
        }
    }

    /// The layer's backup rule, in words.
    pub fn backup_rule(self) -> &'static str {
        match self {
            Layer::Core => "recoverable from the release; verify hashes",
            Layer::User => "irreplaceable: strongest tier",
            Layer::Memory => "continuously written: frequent online snapshots",
            Layer::Runtime => "ephemeral: not backed up",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// Errors while creating or reading the home.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// A directory or file could not be created or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "cannot create".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error("{0} exists but is not a directory; choose another --home")]
    NotADirectory(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HomeError + 'a {
    move |source| HomeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Home::init`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Layers whose directory was created now.
    pub created_layers: Vec<Layer>,
    /// Whether the default `user/gyrus.toml` was written now.
    pub wrote_default_config: bool,
}

impl InitReport {
    /// True when this was the home's first start.
    pub fn is_new(&self) -> bool {
        self.created_layers.len() == Layer::ALL.len()
    }
}

/// A layer's location and current size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerUsage {
    /// Which layer.
    pub layer: Layer,
    /// Its directory.
    pub path: PathBuf,
    /// Total bytes of the regular files in it, recursively.
    pub bytes: u64,
    /// Number of regular files in it, recursively.
    pub files: u64,
}

/// A gyrus home directory. Constructing one touches nothing; [`Home::init`] creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

/// Mode for the home and every layer directory: only the owner may enter.
const DIR_MODE: u32 = 0o700;

impl Home {
    /// A home rooted at `root` (should be absolute; see [`crate::resolve`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `layer`.
    pub fn layer(&self, layer: Layer) -> PathBuf {
        self.root.join(layer.dir_name())
    }

    /// `user/gyrus.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.layer(Layer::User).join("gyrus.toml")
    }

    /// `runtime/gyrus.sock`: the owner's API socket.
    pub fn socket_path(&self) -> PathBuf {
        self.layer(Layer::Runtime).join("gyrus.sock")
    }

    /// `runtime/gyrus.pid`: the running daemon's pid, also its lock.
    pub fn pid_path(&self) -> PathBuf {
        self.layer(Layer::Runtime).join("gyrus.pid")
    }

    /// `runtime/listen`: the HTTP address the running daemon bound.
    pub fn listen_path(&self) -> PathBuf {
        self.layer(Layer::Runtime).join("listen")
    }

    /// Creates the home and its four layers (mode 0700) and writes the default
    /// `user/gyrus.toml` if there is none. Idempotent; layers that exist get their mode fixed.
    pub fn init(&self) -> Result<InitReport, HomeError> {
        let mut report = InitReport::default();
        ensure_dir(&self.root)?;
        for layer in Layer::ALL {
            if ensure_dir(&self.layer(layer))? {
                report.created_layers.push(layer);
            }
        }
        let config = self.config_path();
        if !config.exists() {
            crate::write_atomic(&config, DEFAULT_CONFIG.as_bytes(), 0o600)
                .map_err(io_err("cannot write", &config))?;
            report.wrote_default_config = true;
        }
        Ok(report)
    }

    /// Each layer's size. A missing layer counts as empty; unreadable entries are skipped,
    /// because a size report must not fail on one odd file.
    pub fn usage(&self) -> Vec<LayerUsage> {
        Layer::ALL
            .iter()
            .map(|&layer| {
                let path = self.layer(layer);
                let (bytes, files) = dir_size(&path);
                LayerUsage {
                    layer,
                    path,
                    bytes,
                    files,
                }
            })
            .collect()
    }
}

/// Creates `dir` with mode 0700 if missing (returns true), else checks it is a directory and
/// tightens its mode to 0700.
fn ensure_dir(dir: &Path) -> Result<bool, HomeError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o777 != DIR_MODE {
                fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(io_err("cannot set mode 0700 on", dir))?;
            }
            Ok(false)
        }
        Ok(_) => Err(HomeError::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io_err("cannot create", dir))?;
            // DirBuilder's mode passes through the umask; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err("cannot set mode 0700 on", dir))?;
            Ok(true)
        }
        Err(e) => Err(io_err("cannot read", dir)(e)),
    }
}

/// Sums regular files under `dir` without following symlinks.
fn dir_size(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_creates_four_private_layers_and_default_config_once() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        let first = home.init().unwrap();
        assert!(first.is_new());
        assert!(first.wrote_default_config);
        for layer in Layer::ALL {
            assert_eq!(mode(&home.layer(layer)), 0o700, "{layer}");
        }
        assert_eq!(mode(home.root()), 0o700);
        assert_eq!(mode(&home.config_path()), 0o600);

        fs::write(home.config_path(), "# mine\n").unwrap();
        fs::set_permissions(home.layer(Layer::User), fs::Permissions::from_mode(0o755)).unwrap();
        let second = home.init().unwrap();
        assert_eq!(second, InitReport::default());
        assert_eq!(fs::read_to_string(home.config_path()).unwrap(), "# mine\n");
        assert_eq!(mode(&home.layer(Layer::User)), 0o700, "mode tightened");
    }

    #[test]
    fn init_refuses_a_file_in_place_of_the_home() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let err = Home::new(&file).init().unwrap_err();
        assert!(matches!(err, HomeError::NotADirectory(_)), "{err}");
    }

    #[test]
    fn usage_counts_files_per_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        home.init().unwrap();
        fs::create_dir(home.layer(Layer::Memory).join("sub")).unwrap();
        fs::write(home.layer(Layer::Memory).join("sub/a"), [0u8; 100]).unwrap();
        fs::write(home.layer(Layer::Memory).join("b"), [0u8; 20]).unwrap();
        let usage = home.usage();
        let memory = usage.iter().find(|u| u.layer == Layer::Memory).unwrap();
        assert_eq!((memory.bytes, memory.files), (120, 2));
        let core = usage.iter().find(|u| u.layer == Layer::Core).unwrap();
        assert_eq!((core.bytes, core.files), (0, 0));
    }
}
