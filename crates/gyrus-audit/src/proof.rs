//! Proofs the log hands out, in a form that travels as JSON.

use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::hex;
use crate::merkle::{self, Hash};

fn parse(field: &'static str, text: &str) -> Result<Hash, AuditError> {
    hex::decode_array(text).ok_or(AuditError::BadHex { field, len: 32 })
}

fn parse_path(path: &[String]) -> Result<Vec<Hash>, AuditError> {
    path.iter()
        .map(|node| parse("a proof node", node))
        .collect()
}

/// Proof that entry `seq` is in the log of `tree_size` entries whose root is `root_hash`
/// (an RFC 6962 audit path; the leaf is SHA-256(0x00 || entry_hash)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry.
    pub seq: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The entry's leaf hash, hex.
    pub leaf_hash: String,
    /// The root of the first `tree_size` entries, hex.
    pub root_hash: String,
    /// The audit path, leaf side first, hex.
    pub path: Vec<String>,
}

impl InclusionProof {
    /// Checks that the path leads from `leaf_hash` to `root_hash`. To trust the result, also
    /// check that `root_hash` is the root of a signed tree head of size `tree_size` that you
    /// trust.
    pub fn verify(&self) -> Result<(), AuditError> {
        let index = self
            .seq
            .checked_sub(1)
            .ok_or_else(|| AuditError::OutOfRange("entry 0 does not exist".to_owned()))?;
        merkle::verify_inclusion(
            &parse("leaf_hash", &self.leaf_hash)?,
            index,
            self.tree_size,
            &parse_path(&self.path)?,
            &parse("root_hash", &self.root_hash)?,
        )?;
        Ok(())
    }
}

/// Proof that the log of `old_size` entries (root `old_root`) is a prefix of the log of
/// `new_size` entries (root `new_root`): nothing was changed or removed in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The root of the first `old_size` entries, hex.
    pub old_root: String,
    /// The root of the first `new_size` entries, hex.
    pub new_root: String,
    /// The RFC 6962 consistency proof, hex.
    pub path: Vec<String>,
}

impl ConsistencyProof {
    /// Checks the proof between the two roots. To trust the result, also check that both roots
    /// come from signed tree heads you trust (e.g. one you saved earlier and the current one).
    pub fn verify(&self) -> Result<(), AuditError> {
        merkle::verify_consistency(
            self.old_size,
            self.new_size,
            &parse("old_root", &self.old_root)?,
            &parse("new_root", &self.new_root)?,
            &parse_path(&self.path)?,
        )?;
        Ok(())
    }
}
