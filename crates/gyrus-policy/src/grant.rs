//! Grants: capability records scoped by principal, action, resource, intent, time and use
//! count, and the pure check of a request against one.
//!
//! A grant is data. It is matched in Rust and never turned into Cedar text, so nothing written
//! into one of its fields can change what a policy means.

use std::time::{Duration, SystemTime};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use gyrus_bus::subject::{self, Pattern, SubjectError};
use serde::{Deserialize, Serialize};

use crate::principal::is_principal_id;
use crate::request::ActionRequest;
use crate::store::{StoreError, unix};

/// The most patterns or globs one grant may hold.
pub const MAX_SCOPE_ITEMS: usize = 64;
/// The longest intent a grant may require, in bytes.
pub const MAX_INTENT_LEN: usize = 1024;

/// A capability the owner gave a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    /// `gr_` and 24 hex digits; never reused.
    pub id: String,
    /// The [`crate::Principal::id`] it belongs to, e.g. `agent:ag_1f…`.
    pub principal: String,
    /// Action patterns (`fs.read`, `fs.*`, `net.>`); `*` is one dotted part, `>` the rest.
    pub actions: Vec<String>,
    /// Resource globs (`path:/home/u/project/**`, `host:api.example.com:443`). `*` stays
    /// within one `/`-separated part and `**` crosses them; `**` alone is every resource.
    pub resources: Vec<String>,
    /// If set, the request's trusted intent must equal it exactly.
    pub intent: Option<String>,
    /// Unix seconds after which it no longer matches.
    pub expires_at: Option<u64>,
    /// How many uses it allows; `None` is unlimited.
    pub max_uses: Option<u32>,
    /// How many uses were consumed.
    pub uses: u32,
    /// Who granted it (`owner`, or the id of whoever approved it).
    pub granted_by: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<u64>,
}

/// What the owner asks for when adding a grant; [`crate::GrantStore::add`] checks it all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewGrant {
    /// A [`crate::Principal::id`].
    pub principal: String,
    /// Action patterns, at least one.
    pub actions: Vec<String>,
    /// Resource globs, at least one.
    pub resources: Vec<String>,
    /// The exact intent required, if any.
    pub intent: Option<String>,
    /// How long it lasts; forever if `None`.
    #[schema(value_type = Option<u64>)]
    #[serde(default, with = "opt_secs")]
    pub valid_for: Option<Duration>,
    /// How many uses it allows; unlimited if `None`.
    pub max_uses: Option<u32>,
    /// Who grants it.
    pub granted_by: String,
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// Why a grant does not cover a request. Variants are ordered from "far off" to "nearly
/// matched", so the broker can report the closest miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum GrantMismatch {
    /// The grant belongs to another principal.
    #[error("it belongs to another principal")]
    OtherPrincipal,
    /// None of its action patterns matches the action.
    #[error("it does not cover this action")]
    ActionNotCovered,
    /// None of its resource globs matches the resource.
    #[error("it does not cover this resource")]
    ResourceNotCovered,
    /// The owner revoked it.
    #[error("it was revoked")]
    Revoked,
    /// Its time is up.
    #[error("it has expired")]
    Expired,
    /// All its uses are consumed.
    #[error("all its uses are consumed")]
    Exhausted,
    /// It requires an intent, and the request's intent came from untrusted input.
    #[error("it requires an intent, and this request's intent is untrusted")]
    UntrustedIntent,
    /// It requires a different intent.
    #[error("it requires a different intent")]
    IntentDiffers,
}

/// A grant could not be added, found or changed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The principal is not a [`crate::Principal::id`].
    #[error(
        "invalid principal {0:?}: use owner, token:<id>, agent:<id> or session:<id> (ids, not names)"
    )]
    InvalidPrincipal(String),
    /// No action patterns, or too many.
    #[error("a grant needs 1 to {MAX_SCOPE_ITEMS} action patterns such as fs.read or fs.*")]
    Actions,
    /// An action pattern is malformed.
    #[error("invalid action pattern: {0}")]
    InvalidAction(#[from] SubjectError),
    /// No resource globs, or too many.
    #[error(
        "a grant needs 1 to {MAX_SCOPE_ITEMS} resource globs such as path:/home/u/project/** (or ** for every resource)"
    )]
    Resources,
    /// A resource glob is malformed.
    #[error("invalid resource glob {glob:?}: {reason}")]
    InvalidResource {
        /// The glob.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The intent is empty, too long or has control characters.
    #[error(
        "invalid intent: give 1 to {MAX_INTENT_LEN} bytes without control characters, or none to allow any intent"
    )]
    InvalidIntent,
    /// The duration is zero or too far away.
    #[error("a grant must last between 1 second and 100 years")]
    InvalidExpiry,
    /// `max_uses` is zero.
    #[error("max uses must be at least 1 (leave it out for unlimited)")]
    InvalidUses,
    /// `granted_by` is empty.
    #[error("granted_by must say who grants it")]
    MissingGrantor,
    /// No grant has this id.
    #[error("no grant {0:?}; `gyrus grant list` shows them")]
    NotFound(String),
    /// The grant was already revoked.
    #[error("grant {0:?} is already revoked")]
    AlreadyRevoked(String),
    /// The grant is not revoked, so there is nothing to reinstate.
    #[error("grant {0:?} is not revoked")]
    NotRevoked(String),
    /// The grants database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Grant {
    /// Checks whether this grant covers `request` at `now`. Pure: no I/O. The glob set is
    /// compiled on every call; the store keeps compiled grants for its hot path.
    pub fn check(&self, request: &ActionRequest, now: SystemTime) -> Result<(), GrantMismatch> {
        // A stored grant's globs were checked when it was added; one that no longer compiles
        // covers nothing.
        let globs = compile_globs(&self.resources).ok();
        self.check_with(request, unix(now), |r| {
            globs
                .as_ref()
                .is_some_and(|g| g.is_match_candidate(&Candidate::from_bytes(r)))
        })
    }

    /// True if it can still be used at `now` (not revoked, expired or exhausted).
    pub fn is_live(&self, now: u64) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|t| now < t)
            && self.max_uses.is_none_or(|m| self.uses < m)
    }

    pub(crate) fn check_with(
        &self,
        request: &ActionRequest,
        now: u64,
        resource_matches: impl Fn(&str) -> bool,
    ) -> Result<(), GrantMismatch> {
        if self.principal != request.principal.id() {
            return Err(GrantMismatch::OtherPrincipal);
        }
        self.check_scope(request, now, resource_matches)
    }

    /// Everything but the principal, which the store's index has already matched.
    pub(crate) fn check_scope(
        &self,
        request: &ActionRequest,
        now: u64,
        resource_matches: impl Fn(&str) -> bool,
    ) -> Result<(), GrantMismatch> {
        let action = request.action.as_str();
        if !self.actions.iter().any(|p| subject::matches(p, action)) {
            return Err(GrantMismatch::ActionNotCovered);
        }
        if !resource_matches(&request.resource) {
            return Err(GrantMismatch::ResourceNotCovered);
        }
        if self.revoked_at.is_some() {
            return Err(GrantMismatch::Revoked);
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err(GrantMismatch::Expired);
        }
        if self.max_uses.is_some_and(|m| self.uses >= m) {
            return Err(GrantMismatch::Exhausted);
        }
        if let Some(required) = &self.intent {
            match request.trusted_intent() {
                None => return Err(GrantMismatch::UntrustedIntent),
                Some(intent) if intent != required => return Err(GrantMismatch::IntentDiffers),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A grant with its resource globs compiled, as the store's index holds it.
#[derive(Debug, Clone)]
pub(crate) struct CompiledGrant {
    pub(crate) grant: Grant,
    pub(crate) globs: GlobSet,
}

impl CompiledGrant {
    pub(crate) fn new(grant: Grant) -> Result<CompiledGrant, GrantError> {
        let globs = compile_globs(&grant.resources)?;
        Ok(CompiledGrant { grant, globs })
    }

    /// `resource` is the request's resource, prepared on first use and then shared by all
    /// of a principal's grants.
    pub(crate) fn check_scope<'r>(
        &self,
        request: &'r ActionRequest,
        resource: &std::cell::OnceCell<Candidate<'r>>,
        now: u64,
    ) -> Result<(), GrantMismatch> {
        self.grant.check_scope(request, now, |_| {
            let candidate =
                resource.get_or_init(|| Candidate::from_bytes(request.resource.as_bytes()));
            self.globs.is_match_candidate(candidate)
        })
    }
}

/// Checks a new grant's fields and says exactly what is wrong.
pub(crate) fn validate(new: &NewGrant) -> Result<(), GrantError> {
    if !is_principal_id(&new.principal) {
        return Err(GrantError::InvalidPrincipal(new.principal.clone()));
    }
    if new.actions.is_empty() || new.actions.len() > MAX_SCOPE_ITEMS {
        return Err(GrantError::Actions);
    }
    for action in &new.actions {
        Pattern::new(action.as_str())?;
    }
    if new.resources.is_empty() || new.resources.len() > MAX_SCOPE_ITEMS {
        return Err(GrantError::Resources);
    }
    compile_globs(&new.resources)?;
    if let Some(intent) = &new.intent
        && (intent.is_empty()
            || intent.len() > MAX_INTENT_LEN
            || intent.chars().any(char::is_control))
    {
        return Err(GrantError::InvalidIntent);
    }
    if let Some(d) = new.valid_for
        && (d.is_zero() || d.as_secs() > 100 * 365 * 86_400)
    {
        return Err(GrantError::InvalidExpiry);
    }
    if new.max_uses == Some(0) {
        return Err(GrantError::InvalidUses);
    }
    if new.granted_by.trim().is_empty() {
        return Err(GrantError::MissingGrantor);
    }
    Ok(())
}

/// Compiles resource globs into one set. Each must be `**` (every resource) or start with a
/// literal kind such as `path:` or `host:`, so that a lone `*` can never mean "everything".
pub(crate) fn compile_globs(globs: &[String]) -> Result<GlobSet, GrantError> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let invalid = |reason: &str| GrantError::InvalidResource {
            glob: glob.clone(),
            reason: reason.to_string(),
        };
        if glob != "**" {
            let kind = glob.split_once(':').map(|(k, _)| k);
            let kind_ok = kind.is_some_and(|k| {
                k.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                    && k.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            });
            if !kind_ok {
                return Err(invalid(
                    "start with a literal kind such as path:, host: or agent: (write ** alone for every resource)",
                ));
            }
        }
        if glob.chars().any(char::is_control) {
            return Err(invalid("it has control characters"));
        }
        if glob.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid("it has a . or .. part; write the normalised path"));
        }
        let compiled = GlobBuilder::new(glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| invalid(&e.kind().to_string()))?;
        set.add(compiled);
    }
    set.build().map_err(|e| GrantError::InvalidResource {
        glob: globs.join(", "),
        reason: e.to_string(),
    })
}

/// A glob that matches exactly `resource` and nothing else.
pub fn escape_resource(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len() + 8);
    for c in resource.chars() {
        match c {
            '?' | '*' | '[' | ']' | '{' | '}' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            // With backslash escapes on, a literal backslash must itself be escaped.
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use gyrus_bus::subject::Subject;

    use super::*;
    use crate::{IntentSource, Principal};

    fn grant(actions: &[&str], resources: &[&str]) -> Grant {
        Grant {
            id: "gr_1".into(),
            principal: "agent:ag_1".into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            intent: None,
            expires_at: None,
            max_uses: None,
            uses: 0,
            granted_by: "owner".into(),
            created_at: 0,
            revoked_at: None,
        }
    }

    fn request(action: &str, resource: &str) -> ActionRequest {
        ActionRequest::new(
            Principal::Agent {
                id: "ag_1".into(),
                name: "builder".into(),
            },
            Subject::new(action).unwrap(),
            resource,
            "build the project",
            IntentSource::Owner,
        )
    }

    #[test]
    fn resource_globs_keep_star_within_one_part() {
        // (glob, resource, matches)
        let table = [
            ("path:/home/u/project/*", "path:/home/u/project/a.txt", true),
            (
                "path:/home/u/project/*",
                "path:/home/u/project/src/a.rs",
                false,
            ),
            (
                "path:/home/u/project/**",
                "path:/home/u/project/src/a.rs",
                true,
            ),
            ("path:/home/u/project/**", "path:/home/u/projectx/a", false),
            ("path:/home/u/*.txt", "path:/home/u/a.txt", true),
            ("host:api.example.com:443", "host:api.example.com:443", true),
            ("host:*.example.com:443", "host:api.example.com:443", true),
            ("host:*.example.com:443", "host:evil.com:443", false),
            ("**", "path:/etc/passwd", true),
            ("path:/a/[*]", "path:/a/*", true),
            ("path:/a/[*]", "path:/a/b", false),
        ];
        for (glob, resource, expected) in table {
            let g = grant(&["fs.read"], &[glob]);
            let now = SystemTime::now();
            assert_eq!(
                g.check(&request("fs.read", resource), now).is_ok(),
                expected,
                "{glob} vs {resource}"
            );
        }
    }

    #[test]
    fn a_lone_star_or_kindless_glob_is_rejected() {
        for bad in [
            "*",
            "*/**",
            "/home/**",
            "Path:/x",
            "path:/a/../b",
            "path:/a/[",
            "",
        ] {
            assert!(
                matches!(
                    compile_globs(&[bad.to_string()]),
                    Err(GrantError::InvalidResource { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(compile_globs(&["**".to_string()]).is_ok());
    }

    #[test]
    fn mismatches_say_why() {
        let now = SystemTime::now();
        let t = unix(now);
        let g = grant(&["fs.*"], &["path:/w/**"]);
        assert_eq!(g.check(&request("fs.read", "path:/w/a"), now), Ok(()));
        assert_eq!(
            g.check(&request("net.get", "path:/w/a"), now),
            Err(GrantMismatch::ActionNotCovered)
        );
        assert_eq!(
            g.check(&request("fs.read", "path:/x/a"), now),
            Err(GrantMismatch::ResourceNotCovered)
        );
        let mut other = request("fs.read", "path:/w/a");
        other.principal = Principal::Agent {
            id: "ag_2".into(),
            name: "builder".into(),
        };
        assert_eq!(g.check(&other, now), Err(GrantMismatch::OtherPrincipal));

        let revoked = Grant {
            revoked_at: Some(t),
            ..g.clone()
        };
        assert_eq!(
            revoked.check(&request("fs.read", "path:/w/a"), now),
            Err(GrantMismatch::Revoked)
        );
        let expired = Grant {
            expires_at: Some(t),
            ..g.clone()
        };
        assert_eq!(
            expired.check(&request("fs.read", "path:/w/a"), now),
            Err(GrantMismatch::Expired)
        );
        let exhausted = Grant {
            max_uses: Some(2),
            uses: 2,
            ..g.clone()
        };
        assert_eq!(
            exhausted.check(&request("fs.read", "path:/w/a"), now),
            Err(GrantMismatch::Exhausted)
        );
        let with_intent = Grant {
            intent: Some("build the project".into()),
            ..g.clone()
        };
        assert_eq!(
            with_intent.check(&request("fs.read", "path:/w/a"), now),
            Ok(())
        );
        let mut wrong = request("fs.read", "path:/w/a");
        wrong.intent = "delete everything".into();
        assert_eq!(
            with_intent.check(&wrong, now),
            Err(GrantMismatch::IntentDiffers)
        );
        let mut untrusted = request("fs.read", "path:/w/a");
        untrusted.intent_source = IntentSource::Untrusted("tool:web.fetch".into());
        assert_eq!(
            with_intent.check(&untrusted, now),
            Err(GrantMismatch::UntrustedIntent)
        );
        // A grant without an intent does not care where the intent came from.
        assert_eq!(g.check(&untrusted, now), Ok(()));
    }

    #[test]
    fn escaped_resources_match_only_themselves() {
        for resource in ["path:/a/b*c?[d]{e}", "path:/a\\b", "host:x.y:1"] {
            let glob = escape_resource(resource);
            let set = compile_globs(std::slice::from_ref(&glob)).unwrap();
            assert!(
                set.is_match_candidate(&Candidate::from_bytes(resource)),
                "{glob}"
            );
            assert!(
                !set.is_match_candidate(&Candidate::from_bytes("path:/a/bxc")),
                "{glob}"
            );
        }
    }
}
