//! Which request headers are secrets: their values are never stored or logged.

use std::collections::BTreeMap;

use hookbus_seal::{Sealer, Undecryptable};

/// The parts of header names that mark a secret by default: any header whose name contains one is
/// redacted (`authorization`, `mono-webhook-secret`, `x-api-key`, `verif-hash`, `x-signature`,
/// `cookie`, ...).
pub const DEFAULT_SECRET_HEADER_PARTS: [&str; 8] =
    ["secret", "signature", "token", "auth", "hash", "key", "cookie", "password"];

pub const REDACTED: &str = "[redacted]";

/// The rule that decides which headers are redacted before a request is stored anywhere
/// (`inbound.redact_headers`): a header is a secret when its name contains any of the parts, in any
/// case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRedaction {
    /// Lower-case, none empty.
    parts: Vec<String>,
}

impl HeaderRedaction {
    /// From the configured parts; an empty one would redact every header and is refused.
    pub fn new(parts: &[String]) -> Result<Self, String> {
        let parts: Vec<String> = parts.iter().map(|part| part.trim().to_ascii_lowercase()).collect();
        if parts.iter().any(String::is_empty) {
            return Err("an empty entry would redact every header".into());
        }
        Ok(Self { parts })
    }

    /// Whether the header `name` carries a secret.
    pub fn is_secret(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.parts.iter().any(|part| name.contains(part.as_str()))
    }

    /// Replaces the values of secret headers.
    pub fn redact(&self, headers: &mut BTreeMap<String, String>) {
        for (name, value) in headers.iter_mut() {
            if self.is_secret(name) {
                *value = REDACTED.to_owned();
            }
        }
    }

    /// The secret headers of `headers` as they are, sealed; `None` when there are none.
    pub fn seal(&self, headers: &BTreeMap<String, String>, sealer: &Sealer) -> Option<String> {
        let secret: BTreeMap<&str, &str> =
            headers.iter().filter(|(name, _)| self.is_secret(name)).map(|(n, v)| (n.as_str(), v.as_str())).collect();
        if secret.is_empty() {
            return None;
        }
        // A map of strings always serializes.
        let clear = serde_json::to_vec(&secret).unwrap_or_default();
        Some(sealer.seal(&clear))
    }

    /// Puts back into `headers` what [`seal`](Self::seal) sealed.
    pub fn unseal(headers: &mut BTreeMap<String, String>, sealed: &str, sealer: &Sealer) -> Result<(), Undecryptable> {
        let clear = sealer.open(sealed)?;
        let secret: BTreeMap<String, String> = serde_json::from_slice(&clear).map_err(|_| Undecryptable)?;
        headers.extend(secret);
        Ok(())
    }
}

impl Default for HeaderRedaction {
    fn default() -> Self {
        Self { parts: DEFAULT_SECRET_HEADER_PARTS.iter().map(|part| (*part).to_owned()).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_redacts_every_name_with_a_secret_part() {
        let rule = HeaderRedaction::default();
        for secret in ["Authorization", "mono-webhook-secret", "verif-hash", "x-webhook-secret", "X-Api-Key", "cookie"]
        {
            assert!(rule.is_secret(secret), "{secret}");
        }
        for plain in ["content-type", "user-agent", "x-request-id", "accept"] {
            assert!(!rule.is_secret(plain), "{plain}");
        }
    }

    #[test]
    fn an_empty_part_is_refused() {
        assert!(HeaderRedaction::new(&["secret".into(), " ".into()]).is_err());
        let custom = HeaderRedaction::new(&["X-Partner-Sig".into()]).expect("valid");
        assert!(custom.is_secret("x-partner-sig") && !custom.is_secret("authorization"));
    }
}
