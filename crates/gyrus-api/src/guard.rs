//! Host and Origin checks: the guard against DNS rebinding and cross-site requests.
//!
//! A DNS-rebinding attack makes a browser send requests to 127.0.0.1 under the attacker's
//! host name, so the name in `Host` is what gives it away. IP literals and `localhost` cannot
//! be rebound, so they pass on any port (an SSH tunnel changes the port); any other name must
//! be listed in `api.allowed_hosts`. A browser's `Origin`, when present, must name the same
//! host the request was sent to, or be listed in `api.allowed_origins`.

use std::net::IpAddr;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    /// No Host header on a TCP request.
    MissingHost,
    /// The Host is not an IP literal, localhost or an allowed name.
    HostNotAllowed(String),
    /// The Origin is not the request's own host and not allowed.
    OriginNotAllowed(String),
}

impl GuardError {
    /// A sentence for the error body.
    pub fn message(&self) -> String {
        match self {
            GuardError::MissingHost => "the Host header is required".into(),
            GuardError::HostNotAllowed(h) => format!(
                "Host {h:?} is not allowed; add it to api.allowed_hosts in user/gyrus.toml if it is yours"
            ),
            GuardError::OriginNotAllowed(o) => format!(
                "Origin {o:?} is not allowed; add it to api.allowed_origins in user/gyrus.toml if it is yours"
            ),
        }
    }
}

/// Splits `host[:port]` (with `[v6]` brackets) into the name and the optional port.
fn split_host(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((v6, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((authority, None)),
    }
}

fn host_allowed(authority: &str, allowed: &[String]) -> bool {
    let Some((name, port)) = split_host(authority) else {
        return false;
    };
    if name.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return false;
    }
    if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    allowed.iter().any(|a| {
        a.eq_ignore_ascii_case(authority) || (!a.contains(':') && a.eq_ignore_ascii_case(name))
    })
}

/// Checks a TCP request's `Host` and `Origin` headers against the rules above.
pub fn check(
    host: Option<&str>,
    origin: Option<&str>,
    allowed_hosts: &[String],
    allowed_origins: &[String],
) -> Result<(), GuardError> {
    let host = host.ok_or(GuardError::MissingHost)?;
    if !host_allowed(host, allowed_hosts) {
        return Err(GuardError::HostNotAllowed(host.to_string()));
    }
    if let Some(origin) = origin {
        let same_origin = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
        let listed = allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin));
        if !(same_origin || listed) {
            return Err(GuardError::OriginNotAllowed(origin.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str) -> bool {
        check(
            Some(host),
            None,
            &["gyrus.example.org".into(), "box:9000".into()],
            &[],
        )
        .is_ok()
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_need_listing() {
        for h in [
            "127.0.0.1:7878",
            "127.0.0.1",
            "[::1]:7878",
            "[::1]",
            "localhost:1",
            "LOCALHOST",
        ] {
            assert!(ok(h), "{h}");
        }
        for h in ["gyrus.example.org", "gyrus.example.org:443", "box:9000"] {
            assert!(ok(h), "{h}");
        }
        for h in [
            "evil.example.com:7878",
            "box:9001",
            "box",
            "",
            "127.0.0.1:x",
            "[::1",
            "localhost.evil.com",
        ] {
            assert!(!ok(h), "{h}");
        }
        assert_eq!(check(None, None, &[], &[]), Err(GuardError::MissingHost));
    }

    #[test]
    fn origin_must_match_host_or_be_listed() {
        let h = Some("127.0.0.1:7878");
        assert!(check(h, Some("http://127.0.0.1:7878"), &[], &[]).is_ok());
        assert!(check(h, Some("http://evil.example.com"), &[], &[]).is_err());
        assert!(check(h, Some("null"), &[], &[]).is_err());
        assert!(
            check(
                h,
                Some("https://app.example.org"),
                &[],
                &["https://app.example.org".into()]
            )
            .is_ok()
        );
    }
}
