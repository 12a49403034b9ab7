use std::{net::IpAddr, str::FromStr};

use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed. Empty by default: then the client
/// is always the TCP peer, whatever headers it sends.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges, naming the first bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|entry| hookbus_core::net::parse_ip_range(entry.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
            .map_err(BadProxy)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    /// address in `X-Forwarded-For` that is not a trusted proxy. IPv4-mapped IPv6 addresses become
    /// IPv4. An entry that does not parse stops the walk at the hop that reported it.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for.unwrap_or_default().split(',').map(str::trim).filter(|hop| !hop.is_empty());
        for hop in hops.rev() {
            match IpAddr::from_str(hop) {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("203.0.113.9"), Some("10.0.0.1")), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap_or_default();
        // The client put a spoofed address first; the proxies appended the real one.
        let header = "1.2.3.4, 198.51.100.7, 10.0.0.5";
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), Some(header)), ip("198.51.100.7"));
        assert_eq!(proxies.client_ip(ip("::ffff:127.0.0.1"), Some("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), Some("garbage, 10.0.0.2")), ip("10.0.0.2"));
        assert!(TrustedProxies::parse(&["10.0.0.0/99"]).is_err());
        // A proxy range written IPv4-mapped still matches the peer, which compares as IPv4.
        let mapped = TrustedProxies::parse(&["::ffff:10.0.0.0/104"]).unwrap_or_default();
        assert_eq!(mapped.client_ip(ip("10.0.0.5"), Some("198.51.100.7")), ip("198.51.100.7"));
    }
}

/// An entry of `server.trusted_proxies` that is not an address or a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadProxy(String);
