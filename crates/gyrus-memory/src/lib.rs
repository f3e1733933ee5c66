//! The memory fabric.
//!
//! Only one part exists so far: the vector index ([`vector`]). It finds the stored vectors
//! most similar to a query by cosine similarity, restricted to the namespaces a caller may
//! see. Two implementations share the [`vector::VectorIndex`] trait:
//!
//! - [`vector::FlatIndex`]: exact brute force, the oracle the tests compare against.
//! - [`vector::HnswIndex`]: a hierarchical navigable small world graph (Malkov & Yashunin),
//!   approximate and fast, with exact namespace filtering, deletion and persistence.
//!
//! The crate does no I/O except [`vector::VectorIndex::save`] and
//! [`vector::VectorIndex::load`], which read and write one file each.

#![forbid(unsafe_code)]

pub mod chunk;
pub mod consolidate;
pub mod distil;
pub mod embed;
pub mod episodic;
pub mod model;
pub mod procedure;
pub mod sketch;
pub mod store;
pub mod tools;
pub mod vector;
