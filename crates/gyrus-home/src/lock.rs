//! One daemon per home: an exclusive `flock` on `runtime/gyrus.pid`.
//!
//! The kernel drops a `flock` when its holder dies, so a pid file left by `kill -9` never blocks
//! the next start: the lock, not the file's existence, says whether a daemon runs.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Another daemon holds the home, or the lock file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A live daemon holds the lock.
    #[error("already running (pid {pid})")]
    AlreadyRunning {
        /// The pid written by the daemon holding the lock (0 if it had not written it yet).
        pid: u32,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The pid file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Proof that this process is the home's only daemon. Dropping it removes the pid file and
/// releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the lock at `path` (normally `runtime/gyrus.pid`) without waiting, and writes this
    /// process's pid into it.
    pub fn acquire(path: &Path) -> Result<DaemonLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let pid = text.trim().parse().unwrap_or(0);
                    return Err(LockError::AlreadyRunning { pid });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // A stopping daemon unlinks the file before it lets go of the lock. If we locked
            // that unlinked file, the path now names another (or no) file: start over, or two
            // daemons could each hold "the" lock.
            let held = file.metadata().map_err(io)?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {}
                _ => continue,
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(DaemonLock {
                file,
                path: path.to_path_buf(),
            });
        }
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock (see `acquire`); closing the file releases it.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_reports_the_holder_pid_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gyrus.pid");
        let first = DaemonLock::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        match DaemonLock::acquire(&path) {
            Err(LockError::AlreadyRunning { pid }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(first);
        assert!(!path.exists(), "pid file removed on drop");
        let again = DaemonLock::acquire(&path).unwrap();
        drop(again);
    }

    #[test]
    fn a_stale_pid_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gyrus.pid");
        fs::write(&path, "999999\n").unwrap();
        let lock = DaemonLock::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
    }
}
