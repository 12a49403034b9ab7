//! When to try again: `linear` waits the interval each time; `exponential` doubles it
//! after each attempt up to a cap, with jitter; a `Retry-After` on 429 or 503 is honoured within
//! a cap.

use std::time::Duration;

use rand::Rng;

use crate::{OutboundSettings, subscription::DeliveryPolicy};

/// The wait before the next attempt, after `attempts` attempts (1 after the first).
pub(crate) fn delay(
    settings: &OutboundSettings,
    policy: DeliveryPolicy,
    interval_seconds: i32,
    attempts: i32,
    retry_after_seconds: Option<u64>,
) -> Duration {
    if let Some(seconds) = retry_after_seconds {
        return settings.retry_seconds(seconds.min(settings.max_retry_after_secs) as f64);
    }
    let interval = f64::from(interval_seconds.max(1));
    let seconds = match policy {
        DeliveryPolicy::Linear => interval,
        DeliveryPolicy::Exponential => {
            let doubled = interval * 2f64.powi((attempts - 1).clamp(0, 30));
            let capped = doubled.min(settings.max_retry_interval_secs as f64).max(interval);
            // Equal jitter: half fixed, half random, so retries of many notifications spread out.
            capped / 2.0 + rand::rng().random_range(0.0..=capped / 2.0)
        }
    };
    settings.retry_seconds(seconds)
}

/// Reads `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(u64::try_from((at.with_timezone(&chrono::Utc) - now).num_seconds()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutboundSettings {
        OutboundSettings {
            allow_cidrs: vec![],
            allow_http: false,
            encryption_key: String::new(),
            encryption_key_file: String::new(),
            concurrency: 1,
            per_subscription_concurrency: 1,
            breaker_failures: 5,
            breaker_cooldown_secs: 5,
            breaker_max_cooldown_secs: 300,
            queue_capacity: 1,
            poll_ms: 1,
            lease_secs: 1,
            timeout_ms: 1,
            default_max_attempts: 5,
            default_retry_interval_secs: 60,
            max_retry_interval_secs: 600,
            max_retry_after_secs: 120,
            retry_second_ms: 1000,
            suspend_after_expired: 5,
            rotation_overlap_hours: 24,
            response_excerpt_bytes: 4096,
            retention_days: 30,
            retention_sweep_secs: 600,
        }
    }

    #[test]
    fn linear_waits_the_interval_each_time() {
        for attempts in 1..5 {
            assert_eq!(delay(&settings(), DeliveryPolicy::Linear, 30, attempts, None), Duration::from_secs(30));
        }
    }

    #[test]
    fn exponential_doubles_with_jitter_up_to_the_cap() {
        for (attempts, full) in [(1, 10.0), (2, 20.0), (3, 40.0), (10, 600.0)] {
            let waited = delay(&settings(), DeliveryPolicy::Exponential, 10, attempts, None).as_secs_f64();
            assert!(
                waited >= full / 2.0 && waited <= full,
                "attempt {attempts}: {waited}s not in [{}, {full}]",
                full / 2.0
            );
        }
    }

    #[test]
    fn retry_after_wins_within_its_cap() {
        assert_eq!(delay(&settings(), DeliveryPolicy::Linear, 30, 1, Some(7)), Duration::from_secs(7));
        assert_eq!(delay(&settings(), DeliveryPolicy::Linear, 30, 1, Some(7200)), Duration::from_secs(120));
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").expect("date").to_utc();
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 10:01:00 GMT", now), Some(60));
        assert_eq!(parse_retry_after("15", now), Some(15));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_time_scale_shortens_every_wait() {
        let fast = OutboundSettings { retry_second_ms: 1, ..settings() };
        assert_eq!(delay(&fast, DeliveryPolicy::Linear, 30, 1, None), Duration::from_millis(30));
    }
}
