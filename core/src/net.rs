//! Which network addresses outgoing calls on a tenant's behalf (webhooks) may reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for an address on the public Internet: not loopback, private, link-local, shared
/// (carrier-grade NAT), documentation, multicast, broadcast or unspecified. A webhook an
/// account admin registers must not reach Outpost's own network by default.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let [_, _, c, _] = ip.octets();
    // IETF protocol assignments and the deprecated 6to4 relay anycast.
    let special = (a == 192 && b == 0 && c == 0) || (a == 192 && b == 88 && c == 99);
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || shared
        || benchmarking
        || special
        || a == 0
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    // Forms that carry an IPv4 address (NAT64, 6to4, IPv4-compatible, Teredo) could reach a
    // private IPv4 network through a gateway: not public. So are site-local and discard.
    let embeds_v4 = (first == 0x0064 && segments[1] == 0xff9b)
        || first == 0x2002
        || (first == 0x2001 && segments[1] == 0)
        || segments[..6].iter().all(|s| *s == 0);
    let site_local = first & 0xffc0 == 0xfec0;
    let discard = first == 0x0100 && segments[1..4].iter().all(|s| *s == 0);
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation
        || embeds_v4
        || site_local
        || discard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
    }
}
