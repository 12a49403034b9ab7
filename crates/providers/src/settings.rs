//! The `[providers]` settings, as `config/default.toml` documents them. The server reads them once
//! at start, [`check`](ProviderSettings::check)s them, and builds the [`Providers`](crate::Providers)
//! service from them.

use std::fmt;

use hookbus_configs::{IpAllowList, WebhookKey};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The most notifications one request may carry; more is a 413.
    pub max_items: usize,
    pub mono: MonoSettings,
    pub remita: RemitaSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonoSettings {
    /// What Mono sends in `mono-webhook-secret`. Empty: the route answers 503.
    pub secret: Secret,
    /// A router configuration that gets each accepted event too. Empty: none.
    pub forward_to_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemitaSettings {
    /// Who may call the Remita routes: comma-separated addresses and CIDR ranges. Empty: the
    /// routes answer 503 "route not configured", unless `allow_any_ip` is set.
    pub allowable_ips: String,
    /// Lets anyone call the Remita routes while `allowable_ips` is empty (Remita signs nothing,
    /// so anyone can then forge a notification; logged as a warning at start-up).
    pub allow_any_ip: bool,
    /// With `api_key`, turns on the status check of every payment notification. Empty: no check.
    pub merchant_id: String,
    pub api_key: Secret,
    /// Where the status API is; tests point it at a local fake.
    pub base_url: String,
    pub status_timeout_ms: u64,
    /// Router configurations that get accepted payment and collection notifications too.
    pub forward_to_key: String,
    pub collection_forward_to_key: String,
}

/// A `[providers]` setting that stops start-up, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct BadSetting {
    pub key: &'static str,
    pub problem: String,
}

impl BadSetting {
    pub(crate) fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self { key, problem: problem.into() }
    }
}

impl ProviderSettings {
    /// Rules serde cannot express.
    pub fn check(&self) -> Result<(), BadSetting> {
        if self.max_items == 0 {
            return Err(BadSetting::new("providers.max_items", "must be at least 1"));
        }
        let forwards = [
            ("providers.mono.forward_to_key", &self.mono.forward_to_key),
            ("providers.remita.forward_to_key", &self.remita.forward_to_key),
            ("providers.remita.collection_forward_to_key", &self.remita.collection_forward_to_key),
        ];
        for (name, key) in forwards {
            if !key.is_empty() {
                WebhookKey::parse(key).map_err(|problem| BadSetting::new(name, problem))?;
            }
        }
        let remita = &self.remita;
        let allow_list = IpAllowList::parse(&remita.allowable_ips)
            .map_err(|problems| BadSetting::new("providers.remita.allowable_ips", problems.join("; ")))?;
        if remita.allow_any_ip && !allow_list.is_empty() {
            return Err(BadSetting::new(
                "providers.remita.allow_any_ip",
                "must be false while providers.remita.allowable_ips lists callers",
            ));
        }
        if remita.merchant_id.is_empty() != remita.api_key.is_empty() {
            return Err(BadSetting::new(
                "providers.remita.merchant_id",
                "and providers.remita.api_key must be set together",
            ));
        }
        // It becomes a segment of the status API's URL.
        if !remita.merchant_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BadSetting::new("providers.remita.merchant_id", "may contain only letters and digits"));
        }
        let scheme_ok = remita.base_url.starts_with("https://") || remita.base_url.starts_with("http://");
        if !scheme_ok || reqwest::Url::parse(&remita.base_url).is_err() {
            return Err(BadSetting::new(
                "providers.remita.base_url",
                format!("'{}' is not an http(s) URL", remita.base_url),
            ));
        }
        if remita.status_timeout_ms == 0 {
            return Err(BadSetting::new("providers.remita.status_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}

/// A secret setting, never printed.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "<empty>" } else { "<redacted>" })
    }
}
