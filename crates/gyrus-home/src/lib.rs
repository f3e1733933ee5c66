//! The gyrus home: where every byte of state lives, split into four layers.
//!
//! | layer | holds | backup rule |
//! |---|---|---|
//! | `core/` | immutable generations of built-in policies, skills, schemas | recoverable from the release |
//! | `user/` | `gyrus.toml`, policies, token hashes, identity | irreplaceable |
//! | `memory/` | memory database, audit log | continuously written |
//! | `runtime/` | socket, pid file, caches, undo snapshots | ephemeral |
//!
//! This crate resolves which directory is the home ([`resolve`]), creates and describes its
//! layout ([`Home`]), reads `user/gyrus.toml` ([`Config`]), guarantees one daemon per home
//! ([`DaemonLock`]) and writes files so a crash never leaves half of one ([`write_atomic`]).
//! It does no networking and knows nothing of the daemon's parts.

mod atomic;
mod config;
mod layout;
mod lock;
mod resolve;

pub use atomic::write_atomic;
pub use config::{
    AgentBudget, ApiConfig, Config, ConfigError, DaemonConfig, MemoryConfig, OnConflict,
    RateLimitConfig, RouterConfig, SessionsConfig, ToolsConfig,
};
pub use layout::{Home, HomeError, InitReport, Layer, LayerUsage};
pub use lock::{DaemonLock, LockError};
pub use resolve::{HomeSource, ResolveError, Resolved, resolve};
