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
    /// An agent spawned by the kernel.
    Agent {
        /// The agent's id, never reused. Grants are bound to it, so a new agent that takes an
        /// old agent's name inherits nothing.
        id: String,
        /// The agent's name from its manifest, e.g. `builder`. Not unique over time.
        name: String,
    },
    /// A live LLM client session (Claude Code, Codex, …) registered with the daemon.
    Session {
        /// The session's id, never reused.
        id: String,
    },
}

impl Principal {
    /// True for the owner.
    pub fn is_owner(&self) -> bool {
        matches!(self, Principal::Owner { .. })
    }

    /// The stable id grants and audit records are bound to: `owner`, `token:<id>`,
    /// `agent:<id>` or `session:<id>`. Names never appear in it, because names are reused.
    pub fn id(&self) -> String {
        match self {
            Principal::Owner { .. } => "owner".to_string(),
            Principal::Token { id, .. } => format!("token:{id}"),
            Principal::Agent { id, .. } => format!("agent:{id}"),
            Principal::Session { id } => format!("session:{id}"),
        }
    }
}

/// True if `text` has the shape of a [`Principal::id`]: `owner`, or `token:`, `agent:` or
/// `session:` followed by a non-empty id of printable ASCII without spaces.
pub(crate) fn is_principal_id(text: &str) -> bool {
    if text == "owner" {
        return true;
    }
    let Some((kind, id)) = text.split_once(':') else {
        return false;
    };
    matches!(kind, "token" | "agent" | "session")
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Owner { .. } => f.write_str("owner"),
            Principal::Token { name, .. } => write!(f, "token:{name}"),
            Principal::Agent { name, .. } => write!(f, "agent:{name}"),
            Principal::Session { id } => write!(f, "session:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_never_use_names() {
        let cases = [
            (Principal::Owner { uid: 1000 }, "owner"),
            (
                Principal::Token {
                    id: "tok_1".into(),
                    name: "laptop".into(),
                },
                "token:tok_1",
            ),
            (
                Principal::Agent {
                    id: "ag_7".into(),
                    name: "builder".into(),
                },
                "agent:ag_7",
            ),
            (Principal::Session { id: "s_9".into() }, "session:s_9"),
        ];
        for (principal, id) in cases {
            assert_eq!(principal.id(), id);
            assert!(is_principal_id(id), "{id}");
        }
        for bad in ["", "agent:", "robot:x", "agent:a b", "Owner"] {
            assert!(!is_principal_id(bad), "{bad:?}");
        }
    }
}
