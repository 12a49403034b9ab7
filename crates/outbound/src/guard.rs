//! The SSRF guard: outbound requests never reach loopback, private, link-local, CGNAT or other
//! reserved addresses unless configuration allows the range.
//!
//! The check runs on the address each attempt actually connects to: the client resolves names
//! through [`GuardedResolver`], which drops forbidden addresses, and a literal IP in the URL is
//! checked by [`AddressPolicy::check_url`] before the request is made. Redirects are not followed,
//! so a public endpoint cannot bounce a request inward.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, LazyLock},
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Ranges no outbound request may reach by default (IANA special-purpose registries).
static RESERVED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "a 'this network' address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        // `::a.b.c.d`, IPv4-compatible (deprecated): some stacks still route it to a.b.c.d.
        ("::/96", "an IPv4-compatible address"),
        ("::ffff:0:0:0/96", "an IPv4-translated address"),
        ("64:ff9b::/96", "a NAT64 address"),
        ("64:ff9b:1::/48", "a NAT64 address"),
        ("100::/64", "a discard address"),
        ("2001::/23", "an IETF protocol address"),
        ("2001:db8::/32", "a documentation address"),
        ("2002::/16", "a 6to4 address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "a segment-routing address"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    ]
    .into_iter()
    .filter_map(|(net, what)| net.parse().ok().map(|net| (net, what)))
    .collect()
});

/// Which addresses and schemes outbound requests may use.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Reserved ranges that are allowed anyway (`outbound.allow_cidrs`).
    pub allow: Vec<IpNet>,
    /// Whether `http://` endpoints are allowed (development only).
    pub allow_http: bool,
}

/// Why an address or URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// A literal address in the URL: the message names it, as the URL does.
    #[error("blocked: address not allowed: {ip} is {what} (see outbound.allow_cidrs)")]
    Address { ip: IpAddr, what: &'static str },
    /// A name that resolves to no address outbound requests may reach. The message does not say
    /// what it resolved to: attempt logs are read by partners, and internal addresses are not
    /// theirs to learn.
    #[error("blocked: address not allowed ({host} resolves to no address outbound requests may reach)")]
    Host { host: String },
    #[error("webhookUri must be an absolute https URL")]
    Scheme,
    #[error("webhookUri is not a valid URL: {0}")]
    Url(String),
}

impl AddressPolicy {
    /// Why `ip` may not be reached, if it may not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let ip = canonical(ip);
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match RESERVED.iter().find(|(net, _)| net.contains(&ip)) {
            Some((_, what)) => Err(Blocked::Address { ip, what }),
            None => Ok(()),
        }
    }

    /// Checks a URL's scheme and, when its host is a literal IP, that address. Names are checked
    /// when they are resolved, at each attempt.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(Blocked::Scheme),
        }
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(Blocked::Url("it has no host".to_owned())),
        }
    }

    /// Parses `text` as an endpoint URL and checks it.
    pub fn parse_url(&self, text: &str) -> Result<Url, Blocked> {
        let url = Url::parse(text).map_err(|e| Blocked::Url(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Blocked::Url("credentials in the URL are not allowed; use headers".to_owned()));
        }
        self.check_url(&url)?;
        Ok(url)
    }
}

/// An IPv4-mapped IPv6 address is checked as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A DNS resolver that answers only addresses the policy allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.into_iter().filter(|addr| policy.check(addr.ip()).is_ok()).collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked::Host { host }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn policy() -> AddressPolicy {
        AddressPolicy::default()
    }

    #[test]
    fn reserved_ranges_are_blocked_in_both_families() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::7f00:1",
            "::a00:1",
            "::ffff:0:7f00:1",
            "3fff::1",
            "5f00::1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(policy().check(ip).is_err(), "{ip} should be blocked");
        }
        for ip in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
            assert!(policy().check(ip).is_err());
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(policy().check(ip.parse().expect("ip")).is_ok(), "{ip} should pass");
        }
    }

    #[test]
    fn an_allowed_range_written_ipv4_mapped_opens_the_ipv4_addresses() {
        let range = hookbus_core::net::parse_ip_range("::ffff:127.0.0.0/104").expect("a range");
        let policy = AddressPolicy { allow: vec![range], allow_http: false };
        for ip in ["127.0.0.1", "::ffff:127.0.0.1"] {
            assert!(policy.check(ip.parse().expect("ip")).is_ok(), "{ip} should pass");
        }
        assert!(policy.check("10.0.0.1".parse().expect("ip")).is_err());
    }

    #[test]
    fn the_allow_list_opens_a_range() {
        let policy = AddressPolicy { allow: vec!["127.0.0.0/8".parse().expect("net")], allow_http: false };
        assert!(policy.check("127.0.0.1".parse().expect("ip")).is_ok());
        assert!(policy.check("::ffff:127.0.0.1".parse().expect("ip")).is_ok());
        assert!(policy.check("10.0.0.1".parse().expect("ip")).is_err());
    }

    #[test]
    fn urls_need_https_unless_http_is_allowed() {
        assert_eq!(policy().parse_url("http://example.com/hook"), Err(Blocked::Scheme));
        assert!(policy().parse_url("https://example.com/hook").is_ok());
        assert!(matches!(policy().parse_url("https://10.0.0.1/hook"), Err(Blocked::Address { .. })));
        assert!(matches!(policy().parse_url("https://[::1]/hook"), Err(Blocked::Address { .. })));
        assert!(matches!(policy().parse_url("https://[::127.0.0.1]/hook"), Err(Blocked::Address { .. })));
        let http = AddressPolicy { allow_http: true, ..policy() };
        assert!(http.parse_url("http://example.com/hook").is_ok());
        assert!(matches!(policy().parse_url("https://user:pw@example.com/"), Err(Blocked::Url(_))));
    }
}
