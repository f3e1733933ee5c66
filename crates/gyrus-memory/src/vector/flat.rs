//! `FlatIndex`: exact brute-force search, the oracle for the approximate index.

use std::collections::HashMap;
use std::path::Path;

use super::persist::{self, Decoder, Encoder, KIND_FLAT};
use super::{Hit, IndexError, VectorIndex, dot, hit_order, normalize_into, normalized};

/// Exact search over a contiguous array of unit vectors. Removal swaps the last vector in.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    vectors: Vec<f32>,
    ids: Vec<u64>,
    namespaces: Vec<u32>,
    slot_of: HashMap<u64, usize>,
}

impl FlatIndex {
    /// An empty index of vectors with `dim` components (`dim` ≥ 1).
    pub fn new(dim: usize) -> Result<Self, IndexError> {
        if dim == 0 || u32::try_from(dim).is_err() {
            return Err(IndexError::InvalidConfig(format!(
                "dimension {dim} out of range"
            )));
        }
        Ok(FlatIndex {
            dim,
            vectors: Vec::new(),
            ids: Vec::new(),
            namespaces: Vec::new(),
            slot_of: HashMap::new(),
        })
    }

    /// Exact search over normalised `query` with an optional slot predicate.
    pub(crate) fn search_normalized(
        &self,
        query: &[f32],
        k: usize,
        filter: &dyn Fn(u32) -> bool,
    ) -> Vec<Hit> {
        let mut cache: Vec<(u32, bool)> = Vec::new();
        let mut hits = Vec::new();
        for (slot, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            let ns = self.namespaces[slot];
            let pass = match cache.iter().find(|(n, _)| *n == ns) {
                Some(&(_, p)) => p,
                None => {
                    let p = filter(ns);
                    if cache.len() < 64 {
                        cache.push((ns, p));
                    }
                    p
                }
            };
            if pass {
                hits.push(Hit {
                    id: self.ids[slot],
                    score: dot(query, v),
                });
            }
        }
        top_k(hits, k)
    }
}

/// Sorts best first and keeps `k`.
pub(crate) fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    if hits.len() > k && k > 0 {
        hits.select_nth_unstable_by(k - 1, hit_order);
    }
    hits.truncate(k);
    hits.sort_unstable_by(hit_order);
    hits
}

impl VectorIndex for FlatIndex {
    fn insert(&mut self, id: u64, namespace: u32, vector: &[f32]) -> Result<(), IndexError> {
        let v = normalized(self.dim, vector)?;
        if let Some(&slot) = self.slot_of.get(&id) {
            self.vectors[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&v);
            self.namespaces[slot] = namespace;
            return Ok(());
        }
        if self.ids.len() >= u32::MAX as usize {
            return Err(IndexError::Full(self.ids.len()));
        }
        self.slot_of.insert(id, self.ids.len());
        self.ids.push(id);
        self.namespaces.push(namespace);
        self.vectors.extend_from_slice(&v);
        Ok(())
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if slot != last {
            let moved = self.ids[last];
            self.ids[slot] = moved;
            self.namespaces[slot] = self.namespaces[last];
            self.vectors
                .copy_within(last * self.dim..(last + 1) * self.dim, slot * self.dim);
            self.slot_of.insert(moved, slot);
        }
        self.ids.pop();
        self.namespaces.pop();
        self.vectors.truncate(last * self.dim);
        true
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        let mut q = vec![0.0; self.dim];
        if k == 0 || normalize_into(self.dim, query, &mut q).is_err() {
            return Vec::new();
        }
        self.search_normalized(&q, k, filter)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn save(&self, path: &Path) -> Result<(), IndexError> {
        let mut e = Encoder::new(KIND_FLAT);
        e.u32(self.dim as u32);
        e.u64(self.ids.len() as u64);
        for (&id, &ns) in self.ids.iter().zip(&self.namespaces) {
            e.u64(id);
            e.u32(ns);
        }
        e.f32s(&self.vectors);
        persist::write_atomic(path, &e.finish())
    }

    fn load(path: &Path) -> Result<Self, IndexError> {
        let bytes = persist::read(path)?;
        let mut d = Decoder::open(&bytes, KIND_FLAT, path)?;
        let dim = d.u32()? as usize;
        let mut index = FlatIndex::new(dim).map_err(|_| d.corrupt("dimension 0"))?;
        let n = d.count(12 + 4 * dim)?;
        for slot in 0..n {
            let id = d.u64()?;
            let ns = d.u32()?;
            if index.slot_of.insert(id, slot).is_some() {
                return Err(d.corrupt(format!("id {id} appears twice")));
            }
            index.ids.push(id);
            index.namespaces.push(ns);
        }
        index.vectors = d.f32s(n * dim)?;
        d.end()?;
        if index.vectors.iter().any(|x| !x.is_finite()) {
            return Err(d.corrupt("non-finite vector component"));
        }
        Ok(index)
    }
}
