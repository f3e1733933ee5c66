//! Which IP addresses are special: not the public internet, so a request to one reaches the
//! machine itself, its local network or a cloud's metadata service. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of special address `ip` is, or `None` for an ordinary public address.
///
/// The label names the first range that holds it (`metadata` before `link-local`, so
/// 169.254.169.254 says what it is). IPv6 addresses that carry an IPv4 address (IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:AABB:CCDD::`) are classified by the IPv4 address they carry, because that is where
/// such a packet can end up.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "metadata",
        // Alibaba Cloud's metadata service.
        _ if ip == Ipv4Addr::new(100, 100, 100, 200) => "metadata",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "this-network",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared (CGNAT)",
        (192, 0, 0) => "protocol-assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("metadata");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        // Whatever the IPv4 address is, classify it; a public one stays public.
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        0xfc00..=0xfdff => "private",
        0xfe80..=0xfebf => "link-local",
        // Site-local, deprecated but still routed by some networks.
        0xfec0..=0xfeff => "private",
        0xff00..=0xffff => "multicast",
        // Discard-only prefix 100::/64.
        0x0100 if s[1..4] == [0, 0, 0] => "reserved",
        0x2001 if s[1] == 0x0db8 => "documentation",
        // NAT64 local-use prefix 64:ff9b:1::/48 translates to whatever the local network says.
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "private",
        // Anything else under ::/8 is reserved (the IPv4 forms were handled above).
        0x0000 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one to its host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        // IPv4-compatible ::a.b.c.d (deprecated; :: and ::1 are handled before).
        [0, 0, 0, 0, 0, 0, _, _] => Some(tail()),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail()),
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        // 6to4 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// Whether no grant may make a connection to `ip` useful or safe: unspecified (on Linux,
/// `0.0.0.0` reaches the machine itself and should be named as `127.0.0.1`), broadcast,
/// multicast and reserved addresses are refused even when the URL names them literally.
pub fn never_connectable(class: &str) -> bool {
    matches!(
        class,
        "unspecified" | "this-network" | "broadcast" | "multicast" | "reserved"
    )
}

/// Host names that are cloud metadata services whatever they resolve to. They are refused by
/// name: to reach one, name its address literally (`http://169.254.169.254/`) in the URL and
/// in a grant.
pub fn is_metadata_name(host: &str) -> bool {
    matches!(
        host,
        "metadata.google.internal" | "metadata" | "metadata.goog" | "instance-data"
    ) || host.ends_with(".metadata.google.internal")
}

/// Whether `host` (lowercase, no trailing dot) is `localhost` or a name under it, which
/// RFC 6761 reserves for the loopback interface. Such names are never looked up in DNS or
/// `/etc/hosts`; they mean 127.0.0.1 and ::1.
pub fn is_localhost(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<&'static str> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn special_ipv4_ranges() {
        let table = [
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("10.255.255.255", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.1.1", Some("private")),
            ("192.169.0.1", None),
            ("169.254.0.1", Some("link-local")),
            ("169.254.169.254", Some("metadata")),
            ("100.100.100.200", Some("metadata")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("100.127.255.255", Some("shared (CGNAT)")),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("this-network")),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("192.0.0.8", Some("protocol-assignment")),
            ("192.0.2.1", Some("documentation")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("198.18.0.1", Some("benchmarking")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
        ];
        for (ip, want) in table {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn special_ipv6_ranges() {
        let table = [
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fc00::1", Some("private")),
            ("fd12:3456::1", Some("private")),
            ("fd00:ec2::254", Some("metadata")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("private")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("100::1", Some("reserved")),
            ("64:ff9b:1::1", Some("private")),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
        ];
        for (ip, want) in table {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_classified_by_what_they_carry() {
        let table = [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:7f00:1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("::ffff:192.168.0.1", Some("private")),
            ("::ffff:100.64.0.1", Some("shared (CGNAT)")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:255.255.255.255", Some("broadcast")),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("loopback")),
            ("::ffff:0:10.0.0.1", Some("private")),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::8.8.8.8", None),
            ("2002:a00:1::", Some("private")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:808:808::", None),
        ];
        for (ip, want) in table {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn names_with_fixed_meanings() {
        assert!(is_localhost("localhost"));
        assert!(is_localhost("api.localhost"));
        assert!(!is_localhost("localhost.example.com"));
        assert!(!is_localhost("notlocalhost"));
        assert!(is_metadata_name("metadata.google.internal"));
        assert!(is_metadata_name("computemetadata.metadata.google.internal"));
        assert!(!is_metadata_name("metadata.example.com"));
        assert!(never_connectable("unspecified"));
        assert!(never_connectable("multicast"));
        assert!(!never_connectable("loopback"));
        assert!(!never_connectable("metadata"));
    }
}
