//! The frontal lobe and its cortices.
//!
//! - [`types`]: our own canonical types for messages, tools, tool calls, usage, cost and
//!   stop reasons; conversations live in gyrus, never inside a vendor SDK.
//! - [`driver`]: the `Driver` trait and its wire-format drivers.
//! - [`local`]: the embedded cortex, in-process GGUF inference with candle.
//! - [`predict`]: the router's tier predictor (which tier is likely to succeed).
//! - [`route`]: the router's decision core: reactive skills, tier choice, validation and
//!   escalation, budgets, decision records.
//! - [`tier`]: the intelligence tiers, ordered by cost.
//! - [`registry`]: the configured cortices (`user/cortices.toml`), their keys and drivers.

#![forbid(unsafe_code)]

pub mod driver;
pub mod local;
pub mod predict;
pub mod registry;
pub mod route;
pub mod tier;
pub mod types;
