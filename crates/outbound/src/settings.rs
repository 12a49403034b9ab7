//! `[outbound]` settings: the SSRF guard, the delivery workers, retry defaults and limits.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Reserved ranges outbound requests may reach anyway: a list, or a comma-separated string.
    #[serde(deserialize_with = "comma_list")]
    pub allow_cidrs: Vec<IpNet>,
    pub allow_http: bool,
    /// Base64 of 32 bytes; encrypts signing secrets at rest. Empty: the key in
    /// `encryption_key_file`, created on first start.
    pub encryption_key: String,
    pub encryption_key_file: String,
    /// Deliveries in flight at once, per instance.
    pub concurrency: usize,
    /// A subscription's attempts in flight at once, unless it sets `maxConcurrency`.
    pub per_subscription_concurrency: usize,
    /// Consecutive timeouts or connection failures that make an endpoint unhealthy.
    pub breaker_failures: u32,
    /// The first wait before probing an unhealthy endpoint, in seconds; doubled after each failed
    /// probe up to `breaker_max_cooldown_secs`.
    pub breaker_cooldown_secs: u64,
    pub breaker_max_cooldown_secs: u64,
    /// Notifications held in memory waiting for a worker, per instance.
    pub queue_capacity: usize,
    pub poll_ms: u64,
    pub lease_secs: u64,
    pub timeout_ms: u64,
    pub default_max_attempts: i32,
    pub default_retry_interval_secs: i32,
    pub max_retry_interval_secs: u64,
    pub max_retry_after_secs: u64,
    /// How long one "second" of retry intervals and `Retry-After` lasts, in milliseconds. 1000 in
    /// production; tests shorten it.
    pub retry_second_ms: u64,
    pub suspend_after_expired: i32,
    pub rotation_overlap_hours: u64,
    pub response_excerpt_bytes: usize,
    /// Delivered, expired and cancelled notifications older than this are deleted with their
    /// events and attempts.
    pub retention_days: u64,
    /// How often that deletion runs, in seconds.
    pub retention_sweep_secs: u64,
}

impl std::fmt::Debug for OutboundSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The encryption key is a secret: never print it.
        f.debug_struct("OutboundSettings")
            .field("allow_cidrs", &self.allow_cidrs)
            .field("allow_http", &self.allow_http)
            .field("encryption_key", &"<redacted>")
            .field("concurrency", &self.concurrency)
            .field("poll_ms", &self.poll_ms)
            .finish_non_exhaustive()
    }
}

impl OutboundSettings {
    /// The encryption key: the configured one, else the key file's, creating the file (readable
    /// by its owner only) with a random key on first start.
    pub fn resolve_key(&mut self) -> std::io::Result<()> {
        if !self.encryption_key.trim().is_empty() {
            return Ok(());
        }
        let path = std::path::Path::new(&self.encryption_key_file);
        match std::fs::read_to_string(path) {
            Ok(key) => self.encryption_key = key.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use base64::Engine as _;
                use rand::RngCore as _;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                std::io::Write::write_all(&mut options.open(path)?, encoded.as_bytes())?;
                tracing::warn!(file = %path.display(), "created a new outbound encryption key; back it up, and give every instance the same key");
                self.encryption_key = encoded;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `seconds` of retry time, scaled by `retry_second_ms`.
    pub fn retry_seconds(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds.max(0.0) * self.retry_second_ms as f64) / 1000.0)
    }
}

/// Accepts `["10.0.0.0/8", ...]` or `"10.0.0.0/8,127.0.0.0/8"` (the env form).
fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    let items = match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| hookbus_core::net::parse_ip_range(item).map_err(serde::de::Error::custom))
        .collect()
}
