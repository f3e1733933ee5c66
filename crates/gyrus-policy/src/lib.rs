//! Who is calling, proof of it, and what they may do.
//!
//! - A [`Principal`] is the identity every request carries into the kernel: the owner (proven
//!   by the Unix socket's peer credentials), an API token, an agent or an LLM client session.
//!   [`Principal::id`] is the stable id everything is bound to.
//! - The [`TokenStore`] mints API tokens, keeps only their SHA-256 in `user/tokens.json`, and
//!   checks a presented token in constant time. No secret is ever stored, logged or returned
//!   after creation.
//! - The [`ConsentBroker`] decides every tool call ([`ActionRequest`]): default deny, allow,
//!   or ask the owner. It matches [`Grant`]s in Rust (principal, action pattern, resource
//!   glob, intent, expiry, use count), then runs the Cedar policies: the core ones shipped in
//!   `policies/core.cedar` and the owner's `user/policies/*.cedar`, all validated in strict
//!   mode against `policies/schema.cedarschema`. Any evaluation error is a denial.
//! - The [`GrantStore`] and the [`ConsentStore`] keep grants and consent requests in one
//!   SQLite file (`user/grants.db`, WAL). A consent request bundles the calls of one plan so
//!   the owner answers once; approving it creates grants for exactly those calls.
//!
//! Intent counts only when it comes from the owner or an approved plan ([`IntentSource`]);
//! text from tools or retrieval is recorded and never trusted. Grants are data, never Cedar
//! text, so no grant field can inject policy. Decision logic is pure; I/O is limited to the
//! token file, the grants database, the policy directory and the OS random source. The caller
//! passes the current time in.

mod broker;
mod consent;
mod grant;
mod policies;
mod principal;
mod request;
mod screen;
mod store;
mod tokens;

pub use broker::{ConsentBroker, Decision, GRANT_POLICY, Outcome};
pub use consent::{
    ConsentCall, ConsentError, ConsentRequest, ConsentStatus, ConsentStore, MAX_CALLS_PER_REQUEST,
};
pub use grant::{
    Grant, GrantError, GrantMismatch, MAX_INTENT_LEN, MAX_SCOPE_ITEMS, NewGrant, escape_resource,
};
pub use policies::{CORE_POLICIES_SRC, PolicyError, SCHEMA_SRC};
pub use principal::Principal;
pub use request::{ActionRequest, IntentSource, MAX_RESOURCE_LEN, resource_problem};
pub use store::{GrantStore, StoreError};
pub use tokens::{AuthFailure, Secret, TokenError, TokenInfo, TokenState, TokenStore};
