//! The gyrus agent kernel: agents (manifests, the registry, supervised processes) and the
//! [`Kernel`] facade through which every caller reaches them.

pub mod decide;
pub mod kernel;
pub mod manifest;
pub mod quota;
pub mod registry;
pub mod restart;
pub mod scheduler;
pub mod supervisor;

pub use decide::Recorded;
pub use kernel::{Kernel, KernelError, Spawned, audit_paths};
pub use manifest::Manifest;
pub use registry::{AgentRecord, AgentState};
