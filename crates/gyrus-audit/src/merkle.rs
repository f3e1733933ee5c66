//! RFC 6962 (Certificate Transparency) Merkle trees: hashing, proofs and their verification.
//!
//! This module is pure: no I/O, no clock, no randomness. Everything works on 32-byte SHA-256
//! hashes:
//!
//! - a leaf hash is `SHA-256(0x00 || data)` ([`leaf_hash`]);
//! - an interior node is `SHA-256(0x01 || left || right)` ([`node_hash`]);
//! - the Merkle Tree Hash (MTH) of `n > 1` leaves splits them at `k`, the largest power of two
//!   smaller than `n`: `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))`; the MTH of no leaves is
//!   `SHA-256("")` ([`empty_root`]).
//!
//! Proofs are generated as RFC 6962 §2.1.1 (audit paths) and §2.1.2 (consistency proofs)
//! define them, and verified with the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, which need
//! only the proof, the sizes and the roots. Proof generation works on a plain slice of leaf
//! hashes ([`inclusion_proof`], [`consistency_proof`]) or, in O(log n) per proof, on a
//! [`MerkleTree`] that caches interior nodes. [`Frontier`] computes roots while streaming
//! leaves, in O(log n) memory.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The domain-separation prefix of a leaf hash.
const LEAF_PREFIX: u8 = 0x00;
/// The domain-separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of `data`: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// The 0-based leaf index asked for.
        index: u64,
        /// The size of the tree.
        tree_size: u64,
    },
    /// A tree size is larger than the leaves available, or the sizes are out of order.
    #[error("tree size {size} is not valid here: {why}")]
    BadSize {
        /// The offending size.
        size: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong number of hashes for these tree sizes")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
}

/// The largest power of two strictly smaller than `n`; `n` must be at least 2.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn to_usize(value: u64) -> Result<usize, ProofError> {
    usize::try_from(value).map_err(|_| ProofError::BadSize {
        size: value,
        why: "it does not fit in memory on this machine",
    })
}

/// A source of Merkle Tree Hashes over ranges of leaves: a plain slice, or a tree with a cache.
trait Subtrees {
    /// The MTH of the `len >= 1` leaves starting at `start`.
    fn mth(&self, start: usize, len: usize) -> Hash;
}

impl Subtrees for [Hash] {
    fn mth(&self, start: usize, len: usize) -> Hash {
        if len == 1 {
            return self[start];
        }
        let k = split(len);
        node_hash(&self.mth(start, k), &self.mth(start + k, len - k))
    }
}

/// The Merkle Tree Hash of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        empty_root()
    } else {
        leaves.mth(0, leaves.len())
    }
}

/// RFC 6962 §2.1.1 `PATH(m, D[start..start+len])`, appended to `out` leaf-side first.
fn path<S: Subtrees + ?Sized>(tree: &S, m: usize, start: usize, len: usize, out: &mut Vec<Hash>) {
    if len <= 1 {
        return;
    }
    let k = split(len);
    if m < k {
        path(tree, m, start, k, out);
        out.push(tree.mth(start + k, len - k));
    } else {
        path(tree, m - k, start + k, len - k, out);
        out.push(tree.mth(start, k));
    }
}

/// RFC 6962 §2.1.2 `SUBPROOF(m, D[start..start+n], complete)`, appended to `out`.
fn subproof<S: Subtrees + ?Sized>(
    tree: &S,
    m: usize,
    start: usize,
    n: usize,
    complete: bool,
    out: &mut Vec<Hash>,
) {
    if m == n {
        if !complete {
            out.push(tree.mth(start, n));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(tree, m, start, k, complete, out);
        out.push(tree.mth(start + k, n - k));
    } else {
        subproof(tree, m - k, start + k, n - k, false, out);
        out.push(tree.mth(start, k));
    }
}

fn inclusion_proof_in<S: Subtrees + ?Sized>(
    tree: &S,
    available: usize,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    let size = to_usize(tree_size)?;
    if size > available {
        return Err(ProofError::BadSize {
            size: tree_size,
            why: "the tree has fewer leaves",
        });
    }
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let mut out = Vec::new();
    path(tree, to_usize(index)?, 0, size, &mut out);
    Ok(out)
}

fn consistency_proof_in<S: Subtrees + ?Sized>(
    tree: &S,
    available: usize,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    let new = to_usize(new_size)?;
    if new > available {
        return Err(ProofError::BadSize {
            size: new_size,
            why: "the tree has fewer leaves",
        });
    }
    if old_size > new_size {
        return Err(ProofError::BadSize {
            size: old_size,
            why: "the old size is larger than the new size",
        });
    }
    let mut out = Vec::new();
    // The proof between a tree and itself, or from the empty tree, is empty (RFC 6962 defines
    // proofs only for 0 < m < n).
    if old_size > 0 && old_size < new_size {
        subproof(tree, to_usize(old_size)?, 0, new, true, &mut out);
    }
    Ok(out)
}

/// The audit path (RFC 6962 §2.1.1) of leaf `index` in the tree made of all of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_in(leaves, leaves.len(), index, leaves.len() as u64)
}

/// The consistency proof (RFC 6962 §2.1.2) between the tree of the first `old_size` leaves and
/// the tree of all of `leaves`. Empty when `old_size` is 0 or the whole tree.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_in(leaves, leaves.len(), old_size, leaves.len() as u64)
}

/// Shifts `fn_` and `sn` right together until `fn_` is odd or zero (RFC 9162's inner loop).
fn shift_while_even(fn_: &mut u64, sn: &mut u64) {
    while *fn_ != 0 && *fn_ & 1 == 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// The root that an audit path leads to (RFC 9162 §2.1.3.2 steps 1 to 4).
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            shift_while_even(&mut fn_, &mut sn);
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `tree_size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf_hash, index, tree_size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots; an old size of 0 needs an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::BadSize {
            size: old_size,
            why: "the old size is larger than the new size",
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    // Step 1: a proof between different non-empty sizes is never empty.
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength);
    };
    // Step 2: when the old tree is a complete subtree its root is the path's first node.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    // Steps 3 and 4.
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let mut fr = *seed;
    let mut sr = *seed;
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            shift_while_even(&mut fn_, &mut sn);
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The right edge of a growing tree: enough to compute the root of every prefix while the
/// leaves stream past, in O(log n) memory.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees that make up the tree, largest (leftmost) first: one per
    /// set bit of `size`.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty frontier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            if let Some(left) = self.nodes.pop() {
                hash = node_hash(&left, &hash);
            }
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// How many leaves have been pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Levels below this are recomputed from the leaves on demand (at most 7 hashes); levels from
/// here up are cached, which costs one eighth of the leaves' memory.
const CACHE_FROM_LEVEL: u32 = 4;

/// An append-only Merkle tree over leaf hashes that answers roots and proofs for any prefix in
/// O(log n) hashes, keeping every leaf hash plus a cache of the interior nodes from level 4 up
/// (about 1.125 × 32 bytes per leaf).
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    leaves: Vec<Hash>,
    /// `cache[l][i]` is the root of the complete subtree of height `CACHE_FROM_LEVEL + l` with
    /// index `i`, for every such subtree that is complete.
    cache: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree with room for `leaves` leaves.
    pub fn with_capacity(leaves: usize) -> Self {
        Self {
            leaves: Vec::with_capacity(leaves),
            cache: Vec::new(),
        }
    }

    /// A tree over `leaves` (already leaf-hashed).
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        let mut tree = Self::with_capacity(leaves.len());
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
        let size = self.leaves.len();
        let mut level = CACHE_FROM_LEVEL;
        while level < usize::BITS && size.is_multiple_of(1usize << level) {
            let index = size / (1usize << level) - 1;
            let hash = node_hash(
                &self.complete(level - 1, 2 * index),
                &self.complete(level - 1, 2 * index + 1),
            );
            let slot = (level - CACHE_FROM_LEVEL) as usize;
            if self.cache.len() <= slot {
                self.cache.push(Vec::new());
            }
            if let Some(row) = self.cache.get_mut(slot) {
                row.push(hash);
            }
            level += 1;
        }
    }

    /// How many leaves the tree has.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// All leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        if self.leaves.is_empty() {
            empty_root()
        } else {
            self.mth(0, self.leaves.len())
        }
    }

    /// The root of the tree of the first `tree_size` leaves.
    pub fn root_at(&self, tree_size: u64) -> Result<Hash, ProofError> {
        let size = to_usize(tree_size)?;
        if size > self.leaves.len() {
            return Err(ProofError::BadSize {
                size: tree_size,
                why: "the tree has fewer leaves",
            });
        }
        if size == 0 {
            Ok(empty_root())
        } else {
            Ok(self.mth(0, size))
        }
    }

    /// The audit path of leaf `index` in the tree of the first `tree_size` leaves.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof_in(self, self.leaves.len(), index, tree_size)
    }

    /// The consistency proof between the trees of the first `old_size` and `new_size` leaves.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof_in(self, self.leaves.len(), old_size, new_size)
    }

    /// The root of the complete subtree of height `level` with index `index`; the subtree must
    /// lie inside the tree.
    fn complete(&self, level: u32, index: usize) -> Hash {
        if level == 0 {
            return self.leaves[index];
        }
        if level >= CACHE_FROM_LEVEL {
            let cached = self
                .cache
                .get((level - CACHE_FROM_LEVEL) as usize)
                .and_then(|row| row.get(index));
            if let Some(hash) = cached {
                return *hash;
            }
        }
        node_hash(
            &self.complete(level - 1, 2 * index),
            &self.complete(level - 1, 2 * index + 1),
        )
    }
}

impl Subtrees for MerkleTree {
    fn mth(&self, start: usize, len: usize) -> Hash {
        if len.is_power_of_two() && start.is_multiple_of(len) {
            return self.complete(len.trailing_zeros(), start / len);
        }
        let k = split(len);
        node_hash(&self.mth(start, k), &self.mth(start + k, len - k))
    }
}

#[cfg(test)]
mod tests;
