//! Who is calling, and proof of it.
//!
//! A [`Principal`] is the identity every request carries into the kernel: the owner (proven by
//! the Unix socket's peer credentials) or an API token (a device or thin client). The
//! [`TokenStore`] mints tokens, keeps only their SHA-256 in `user/tokens.json`, and checks a
//! presented token in constant time. No secret is ever stored, logged or returned after
//! creation.

mod principal;
mod tokens;

pub use principal::Principal;
pub use tokens::{AuthFailure, Secret, TokenError, TokenInfo, TokenState, TokenStore};
