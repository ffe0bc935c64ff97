//! The client address behind trusted proxies. Per-IP limits key on it, so behind an ingress they
//! must see the browser's address, not the ingress's — and a client must not be able to choose its
//! own by sending `X-Forwarded-For`. The forwarding headers are read only when the TCP peer is a
//! configured trusted proxy (`TRUSTED_PROXIES`, CIDRs; empty: trust nobody), and the chain is
//! walked from the right: the first hop that is not itself a trusted proxy is the client.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

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

/// The hops a proxy chain reported, leftmost (the original client) first. `Forwarded` (RFC 7239)
/// wins over `X-Forwarded-For` when present; every header line counts, in order.
fn hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(parse_hop)
        .collect()
}

/// The client address of a request that arrived from `peer`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut client = peer;
    for hop in hops(headers).into_iter().rev() {
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

    #[test]
    fn client_ip_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(resolve(ip("203.0.113.7"), &h, &[]), ip("203.0.113.7"));
        let proxies = parse_trusted("10.0.0.0/8").unwrap();
        assert_eq!(resolve(ip("203.0.113.7"), &h, &proxies), ip("203.0.113.7"));
    }

    #[test]
    fn client_ip_walks_the_chain_from_the_right_past_trusted_hops() {
        let proxies = parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap();
        // the client forged the leftmost entry; the ingress appended the real peer
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 192.168.1.1")]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies), ip("198.51.100.4"));
        // several header lines are one list
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies), ip("198.51.100.4"));
        // only proxies in the chain: the leftmost is the best we know
        let h = headers(&[("x-forwarded-for", "10.2.2.2")]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies), ip("10.2.2.2"));
        // no header: the proxy itself
        assert_eq!(
            resolve(ip("10.1.2.3"), &HeaderMap::new(), &proxies),
            ip("10.1.2.3")
        );
        // garbage ends the walk at the last trusted hop
        let h = headers(&[("x-forwarded-for", "198.51.100.4, not-an-ip")]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &proxies), ip("10.1.2.3"));
    }

    #[test]
    fn client_ip_forwarded_header_wins_and_parses_rfc7239_forms() {
        let proxies = parse_trusted("127.0.0.1/32,::1").unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                r#"for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1"#,
            ),
        ]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &proxies),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=203.0.113.43")]);
        assert_eq!(resolve(ip("::1"), &h, &proxies), ip("192.0.2.60"));
    }

    #[test]
    fn client_ip_refuses_bad_settings() {
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("proxy.local").is_err());
        assert_eq!(parse_trusted(" ").unwrap(), Vec::<IpNet>::new());
    }
}
