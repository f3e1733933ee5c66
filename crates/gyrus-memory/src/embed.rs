//! Embedders: text to unit vectors, each with the identity of its coordinate space.
//!
//! Vectors from two models (or two revisions of one) are not comparable even when their
//! dimensions agree, so every stored vector carries its embedder's [`EmbedderId`] and the
//! store refuses to search or mix vectors of another space.

use std::sync::Arc;

use rayon::prelude::*;

use serde::{Deserialize, Serialize};

/// Which coordinate space a vector lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EmbedderId {
    /// The model and its preprocessing contract, e.g. `pocket-encoder/paraphrase-MiniLM-L3-v2`.
    pub model: String,
    /// The exact weights (a digest), so a changed model is a new space.
    pub revision: String,
    /// Coordinates per vector.
    pub dim: usize,
}

impl EmbedderId {
    /// One line for messages: `model@revision-prefix (dim)`.
    pub fn label(&self) -> String {
        let rev: String = self.revision.chars().take(12).collect();
        format!("{}@{} ({}-d)", self.model, rev, self.dim)
    }
}

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// Turns texts into unit vectors of one space.
pub trait Embedder: Send + Sync {
    /// The space its vectors live in.
    fn id(&self) -> &EmbedderId;
    /// One unit vector per text, in order.
    ///
    /// A query calls this on a worker of rayon's global pool, beside its full-text search;
    /// an implementation that waits on I/O holds that worker while it waits, and one must
    /// never wait on a lock whose holder waits on the pool.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A batch is split across the pool's workers only when each gets at least this many texts.
const MIN_PER_WORKER: usize = 4;

/// The bundled sentence encoder (`pocket-encoder`: paraphrase-MiniLM-L3-v2, 384-d, weights
/// compiled into the binary; no download, no files). The default embedder.
///
/// The weights load at the first embedding, not at construction: the space's identity is
/// known without them, so opening a store (and starting the daemon) does not pay for them.
pub struct PocketEmbedder {
    encoder: std::sync::OnceLock<pocket_encoder::Encoder>,
    id: EmbedderId,
}

impl std::fmt::Debug for PocketEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketEmbedder")
            .field("id", &self.id)
            .finish()
    }
}

impl PocketEmbedder {
    /// The bundled encoder; its weights load at the first [`Embedder::embed`] (once per
    /// process; later encoders share them).
    pub fn new() -> Result<PocketEmbedder, EmbedError> {
        let info = pocket_encoder::model_info();
        Ok(PocketEmbedder {
            encoder: std::sync::OnceLock::new(),
            id: EmbedderId {
                model: format!("pocket-encoder/{}", info.id),
                revision: info.revision,
                dim: info.dimensions,
            },
        })
    }

    /// The shared default embedder.
    pub fn shared() -> Result<Arc<dyn Embedder>, EmbedError> {
        Ok(Arc::new(PocketEmbedder::new()?))
    }
}

impl Embedder for PocketEmbedder {
    fn id(&self) -> &EmbedderId {
        &self.id
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // The encoder refuses blank inputs; an item's content is never blank, but a query's
        // words may be all punctuation.
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbedError(format!("text {i} is blank")));
        }
        // It reads at most 128 tokens anyway; cutting long texts first keeps its 64 KiB
        // per-input bound from ever refusing an item.
        let cut: Vec<&str> = texts
            .iter()
            .map(|t| crate::text::prefix(t, 8 * 1024))
            .collect();
        let encoder = match self.encoder.get() {
            Some(e) => e,
            None => {
                let e = pocket_encoder::Encoder::new().map_err(|e| EmbedError(e.to_string()))?;
                self.encoder.get_or_init(|| e)
            }
        };
        let run = |texts: &[&str]| encoder.embed(texts).map_err(|e| EmbedError(e.to_string()));
        // The encoder's matrix multiplies (gemm, through candle) fork onto rayon's pool, so
        // the work runs inside the pool: each multiply's split is then a local fork, not a
        // hand-off from an outside thread and back (two dozen per text). The encoder takes
        // one text at a time, and a short text keeps its multiplies too small to fill the
        // cores, so a batch is split across the workers too (in order, contiguous shares).
        let workers = rayon::current_num_threads()
            .min(cut.len() / MIN_PER_WORKER)
            .max(1);
        let share = cut.len().div_ceil(workers);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // `scope` runs its body on a worker (a parallel iterator alone would run an
            // unsplit batch, such as a single query, on the calling thread).
            rayon::scope(|_| {
                cut.par_chunks(share)
                    .map(run)
                    .collect::<Result<Vec<_>, _>>()
                    .map(|parts| parts.into_iter().flatten().collect())
            })
        }))
        .map_err(|_| EmbedError("the encoder panicked".into()))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_bundled_encoder_places_paraphrases_near() {
        let e = PocketEmbedder::new().unwrap();
        assert_eq!(e.id().dim, 384);
        let v = e
            .embed(&[
                "How much free space is left on my disk?",
                "What is the remaining storage capacity of the drive?",
                "My cat likes to sleep in the sun.",
            ])
            .unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2);
        assert!(e.embed(&["  "]).is_err());
        // A batch split across cores keeps its order and gives each text its own vector.
        let texts: Vec<String> = (0..4 * MIN_PER_WORKER + 1)
            .map(|i| format!("note number {i}: the backup ran at {} o'clock", i % 12))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = e.embed(&refs).unwrap();
        assert_eq!(batch.len(), refs.len());
        for (i, t) in refs.iter().enumerate() {
            let one = e.embed(&[t]).unwrap().remove(0);
            assert!(dot(&batch[i], &one) > 0.9999, "text {i}");
        }
        let mut bad = refs.clone();
        bad[3 * MIN_PER_WORKER] = " ";
        assert!(e.embed(&bad).is_err());
        assert_eq!(crate::text::prefix("aé", 2), "a");
    }
}
