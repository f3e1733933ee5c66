//! The log's Ed25519 signing key file (normally `user/audit.key`).
//!
//! The file holds the 32-byte secret seed, either raw or as 64 hex characters (a trailing
//! newline is fine). A new key is written as hex with a newline, mode 0600. A key file that
//! other users can read is refused, as `ssh` refuses a private key with loose permissions.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::error::AuditError;
use crate::hex;

/// Loads the key; `Ok(None)` if the file does not exist.
pub(crate) fn load(path: &Path) -> Result<Option<SigningKey>, AuditError> {
    let key_err = |reason: String| AuditError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(key_err(format!("cannot read it: {err}"))),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(format!(
            "other users can read it (mode {mode:04o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    let bytes = fs::read(path).map_err(|err| key_err(format!("cannot read it: {err}")))?;
    let seed = match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(raw) => Some(raw),
        Err(_) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| hex::decode_array(text.trim())),
    };
    let seed = seed.ok_or_else(|| {
        key_err(format!(
            "it holds {} bytes, not a key: expected 32 raw bytes or 64 hex characters; \
             restore the key from a backup",
            bytes.len()
        ))
    })?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

/// Creates a new random key file (hex, mode 0600).
pub(crate) fn create(path: &Path) -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|err| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("the operating system's random source failed: {err}"),
    })?;
    let mut text = hex::encode(&seed);
    text.push('\n');
    gyrus_home::write_atomic(path, text.as_bytes(), 0o600).map_err(|source| AuditError::Io {
        action: "write the audit key",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        assert!(load(&path).unwrap().is_none());
        let key = create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert_eq!(load(&path).unwrap().unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn accepts_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        fs::write(&path, [5u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().to_bytes(), [5u8; 32]);
    }

    #[test]
    fn refuses_loose_permissions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        fs::write(&path, "00".repeat(32)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");

        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("expected 32 raw bytes or 64 hex"), "{err}");
    }
}
