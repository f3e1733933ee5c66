//! The memory fabric: what gyrus remembers, for whom, and how it is found again.
//!
//! - [`model`]: items, kinds and namespaces (owner, agent, session, token, shared).
//! - [`store`]: the SQLite store (`memory/memory.db`): versioned items, TTLs, real
//!   forgetting, and search fusing full-text (FTS5) and vector hits by reciprocal rank
//!   fusion ([`text`] builds the full-text side), with filters.
//! - [`embed`]: the `Embedder` trait and the bundled sentence encoder.
//! - [`vector`]: the vector index, exact ([`vector::FlatIndex`], also the tests' oracle) or
//!   HNSW ([`vector::HnswIndex`]), with namespace filters, deletion and persistence.
//! - [`episodic`]: the episodic log, fed from the audit trail.
//! - [`consolidate`], [`distil`], [`sketch`]: the background job that expires, merges and
//!   distils memories, and the owner's sketch it keeps within a byte budget.
//! - [`procedure`]: learned tool-call procedures (learn, bind, replay with validation).
//! - [`chunk`]: the knowledge-base chunker behind ingest.
//! - [`tools`]: the `memory.*` tools agents and MCP clients call.

#![forbid(unsafe_code)]

pub mod chunk;
pub mod consolidate;
pub mod distil;
pub mod embed;
pub mod episodic;
pub mod hot;
pub mod model;
pub mod procedure;
pub mod sketch;
pub mod store;
pub mod text;
pub mod tools;
pub mod vector;
