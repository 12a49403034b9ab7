//! IP addresses and CIDR ranges as settings and configurations write them: the one parser behind
//! configuration allow-lists, trusted proxies and the outbound SSRF exceptions.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses an IP address (a range of one) or a CIDR range. Host bits are dropped (`10.1.2.3/8` is
/// `10.0.0.0/8`), and an IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) becomes its IPv4 form:
/// addresses are compared in their canonical form ([`IpAddr::to_canonical`]), so a mapped range
/// kept as IPv6 would never match anything.
pub fn parse_ip_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is not an IP address or CIDR range"))?;
    Ok(canonical(net.trunc()))
}

/// An IPv4-mapped IPv6 range in its IPv4 form; other ranges as they are.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Option<IpNet> {
        text.parse().ok()
    }

    #[test]
    fn addresses_and_ranges_parse_to_their_canonical_range() {
        assert_eq!(parse_ip_range("192.168.1.7").ok(), net("192.168.1.7/32"));
        assert_eq!(parse_ip_range(" 10.1.2.3/8 ").ok(), net("10.0.0.0/8"), "host bits dropped");
        assert_eq!(parse_ip_range("2001:db8::1").ok(), net("2001:db8::1/128"));
        assert_eq!(parse_ip_range("::ffff:10.0.0.0/104").ok(), net("10.0.0.0/8"), "mapped range as IPv4");
        assert_eq!(parse_ip_range("::ffff:127.0.0.1").ok(), net("127.0.0.1/32"));
        assert_eq!(parse_ip_range("::/0").ok(), net("::/0"), "short IPv6 prefixes stay IPv6");
    }

    #[test]
    fn anything_else_is_named_in_the_error() {
        assert_eq!(parse_ip_range("10.0.0.0/40"), Err("'10.0.0.0/40' is not an IP address or CIDR range".into()));
        assert!(parse_ip_range("300.1.1.1").is_err());
        assert!(parse_ip_range("example.com").is_err());
    }
}
