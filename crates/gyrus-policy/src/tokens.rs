//! API tokens: 256 random bits shown once; only their SHA-256 is kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::Principal;

/// Every token starts with this, so secret scanners and people can recognise one.
const PREFIX: &str = "gyrus_";
const SECRET_BYTES: usize = 32;
const FILE_VERSION: u32 = 1;

/// A freshly minted token in plain text. Shown to the owner once; `Debug` never prints it.
pub struct Secret(String);

impl Secret {
    /// The token text, for printing it once to the owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Whether a token can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Usable.
    Active,
    /// Past its expiry time.
    Expired,
    /// Revoked by the owner.
    Revoked,
}

/// What may be shown about a token: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Stable id, never reused.
    pub id: String,
    /// The owner's name for it.
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, if it expires.
    pub expires_at: Option<u64>,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<u64>,
    /// Usable, expired or revoked, as of the moment this was produced.
    pub state: TokenState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: String,
    name: String,
    /// Hex SHA-256 of the token text.
    sha256: String,
    created_at: u64,
    expires_at: Option<u64>,
    revoked_at: Option<u64>,
}

impl Record {
    fn state(&self, now: u64) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|t| now >= t) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }

    fn info(&self, now: u64) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            state: self.state(now),
        }
    }
}

/// Token management failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name breaks the naming rule.
    #[error(
        "invalid token name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidName(String),
    /// An active token already has this name.
    #[error("a token named {0:?} already exists; revoke it first or choose another name")]
    NameTaken(String),
    /// No active token has this name.
    #[error("no active token named {0:?}; `gyrus token list` shows them")]
    NotFound(String),
    /// The expiry is zero or too far away.
    #[error("expiry must be between 1 second and 100 years")]
    InvalidExpiry,
    /// The operating system's random source failed.
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    /// `user/tokens.json` could not be read or written.
    #[error("{path}: {message}")]
    Store {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token matched.
    Unknown,
    /// The token matched but has expired.
    Expired,
    /// The token matched but was revoked.
    Revoked,
}

impl AuthFailure {
    /// A short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Unknown => "unknown",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// The token hashes in `user/tokens.json`, held in memory by the daemon. Every change is
/// written to disk atomically before it takes effect in memory, so what the API acknowledged
/// survives a crash and a failed write changes nothing.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    records: Vec<Record>,
    /// Decoded `records[i].sha256`, kept beside them for constant-time comparison.
    hashes: Vec<[u8; 32]>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(buf)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl TokenStore {
    /// Opens the store at `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<TokenStore, TokenError> {
        let store_err = |message: String| TokenError::Store {
            path: path.to_path_buf(),
            message,
        };
        let records = match std::fs::read(path) {
            Ok(bytes) => {
                let file: TokenFile = serde_json::from_slice(&bytes)
                    .map_err(|e| store_err(format!("not a valid token file: {e}")))?;
                if file.version != FILE_VERSION {
                    return Err(store_err(format!(
                        "token file version {} is not supported (expected {FILE_VERSION})",
                        file.version
                    )));
                }
                file.tokens
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(store_err(e.to_string())),
        };
        let hashes = records
            .iter()
            .map(|r| {
                from_hex(&r.sha256)
                    .ok_or_else(|| store_err(format!("token {:?} has a malformed hash", r.name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(TokenStore {
            path: path.to_path_buf(),
            records,
            hashes,
        })
    }

    /// Mints a token named `name`, valid for `ttl` (forever if `None`), and persists its hash.
    pub fn create(
        &mut self,
        name: &str,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<(TokenInfo, Secret), TokenError> {
        if !valid_name(name) {
            return Err(TokenError::InvalidName(name.to_string()));
        }
        let now = unix(now);
        if self
            .records
            .iter()
            .any(|r| r.name == name && r.state(now) == TokenState::Active)
        {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        let expires_at = match ttl {
            None => None,
            Some(d) if d.is_zero() || d.as_secs() > 100 * 365 * 86_400 => {
                return Err(TokenError::InvalidExpiry);
            }
            Some(d) => Some(now + d.as_secs().max(1)),
        };
        let secret = Secret(format!(
            "{PREFIX}{}",
            to_hex(&random_bytes::<SECRET_BYTES>()?)
        ));
        let hash = sha256(secret.expose());
        let record = Record {
            id: format!("tok_{}", to_hex(&random_bytes::<8>()?)),
            name: name.to_string(),
            sha256: to_hex(&hash),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let mut records = self.records.clone();
        records.push(record.clone());
        self.persist(&records)?;
        self.records = records;
        self.hashes.push(hash);
        Ok((record.info(now), secret))
    }

    /// Revokes the active token named `name`; it stops working at once.
    pub fn revoke(&mut self, name: &str, now: SystemTime) -> Result<TokenInfo, TokenError> {
        let now = unix(now);
        let index = self
            .records
            .iter()
            .position(|r| r.name == name && r.state(now) == TokenState::Active)
            .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
        let mut records = self.records.clone();
        records[index].revoked_at = Some(now);
        self.persist(&records)?;
        self.records = records;
        Ok(self.records[index].info(now))
    }

    /// Every token ever created here, oldest first.
    pub fn list(&self, now: SystemTime) -> Vec<TokenInfo> {
        let now = unix(now);
        self.records.iter().map(|r| r.info(now)).collect()
    }

    /// Number of tokens usable now.
    pub fn active_count(&self, now: SystemTime) -> usize {
        let now = unix(now);
        self.records
            .iter()
            .filter(|r| r.state(now) == TokenState::Active)
            .count()
    }

    /// Checks a presented token. The comparison visits every stored hash and does not stop at
    /// a match, so its timing reveals nothing about which hash (or how much of one) matched.
    pub fn authenticate(&self, presented: &str, now: SystemTime) -> Result<Principal, AuthFailure> {
        let hash = sha256(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, stored) in self.hashes.iter().enumerate() {
            let hit = stored.ct_eq(&hash);
            index.conditional_assign(&(i as u64), hit);
            found |= hit;
        }
        if !bool::from(found) {
            return Err(AuthFailure::Unknown);
        }
        let record = usize::try_from(index)
            .ok()
            .and_then(|i| self.records.get(i))
            .ok_or(AuthFailure::Unknown)?;
        match record.state(unix(now)) {
            TokenState::Active => Ok(Principal::Token {
                id: record.id.clone(),
                name: record.name.clone(),
            }),
            TokenState::Expired => Err(AuthFailure::Expired),
            TokenState::Revoked => Err(AuthFailure::Revoked),
        }
    }

    fn persist(&self, records: &[Record]) -> Result<(), TokenError> {
        let file = TokenFile {
            version: FILE_VERSION,
            tokens: records.to_vec(),
        };
        let store_err = |message: String| TokenError::Store {
            path: self.path.clone(),
            message,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| store_err(e.to_string()))?;
        bytes.push(b'\n');
        gyrus_home::write_atomic(&self.path, &bytes, 0o600).map_err(|e| store_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
        (dir, store)
    }

    #[test]
    fn created_token_authenticates_and_only_its_hash_is_stored() {
        let (dir, mut store) = store();
        let now = SystemTime::now();
        let (info, secret) = store.create("laptop", None, now).unwrap();
        assert!(secret.expose().starts_with("gyrus_"));
        assert_eq!(secret.expose().len(), PREFIX.len() + 64);
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let on_disk = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!on_disk.contains(secret.expose()), "plain token on disk");
        assert!(on_disk.contains(&to_hex(&sha256(secret.expose()))));

        let principal = store.authenticate(secret.expose(), now).unwrap();
        assert_eq!(
            principal,
            Principal::Token {
                id: info.id.clone(),
                name: "laptop".into()
            }
        );
        assert_eq!(
            store.authenticate("gyrus_wrong", now),
            Err(AuthFailure::Unknown)
        );

        // A reopened store (a restarted daemon) still knows it.
        let reopened = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
        assert!(reopened.authenticate(secret.expose(), now).is_ok());
    }

    #[test]
    fn revoked_and_expired_tokens_fail() {
        let (_dir, mut store) = store();
        let now = SystemTime::now();
        let (_, a) = store.create("a", None, now).unwrap();
        let (_, b) = store
            .create("b", Some(Duration::from_secs(60)), now)
            .unwrap();
        store.revoke("a", now).unwrap();
        assert_eq!(
            store.authenticate(a.expose(), now),
            Err(AuthFailure::Revoked)
        );
        assert!(store.authenticate(b.expose(), now).is_ok());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            store.authenticate(b.expose(), later),
            Err(AuthFailure::Expired)
        );
        let states: Vec<_> = store.list(later).into_iter().map(|t| t.state).collect();
        assert_eq!(states, [TokenState::Revoked, TokenState::Expired]);
        assert_eq!(store.active_count(now), 1);
    }

    #[test]
    fn names_are_checked_and_unique_among_active_tokens() {
        let (_dir, mut store) = store();
        let now = SystemTime::now();
        for bad in ["", "-x", "a b", "ünï", &"x".repeat(65)] {
            assert!(matches!(
                store.create(bad, None, now),
                Err(TokenError::InvalidName(_))
            ));
        }
        let (first, _) = store.create("ci.runner-1", None, now).unwrap();
        assert!(matches!(
            store.create("ci.runner-1", None, now),
            Err(TokenError::NameTaken(_))
        ));
        store.revoke("ci.runner-1", now).unwrap();
        let (second, _) = store.create("ci.runner-1", None, now).unwrap();
        assert_ne!(first.id, second.id, "ids are never reused");
        assert!(matches!(
            store.revoke("nope", now),
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            store.create("z", Some(Duration::ZERO), now),
            Err(TokenError::InvalidExpiry)
        ));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = TokenStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("not a valid token file"), "{err}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The store's directory vanishes, so persisting fails.
        let sub = dir.path().join("gone");
        std::fs::create_dir(&sub).unwrap();
        let mut store = TokenStore::open(&sub.join("tokens.json")).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        assert!(store.create("x", None, SystemTime::now()).is_err());
        assert!(store.list(SystemTime::now()).is_empty());
    }
}
