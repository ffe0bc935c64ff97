//! The client's identity for every per-address limit (login, registration, holds, queue checks,
//! Socket.IO handshakes): the address behind trusted proxies, and the key limits count it under.
//!
//! Behind an ingress the limits must see the browser's address, not the ingress's, and a client must
//! not be able to choose its own. The forwarding header is read only when the TCP peer is a
//! configured trusted proxy (`TRUSTED_PROXIES`, CIDRs; empty: trust nobody), and only the one header
//! those proxies own (`TRUSTED_PROXY_HEADER`: `x-forwarded-for`, the default, or `forwarded`). The
//! other header is the client's own: nginx and ingress-nginx append to `X-Forwarded-For` but pass a
//! client's `Forwarded` through untouched, so believing it would let every client pick an address per
//! request. The chain is walked from the right: the first hop that is not itself a trusted proxy is
//! the client.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The forwarding header the trusted proxies own (set, or append to); the other one is ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (nginx, ingress-nginx, most cloud load balancers).
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=`), only for proxies that set it and drop a client's own.
    #[value(name = "forwarded")]
    Forwarded,
}

/// Parses `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
pub fn parse_trusted(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("TRUSTED_PROXIES: {s:?} is not a CIDR or an IP address"))
        })
        .collect()
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|n| n.contains(&ip))
}

/// One hop of `X-Forwarded-For` (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`) or of a `Forwarded`
/// `for=` value (quoted, bracketed, with a port; `unknown` and obfuscated names are not addresses).
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4)
}

/// The hops the proxy chain reported in `header`, leftmost (the original client) first; every
/// header line counts, in order.
fn hops(headers: &HeaderMap, header: ProxyHeader) -> Vec<Option<IpAddr>> {
    let lines = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    match header {
        ProxyHeader::XForwardedFor => lines("x-forwarded-for")
            .into_iter()
            // a line that is not text cannot be read: it ends the walk like a bad hop
            .flat_map(|v| match v {
                Some(v) => v.split(',').map(parse_hop).collect(),
                None => vec![None],
            })
            .collect(),
        ProxyHeader::Forwarded => lines("forwarded")
            .into_iter()
            .flat_map(|v| match v {
                Some(v) => v
                    .split(',')
                    .map(|element| {
                        element.split(';').find_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                        })?
                    })
                    .collect(),
                None => vec![None],
            })
            .collect(),
    }
}

/// The client address of a request that arrived from `peer`.
pub fn resolve(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[IpNet],
    header: ProxyHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut client = peer;
    for hop in hops(headers, header).into_iter().rev() {
        match hop {
            // an unparsable hop ends what can be believed: the last trusted proxy saw it
            None => return client,
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted(client, proxies) {
                    return client;
                }
            }
        }
    }
    client
}

/// The subject per-address limits count `ip` under: an IPv4 address itself, an IPv6 address's /64.
/// One subscriber line or host gets a whole /64, so keying on single IPv6 addresses would let one
/// client rotate through 2^64 fresh budgets.
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(net))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;
    const FWD: ProxyHeader = ProxyHeader::Forwarded;

    #[test]
    fn client_ip_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9"), ("forwarded", "for=8.8.8.8")]);
        for header in [XFF, FWD] {
            assert_eq!(
                resolve(ip("203.0.113.7"), &h, &[], header),
                ip("203.0.113.7")
            );
            let proxies = parse_trusted("10.0.0.0/8").unwrap();
            assert_eq!(
                resolve(ip("203.0.113.7"), &h, &proxies, header),
                ip("203.0.113.7")
            );
        }
    }

    #[test]
    fn client_ip_walks_the_chain_from_the_right_past_trusted_hops() {
        let proxies = parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap();
        // the client forged the leftmost entry; the ingress appended the real peer
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 192.168.1.1")]);
        assert_eq!(
            resolve(ip("10.1.2.3"), &h, &proxies, XFF),
            ip("198.51.100.4")
        );
        // several header lines are one list
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(
            resolve(ip("10.1.2.3"), &h, &proxies, XFF),
            ip("198.51.100.4")
        );
        // only proxies in the chain: the leftmost is the best we know
        let h = headers(&[("x-forwarded-for", "10.2.2.2")]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies, XFF), ip("10.2.2.2"));
        // no header: the proxy itself
        assert_eq!(
            resolve(ip("10.1.2.3"), &HeaderMap::new(), &proxies, XFF),
            ip("10.1.2.3")
        );
        // garbage ends the walk at the last trusted hop
        let h = headers(&[("x-forwarded-for", "198.51.100.4, not-an-ip")]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies, XFF), ip("10.1.2.3"));
        let mut h = headers(&[("x-forwarded-for", "198.51.100.4")]);
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies, XFF), ip("10.1.2.3"));
    }

    /// ingress-nginx appends the peer to `X-Forwarded-For` and passes the client's `Forwarded` on:
    /// with the default header, no `Forwarded` a client sends changes who it is.
    #[test]
    fn client_ip_a_clients_own_forwarded_header_is_never_believed_by_default() {
        let proxies = parse_trusted("10.0.0.0/8").unwrap();
        for forged in [
            "for=1.1.1.1",
            "for=10.0.0.9",
            r#"for="[2001:db8::1]:80""#,
            "garbage",
        ] {
            let h = headers(&[("forwarded", forged), ("x-forwarded-for", "198.51.100.4")]);
            assert_eq!(
                resolve(ip("10.1.2.3"), &h, &proxies, XFF),
                ip("198.51.100.4"),
                "{forged}"
            );
            // and without X-Forwarded-For the proxy is the best we know, never the forged value
            let h = headers(&[("forwarded", forged)]);
            assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies, XFF), ip("10.1.2.3"));
        }
    }

    /// Opted into `Forwarded`: it is walked like `X-Forwarded-For`, and a client's
    /// `X-Forwarded-For` is the header now ignored.
    #[test]
    fn client_ip_forwarded_mode_parses_rfc7239_and_ignores_x_forwarded_for() {
        let proxies = parse_trusted("127.0.0.1/32,::1").unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                r#"for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1"#,
            ),
        ]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &proxies, FWD),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=203.0.113.43")]);
        assert_eq!(resolve(ip("::1"), &h, &proxies, FWD), ip("192.0.2.60"));
        // an element without `for` (or `for=unknown`) is a hop we cannot name: the walk stops there
        let h = headers(&[("forwarded", "for=192.0.2.60, proto=https")]);
        assert_eq!(resolve(ip("::1"), &h, &proxies, FWD), ip("::1"));
        let h = headers(&[("forwarded", "for=192.0.2.60, for=unknown")]);
        assert_eq!(resolve(ip("::1"), &h, &proxies, FWD), ip("::1"));
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(resolve(ip("::1"), &h, &proxies, FWD), ip("::1"));
    }

    #[test]
    fn client_ip_limit_key_groups_an_ipv6_slash_64() {
        assert_eq!(limit_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(limit_key(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn client_ip_refuses_bad_settings() {
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("proxy.local").is_err());
        assert_eq!(parse_trusted(" ").unwrap(), Vec::<IpNet>::new());
    }
}
