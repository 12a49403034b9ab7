//! Values with rules. Each has one constructor that checks them, so a value that exists is valid.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;

/// Keys of the fixed provider routes, which a configuration may not take.
const RESERVED_KEYS: [&str; 2] = ["mono", "remita"];

/// Paths a configuration may not shadow: the bus, the key namespace with the fixed routes, and the
/// operational endpoints.
const RESERVED_PATH_PREFIXES: [&str; 5] = ["/api/bpm", "/api/webhooks", "/healthz", "/readyz", "/metrics"];

/// A configuration's key: `[A-Za-z0-9._-]{1,100}`, not a reserved word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookKey(String);

impl WebhookKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("Key is required".into());
        }
        if text.len() > 100 {
            return Err("Key must be at most 100 characters".into());
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err("Key may contain only letters, digits, '.', '_' and '-'".into());
        }
        if RESERVED_KEYS.iter().any(|reserved| reserved.eq_ignore_ascii_case(text)) {
            return Err(format!("Key '{text}' is reserved for a fixed route"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The URL path a configuration also answers at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HookPath(String);

impl HookPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("Path is required".into());
        }
        if !text.starts_with('/') {
            return Err("Path must start with '/'".into());
        }
        if text.len() > 200 {
            return Err("Path must be at most 200 characters".into());
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"/-._~".contains(&b);
        if !text.bytes().all(allowed) {
            return Err("Path may contain only letters, digits, '/', '-', '.', '_' and '~'".into());
        }
        if text.contains("//") || text.split('/').any(|segment| segment == "." || segment == "..") {
            return Err("Path may not contain empty, '.' or '..' segments".into());
        }
        let lower = text.to_ascii_lowercase();
        let shadows = |prefix: &str| {
            lower == prefix || lower.starts_with(&format!("{prefix}/")) || lower.starts_with(&format!("{prefix}."))
        };
        if let Some(prefix) = RESERVED_PATH_PREFIXES.into_iter().find(|prefix| shadows(prefix)) {
            return Err(format!("Path may not be under the reserved path {prefix}"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The HTTP method a configuration accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// Case-insensitive.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            "PATCH" => Ok(Self::Patch),
            "DELETE" => Ok(Self::Delete),
            "" => Err("Action is required".into()),
            _ => Err(format!("Action '{text}' is not one of GET, POST, PUT, PATCH, DELETE")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a configuration handles a request. The wire value is the integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionType {
    NativeCommand = 0,
    CommandChain = 1,
    Code = 2,
    StartProcess = 3,
}

impl ExecutionType {
    pub fn from_code(code: i64) -> Result<Self, String> {
        match code {
            0 => Ok(Self::NativeCommand),
            1 => Ok(Self::CommandChain),
            2 => Ok(Self::Code),
            3 => Ok(Self::StartProcess),
            _ => Err(format!("executionType {code} is not one of 0, 1, 2, 3")),
        }
    }

    pub fn code(self) -> i16 {
        self as i16
    }

    /// The field this type requires.
    pub fn field(self) -> &'static str {
        match self {
            Self::NativeCommand => "commandName",
            Self::CommandChain => "commandChain",
            Self::Code => "executionCode",
            Self::StartProcess => "processDefinitionId",
        }
    }
}

/// Who may call a configuration: addresses and CIDR ranges, parsed once when saved. Empty means
/// anyone. An IPv4-mapped IPv6 address compares as the IPv4 address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowList(Vec<IpNet>);

impl IpAllowList {
    /// Parses a comma-separated list, reporting every bad entry.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let mut nets = Vec::new();
        let mut errors = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            match hookbus_core::net::parse_ip_range(entry) {
                Ok(net) => nets.push(net),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() { Ok(Self(nets)) } else { Err(errors) }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may call. An empty list allows everyone.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

impl fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|net| if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() })
            .collect();
        f.write_str(&entries.join(","))
    }
}

/// Where the router finds a request's unique id: a JSONPath into the body, or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyKey {
    JsonPath(String),
    Header(String),
}

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(format!("'{name}' is not a valid header name"));
            }
            return Ok(Self::Header(name.to_ascii_lowercase()));
        }
        parse_json_path(text).map(|()| Self::JsonPath(text.to_owned()))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JsonPath(path) => f.write_str(path),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// Checks that `text` is an RFC 9535 JSONPath.
pub(crate) fn parse_json_path(text: &str) -> Result<(), String> {
    jsonpath_rust::parser::parse_json_path(text)
        .map(drop)
        .map_err(|e| format!("'{text}' is not a valid JSONPath: {}", first_line(&e.to_string())))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(WebhookKey::parse("nibss.payment-notify_v2").is_ok());
        assert!(WebhookKey::parse("").is_err());
        assert!(WebhookKey::parse("has space").is_err());
        assert!(WebhookKey::parse(&"k".repeat(101)).is_err());
        assert!(WebhookKey::parse("Mono").is_err());
        assert!(WebhookKey::parse("remita").is_err());
    }

    #[test]
    fn paths() {
        assert!(HookPath::parse("/hooks/nibss").is_ok());
        assert!(HookPath::parse("hooks").is_err());
        assert!(HookPath::parse("/api/bpm/cmd").is_err());
        assert!(HookPath::parse("/api/webhooks/remita").is_err());
        assert!(HookPath::parse("/metrics").is_err());
        assert!(HookPath::parse("/healthz/x").is_err());
        assert!(HookPath::parse("/hooks/../api").is_err());
        assert!(HookPath::parse("/hooks?x=1").is_err());
        assert!(HookPath::parse("/metricsfoo").is_ok());
    }

    #[test]
    fn allow_list_parses_addresses_and_ranges() {
        let list = IpAllowList::parse("10.0.0.0/8, 192.168.1.7,2001:db8::/32,::ffff:172.16.0.0/108");
        let list = list.unwrap_or_default();
        assert!(list.allows("10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(list.allows("::ffff:10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(list.allows("192.168.1.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(!list.allows("192.168.1.8".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(list.allows("2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(list.allows("172.16.9.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert_eq!(list.to_string(), "10.0.0.0/8,192.168.1.7,2001:db8::/32,172.16.0.0/12");
        assert_eq!(IpAllowList::parse("10.0.0.0/33,bogus").err().map(|e| e.len()), Some(2));
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(IdempotencyKey::parse("header:X-Event-Id"), Ok(IdempotencyKey::Header("x-event-id".into())));
        assert!(IdempotencyKey::parse("$.event_id").is_ok());
        assert!(IdempotencyKey::parse("$.[").is_err());
        assert!(IdempotencyKey::parse("header:bad header").is_err());
    }
}
