use std::fmt;

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The owner of the home, connected over the Unix socket as the daemon's own user.
    Owner {
        /// The peer's uid, from `SO_PEERCRED`.
        uid: u32,
    },
    /// The holder of an API token.
    Token {
        /// The token's stable id (never reused).
        id: String,
        /// The token's name, e.g. `laptop`.
        name: String,
    },
}

impl Principal {
    /// True for the owner.
    pub fn is_owner(&self) -> bool {
        matches!(self, Principal::Owner { .. })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Owner { .. } => f.write_str("owner"),
            Principal::Token { name, .. } => write!(f, "token:{name}"),
        }
    }
}
