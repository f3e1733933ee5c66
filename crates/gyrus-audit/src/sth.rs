//! Signed tree heads: the log's signed statement "my first `tree_size` entries have this root".
//!
//! The checkpoint file (normally `memory/audit.sth.json`) holds the latest one as JSON:
//!
//! ```json
//! {
//!   "tree_size": 100,
//!   "root_hash": "<64 hex>",
//!   "timestamp": 1700000000000,
//!   "public_key": "<64 hex: the Ed25519 public key>",
//!   "signature": "<128 hex: Ed25519 over the signed message>"
//! }
//! ```
//!
//! The signed message is `b"gyrus-sth-v1" || u64be(tree_size) || u64be(timestamp) || root`,
//! 60 bytes; `timestamp` is in milliseconds since the Unix epoch.

use std::fs;
use std::io;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hex;
use crate::merkle::Hash;

/// The domain-separation prefix of the message a tree head signs.
pub const STH_CONTEXT: &[u8; 12] = b"gyrus-sth-v1";

/// A signed tree head: the size and root of the log at a moment, signed by the log's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// How many entries the head covers (entries 1 to `tree_size`).
    pub tree_size: u64,
    /// The RFC 6962 root of those entries, hex.
    pub root_hash: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The Ed25519 public key that signed it, hex.
    pub public_key: String,
    /// The Ed25519 signature over [`SignedTreeHead::signed_message`], hex.
    pub signature: String,
}

/// Why a signed tree head is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SthError {
    /// A field is not the hex of the right number of bytes.
    #[error("its {field} is not {len} bytes of hex")]
    Malformed {
        /// The field.
        field: &'static str,
        /// How many bytes it should hold.
        len: usize,
    },
    /// It names a key other than the one trusted.
    #[error("it was signed by key {found}, not by this log's key {expected}")]
    WrongKey {
        /// The key it names.
        found: String,
        /// The key trusted.
        expected: String,
    },
    /// The signature does not match the content.
    #[error("its signature does not match its content")]
    BadSignature,
}

impl SignedTreeHead {
    /// The exact bytes a tree head signs:
    /// `b"gyrus-sth-v1" || u64be(tree_size) || u64be(timestamp) || root`.
    pub fn signed_message(tree_size: u64, timestamp: u64, root: &Hash) -> [u8; 60] {
        let mut message = [0u8; 60];
        message[..12].copy_from_slice(STH_CONTEXT);
        message[12..20].copy_from_slice(&tree_size.to_be_bytes());
        message[20..28].copy_from_slice(&timestamp.to_be_bytes());
        message[28..].copy_from_slice(root);
        message
    }

    /// Signs `root` as the root of the first `tree_size` entries.
    pub(crate) fn sign(key: &SigningKey, tree_size: u64, root: &Hash, timestamp: u64) -> Self {
        let message = Self::signed_message(tree_size, timestamp, root);
        Self {
            tree_size,
            root_hash: hex::encode(root),
            timestamp,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(&key.sign(&message).to_bytes()),
        }
    }

    /// The root hash as bytes.
    pub fn root(&self) -> Result<Hash, SthError> {
        hex::decode_array(&self.root_hash).ok_or(SthError::Malformed {
            field: "root_hash",
            len: 32,
        })
    }

    /// Checks that the head names `trusted_public_key` (hex) and that its signature is valid.
    ///
    /// Never trust the `public_key` inside the head on its own: anyone can sign a head with a
    /// key of their own. Pass the key you trust, e.g. [`crate::AuditLog::public_key`].
    pub fn verify(&self, trusted_public_key: &str) -> Result<(), SthError> {
        if !self.public_key.eq_ignore_ascii_case(trusted_public_key) {
            return Err(SthError::WrongKey {
                found: self.public_key.clone(),
                expected: trusted_public_key.to_owned(),
            });
        }
        let key_bytes: [u8; 32] =
            hex::decode_array(&self.public_key).ok_or(SthError::Malformed {
                field: "public_key",
                len: 32,
            })?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| SthError::Malformed {
            field: "public_key",
            len: 32,
        })?;
        let signature: [u8; 64] =
            hex::decode_array(&self.signature).ok_or(SthError::Malformed {
                field: "signature",
                len: 64,
            })?;
        let message = Self::signed_message(self.tree_size, self.timestamp, &self.root()?);
        key.verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| SthError::BadSignature)
    }
}

/// Reads the checkpoint file: `Ok(None)` if it does not exist, `Err(reason)` if it exists but
/// cannot be read or parsed.
pub(crate) fn read_checkpoint(path: &Path) -> Result<Option<SignedTreeHead>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read it: {err}")),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| format!("it is not a valid signed tree head: {err}"))
}

/// Replaces the checkpoint file atomically (mode 0600).
pub(crate) fn write_checkpoint(path: &Path, sth: &SignedTreeHead) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(sth).map_err(io::Error::other)?;
    json.push(b'\n');
    gyrus_home::write_atomic(path, &json, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signs_and_verifies() {
        let k = key(1);
        let trusted = hex::encode(k.verifying_key().as_bytes());
        let sth = SignedTreeHead::sign(&k, 42, &[7; 32], 1_700_000_000_000);
        sth.verify(&trusted).unwrap();
        assert_eq!(sth.root().unwrap(), [7; 32]);

        let mut tampered = sth.clone();
        tampered.tree_size = 41;
        assert_eq!(tampered.verify(&trusted), Err(SthError::BadSignature));
        let mut tampered = sth.clone();
        tampered.root_hash = hex::encode(&[8; 32]);
        assert_eq!(tampered.verify(&trusted), Err(SthError::BadSignature));
        let mut tampered = sth.clone();
        tampered.timestamp += 1;
        assert_eq!(tampered.verify(&trusted), Err(SthError::BadSignature));
    }

    #[test]
    fn a_head_signed_by_another_key_is_refused() {
        let trusted = hex::encode(key(1).verifying_key().as_bytes());
        let forged = SignedTreeHead::sign(&key(2), 1, &[0; 32], 0);
        assert!(matches!(
            forged.verify(&trusted),
            Err(SthError::WrongKey { .. })
        ));
    }

    #[test]
    fn the_signed_message_is_pinned() {
        let message = SignedTreeHead::signed_message(0x0102, 0x0304, &[0xaa; 32]);
        let mut expected = b"gyrus-sth-v1".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4]);
        expected.extend([0xaa; 32]);
        assert_eq!(message.to_vec(), expected);
    }

    #[test]
    fn checkpoint_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sth.json");
        assert_eq!(read_checkpoint(&path), Ok(None));
        let sth = SignedTreeHead::sign(&key(3), 5, &[1; 32], 9);
        write_checkpoint(&path, &sth).unwrap();
        assert_eq!(read_checkpoint(&path), Ok(Some(sth)));
        fs::write(&path, b"{not json").unwrap();
        assert!(read_checkpoint(&path).unwrap_err().contains("not a valid"));
    }
}
