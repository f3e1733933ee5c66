//! URLs as `net.http` sees them: parsed strictly (http and https only, no credentials, no
//! ambiguous host forms), with the broker's resource derived from them, and redirect
//! locations resolved against the URL they came from (RFC 3986, section 5). Pure.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 8192;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a URL points: a DNS name or an IP address given literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name: lowercase ASCII, no trailing dot.
    Name(String),
    /// An IP address written in the URL.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// As it is written in a URL and in a resource: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A parsed, normalised http or https URL, without its fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// The path and query, starting with `/`, percent-encoded.
    pub path_and_query: String,
}

impl Target {
    /// Parses `url`. The message of an error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.len() > MAX_URL_LEN {
            return Err(format!("the URL is longer than {MAX_URL_LEN} bytes"));
        }
        if url.chars().any(char::is_control) {
            return Err("the URL has control characters".into());
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{url:?} is not an absolute URL; write it in full, e.g. https://example.com/path"
            ));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(format!(
                    "only http and https URLs are supported, not {other}:"
                ));
            }
        };
        // The fragment is never sent.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (host, port) = parse_authority(authority, scheme)?;
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query: normalise_path_and_query(path),
        })
    }

    /// The broker's resource: `host:<host>:<port>`, the host lowercase and IPv6 in brackets.
    pub fn resource(&self) -> String {
        format!("host:{}:{}", self.host, self.port)
    }

    /// The whole URL, the port left out when it is the scheme's default.
    pub fn url(&self) -> String {
        let scheme = self.scheme.as_str();
        if self.port == self.scheme.default_port() {
            format!("{scheme}://{}{}", self.host, self.path_and_query)
        } else {
            format!(
                "{scheme}://{}:{}{}",
                self.host, self.port, self.path_and_query
            )
        }
    }

    /// True if `other` has the same scheme, host and port (an origin, in the browser's
    /// sense): credentials may follow a redirect only within one.
    pub fn same_origin(&self, other: &Target) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }

    /// Resolves a redirect's `Location` against this URL: an absolute URL, `//host/path`,
    /// `/path`, `?query` or a relative path.
    pub fn join(&self, location: &str) -> Result<Target, String> {
        let location = location.trim();
        if location.chars().any(char::is_control) {
            return Err("the redirect location has control characters".into());
        }
        if has_scheme(location) {
            return Target::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Target::parse(&format!("{}://{rest}", self.scheme.as_str()));
        }
        let location = location
            .split_once('#')
            .map_or(location, |(before, _)| before);
        let (base_path, base_query) = split_query(&self.path_and_query);
        let (rel_path, rel_query) = split_query(location);
        let (path, query) = if rel_path.is_empty() {
            // `?query` keeps the path; an empty reference is the same URL.
            (
                base_path.to_string(),
                rel_query.or(if location.is_empty() {
                    base_query
                } else {
                    None
                }),
            )
        } else if rel_path.starts_with('/') {
            (remove_dot_segments(rel_path), rel_query)
        } else {
            let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
            (remove_dot_segments(&format!("{dir}{rel_path}")), rel_query)
        };
        let joined = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Ok(Target {
            path_and_query: normalise_path_and_query(&joined),
            ..self.clone()
        })
    }
}

fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    }
}

fn parse_authority(authority: &str, scheme: Scheme) -> Result<(Host, u16), String> {
    if authority.contains('@') {
        return Err(
            "credentials in the URL (user:password@host) are not supported; send an Authorization header instead"
                .into(),
        );
    }
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let (host_text, port_text) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!(
                "{authority:?}: an IPv6 address needs its closing ]"
            ));
        };
        let ip: Ipv6Addr = inside.parse().map_err(|_| {
            format!("{inside:?} is not an IPv6 address (zone ids such as %eth0 are not supported)")
        })?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{authority:?}: expected :port after the ]"))?,
            ),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), parse_port(port, scheme)?));
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = parse_port(port_text, scheme)?;
    Ok((parse_host(host_text)?, port))
}

fn parse_port(text: Option<&str>, scheme: Scheme) -> Result<u16, String> {
    match text {
        None | Some("") => Ok(scheme.default_port()),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 5 => match p.parse() {
            Ok(0) | Err(_) => Err(format!("port {p} is not between 1 and 65535")),
            Ok(port) => Ok(port),
        },
        Some(p) => Err(format!("{p:?} is not a port number")),
    }
}

fn parse_host(text: &str) -> Result<Host, String> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("the URL has no host".into());
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if !name.is_ascii() {
        return Err(format!(
            "{text:?} is not ASCII; write international names in their xn-- (punycode) form"
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "{text:?} is not a host; write IPv6 addresses in brackets, e.g. http://[2001:db8::1]/"
        ));
    }
    if name.len() > 253 {
        return Err(format!("host {text:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "{text:?} is not a valid host name (letters, digits, - and _ in dot-separated labels)"
            ));
        }
    }
    // No top-level domain is numeric, and resolvers read forms like 127.1, 2130706433 or
    // 0x7f.0.0.1 as IPv4 addresses: refuse them rather than guess.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) || name.starts_with("0x") {
        return Err(format!(
            "{text:?} is not a valid host; write IPv4 addresses in dotted-quad form, e.g. 127.0.0.1"
        ));
    }
    Ok(Host::Name(name.to_string()))
}

/// `/` for an empty path, `/` before a bare query; characters a URL may not hold as they are
/// (spaces, non-ASCII, quotes…) percent-encoded.
fn normalise_path_and_query(path: &str) -> String {
    let path = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3986, section 5.2.4, for a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate().skip(1) {
        let last = i == segments.len() - 1;
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn resources_name_lowercase_host_and_port() {
        let table = [
            ("http://Example.COM/a", "host:example.com:80"),
            ("https://example.com./", "host:example.com:443"),
            ("https://example.com:8443", "host:example.com:8443"),
            ("http://127.0.0.1:8080/x?y", "host:127.0.0.1:8080"),
            ("http://[::1]:9000/", "host:[::1]:9000"),
            ("http://[2001:DB8::1]/", "host:[2001:db8::1]:80"),
            ("http://[::ffff:127.0.0.1]/", "host:[::ffff:127.0.0.1]:80"),
            ("HTTP://localhost:3000", "host:localhost:3000"),
        ];
        for (url, resource) in table {
            assert_eq!(t(url).resource(), resource, "{url}");
        }
    }

    #[test]
    fn urls_are_normalised() {
        assert_eq!(t("http://example.com").url(), "http://example.com/");
        assert_eq!(t("http://example.com:80/a").url(), "http://example.com/a");
        assert_eq!(
            t("https://example.com:80/a").url(),
            "https://example.com:80/a"
        );
        assert_eq!(t("http://example.com?q=1").url(), "http://example.com/?q=1");
        assert_eq!(t("http://example.com/a#frag").url(), "http://example.com/a");
        assert_eq!(
            t("http://example.com/a b/é").url(),
            "http://example.com/a%20b/%C3%A9"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let table = [
            ("ftp://example.com/", "only http and https"),
            ("file:///etc/passwd", "only http and https"),
            ("example.com/path", "not an absolute URL"),
            ("http://user:pw@example.com/", "credentials"),
            ("http:///path", "no host"),
            ("http://example.com:0/", "between 1 and 65535"),
            ("http://example.com:99999/", "between 1 and 65535"),
            ("http://example.com:http/", "not a port"),
            ("http://[::1/", "closing ]"),
            ("http://[fe80::1%25eth0]/", "zone ids"),
            ("http://exa mple.com/", "not a valid host name"),
            ("http://bücher.de/", "punycode"),
            ("http://2130706433/", "dotted-quad"),
            ("http://127.1/", "dotted-quad"),
            ("http://0x7f.0.0.1/", "dotted-quad"),
            ("http://-bad.com/", "not a valid host name"),
            ("http://a\nb/", "control characters"),
        ];
        for (url, why) in table {
            let err = Target::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_base() {
        let base = t("http://a.example:8080/b/c/d?q=1");
        let table = [
            ("https://other.example/x", "https://other.example/x"),
            ("//other.example/x", "http://other.example/x"),
            ("/x/y", "http://a.example:8080/x/y"),
            ("/x/../y", "http://a.example:8080/y"),
            ("g", "http://a.example:8080/b/c/g"),
            ("./g", "http://a.example:8080/b/c/g"),
            ("../g", "http://a.example:8080/b/g"),
            ("../../../../g", "http://a.example:8080/g"),
            ("..", "http://a.example:8080/b/"),
            ("g?y=2", "http://a.example:8080/b/c/g?y=2"),
            ("?y=2", "http://a.example:8080/b/c/d?y=2"),
            ("", "http://a.example:8080/b/c/d?q=1"),
            ("#frag", "http://a.example:8080/b/c/d?q=1"),
            (
                "http://169.254.169.254/latest",
                "http://169.254.169.254/latest",
            ),
        ];
        for (location, want) in table {
            assert_eq!(base.join(location).unwrap().url(), want, "{location:?}");
        }
        assert!(base.join("ftp://x/").unwrap_err().contains("only http"));
        assert!(base.join("file:/etc/passwd").is_err());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = t("http://a.example/x");
        assert!(a.same_origin(&t("http://A.example:80/y")));
        assert!(!a.same_origin(&t("https://a.example/x")));
        assert!(!a.same_origin(&t("http://a.example:81/x")));
        assert!(!a.same_origin(&t("http://b.example/x")));
    }
}
