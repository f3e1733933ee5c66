//! Vector indexes: cosine similarity over `f32` vectors of one fixed dimension.
//!
//! Every stored vector has a caller-chosen `u64` id and a `u32` namespace. A search names the
//! namespaces it may see with a filter; filtering is exact (a vector whose namespace fails the
//! filter is never returned), whatever the share of vectors that pass.
//!
//! Vectors are normalised to unit length on insert, so the score of a hit is the cosine
//! similarity to the query (1.0 is the same direction, -1.0 the opposite). Zero vectors,
//! non-finite components and vectors of the wrong dimension are refused with an
//! [`IndexError`].
//!
//! - [`FlatIndex`] ([`flat`]): exact brute force. The oracle for tests and fine for small sets.
//! - [`HnswIndex`] ([`hnsw`]): an approximate graph index for large sets.
//!
//! Both persist to a versioned binary file ([`persist`]), written atomically; a file that is
//! corrupt or truncated fails to load with [`IndexError::Corrupt`].

use std::cmp::Ordering;
use std::path::Path;

pub mod flat;
pub mod hnsw;
mod persist;
mod simd;

pub use flat::FlatIndex;
pub use hnsw::{HnswConfig, HnswIndex};

/// One search result: a stored id and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The id given to [`VectorIndex::insert`].
    pub id: u64,
    /// Cosine similarity to the query, in `[-1, 1]` (up to rounding); higher is closer.
    pub score: f32,
}

/// Why an index refused a vector, a configuration or a file.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The vector has a different number of components from the index.
    #[error("vector has {got} dimensions, the index holds {expected}")]
    WrongDimension {
        /// The index's dimension.
        expected: usize,
        /// The given vector's length.
        got: usize,
    },
    /// The vector is all zeros (or so small its norm underflows), so it has no direction.
    #[error("vector has zero length, so it has no direction to compare")]
    ZeroVector,
    /// A component is NaN or infinite.
    #[error("vector component {index} is not a finite number")]
    NonFinite {
        /// The position of the first bad component.
        index: usize,
    },
    /// The index configuration is out of range.
    #[error("invalid index configuration: {0}")]
    InvalidConfig(String),
    /// The index is full: slots are `u32`.
    #[error("the index is full ({0} vectors)")]
    Full(usize),
    /// Reading or writing the index file failed.
    #[error("index file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The index file is not one this version can read, or it is damaged.
    #[error("index file {path} is corrupt or unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// A similarity index over unit vectors of one fixed dimension.
pub trait VectorIndex {
    /// Stores `vector` (normalised) under `id` in `namespace`, replacing any vector already
    /// stored under `id`. On error the index is unchanged.
    fn insert(&mut self, id: u64, namespace: u32, vector: &[f32]) -> Result<(), IndexError>;

    /// Removes the vector stored under `id`. Returns whether there was one.
    fn remove(&mut self, id: u64) -> bool;

    /// Returns up to `k` hits, best first, among the vectors whose namespace passes `filter`.
    ///
    /// `filter` must be a pure function of the namespace: an index may call it once per
    /// distinct namespace rather than once per vector. A query that is not a valid vector
    /// (wrong dimension, zero, non-finite) returns no hits.
    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u32) -> bool) -> Vec<Hit>;

    /// The number of vectors stored.
    fn len(&self) -> usize;

    /// Whether no vectors are stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimension of every stored vector.
    fn dim(&self) -> usize;

    /// Writes the index to `path` atomically (temporary file, fsync, rename).
    fn save(&self, path: &Path) -> Result<(), IndexError>;

    /// Reads an index written by [`VectorIndex::save`].
    fn load(path: &Path) -> Result<Self, IndexError>
    where
        Self: Sized;
}

/// Checks `vector` against `dim` and writes its normalised form into `out`.
pub(crate) fn normalize_into(
    dim: usize,
    vector: &[f32],
    out: &mut [f32],
) -> Result<(), IndexError> {
    if vector.len() != dim {
        return Err(IndexError::WrongDimension {
            expected: dim,
            got: vector.len(),
        });
    }
    if let Some(index) = vector.iter().position(|x| !x.is_finite()) {
        return Err(IndexError::NonFinite { index });
    }
    // Sum in f64: a vector of large finite components must not overflow to infinity.
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(IndexError::ZeroVector);
    }
    for (o, &x) in out.iter_mut().zip(vector) {
        *o = (f64::from(x) / norm) as f32;
    }
    if out.iter().all(|&x| x == 0.0) {
        return Err(IndexError::ZeroVector);
    }
    Ok(())
}

/// Returns the normalised copy of `vector`.
pub(crate) fn normalized(dim: usize, vector: &[f32]) -> Result<Vec<f32>, IndexError> {
    let mut out = vec![0.0; dim];
    normalize_into(dim, vector, &mut out)?;
    Ok(out)
}

/// Dot product, shaped so LLVM vectorises it: 16 independent accumulators over chunks of 16
/// (four SSE or two AVX registers), then the remainder.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    // Pairwise reduction keeps the same shape as the vector registers.
    let mut half = [0.0f32; LANES / 2];
    for i in 0..LANES / 2 {
        half[i] = acc[i] + acc[i + LANES / 2];
    }
    let q = [
        half[0] + half[4],
        half[1] + half[5],
        half[2] + half[6],
        half[3] + half[7],
    ];
    (q[0] + q[2]) + (q[1] + q[3]) + tail
}

/// Orders hits best first: higher score, then lower id (so ties are deterministic).
pub(crate) fn hit_order(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn dot_matches_naive_for_all_lengths() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn normalize_rejects_bad_vectors() {
        assert!(matches!(
            normalized(3, &[1.0, 2.0]),
            Err(IndexError::WrongDimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            normalized(2, &[0.0, 0.0]),
            Err(IndexError::ZeroVector)
        ));
        assert!(matches!(
            normalized(2, &[1.0, f32::NAN]),
            Err(IndexError::NonFinite { index: 1 })
        ));
        assert!(matches!(
            normalized(2, &[f32::INFINITY, 1.0]),
            Err(IndexError::NonFinite { index: 0 })
        ));
        let v = normalized(2, &[f32::MAX, f32::MAX]).unwrap();
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        let v = normalized(2, &[3.0, 4.0]).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
    }
}
