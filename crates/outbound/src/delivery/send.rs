//! One HTTP attempt: the signed request, the classification of its answer, and the next state.

use std::{sync::Arc, time::Instant};

use chrono::Duration as Span;
use hookbus_core::Timestamp;
use reqwest::{
    Client, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT},
    redirect,
};

use super::{Job, Outcome, record::Attempt, retry};
use crate::{
    NotificationStatus, Outbound, OutboundSettings,
    guard::{AddressPolicy, GuardedResolver},
    sign,
};

/// The HTTP clients: one that verifies TLS certificates and one for `secureSsl: false`. Both
/// resolve through the SSRF guard and never follow redirects.
#[derive(Debug, Clone)]
pub struct Sender {
    verified: Client,
    unverified: Client,
}

impl Sender {
    pub fn new(settings: &OutboundSettings, policy: Arc<AddressPolicy>) -> Self {
        let build = |verify: bool| {
            Client::builder()
                .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
                .redirect(redirect::Policy::none())
                .no_proxy()
                .timeout(settings.timeout())
                .pool_max_idle_per_host(64)
                .tls_danger_accept_invalid_certs(!verify)
                .build()
                // Building fails only when the TLS backend cannot start: a broken installation.
                .unwrap_or_else(|e| panic!("cannot build the outbound HTTP client: {e}"))
        };
        Self { verified: build(true), unverified: build(false) }
    }

    /// Sends `job` once (unless its subscription no longer takes deliveries) and says what
    /// happens next; counts it in the metrics by outcome.
    pub(crate) async fn deliver(&self, job: &Job, outbound: &Outbound) -> Outcome {
        let outcome = self.deliver_once(job, outbound).await;
        outbound.metrics.outcome(if outcome.suspend { "gone" } else { outcome.status.label() });
        outcome
    }

    async fn deliver_once(&self, job: &Job, outbound: &Outbound) -> Outcome {
        let target = &job.target;
        let mut outcome = Outcome::new(job);
        if !target.active {
            return outcome.finish(NotificationStatus::Cancelled, Some("the subscription is inactive".to_owned()));
        }
        if target.suspended {
            return outcome.finish(NotificationStatus::Diverted, Some("the subscription is suspended".to_owned()));
        }
        let started_at = hookbus_core::now();
        let started = Instant::now();
        let answer = self.attempt(job, outbound, started_at).await;
        let attempts = job.attempts + 1;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let mut attempt =
            Attempt { attempted_at: started_at, duration_ms, http_status: None, error: None, excerpt: None };
        outcome.attempts = attempts;
        match answer {
            Ok(Answer { code, excerpt, retry_after }) => {
                attempt.http_status = Some(i32::from(code.as_u16()));
                attempt.excerpt = excerpt;
                if code.is_success() {
                    let delivered_at = hookbus_core::now();
                    outbound.metrics.delivered_after((delivered_at - job.event.occurred_at).as_seconds_f64());
                    outcome.delivered_at = Some(delivered_at);
                    return outcome.with_attempt(attempt).finish(NotificationStatus::Delivered, None);
                }
                attempt.error = Some(format!("the endpoint answered {code}"));
                if code == StatusCode::GONE {
                    // The receiver says the endpoint is gone for good: stop sending until unsuspended.
                    outcome.suspend = true;
                    let why = attempt.error.clone();
                    return outcome.with_attempt(attempt).finish(NotificationStatus::Diverted, why);
                }
                let honoured = matches!(code, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                    .then_some(retry_after)
                    .flatten();
                self.failed(job, outbound, outcome.with_attempt(attempt), attempts, honoured)
            }
            Err(failure) => {
                outcome.unreachable = failure.unreachable;
                attempt.error = Some(failure.message);
                self.failed(job, outbound, outcome.with_attempt(attempt), attempts, None)
            }
        }
    }

    /// Sends `job` once and reports what happened, without recording anything (ping).
    pub(crate) async fn probe(&self, job: &Job, outbound: &Outbound) -> Probe {
        let started = Instant::now();
        let answer = self.attempt(job, outbound, hookbus_core::now()).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match answer {
            Ok(Answer { code, excerpt, .. }) => {
                Probe { status: Some(code.as_u16()), duration_ms, error: None, excerpt }
            }
            Err(failure) => Probe { status: None, duration_ms, error: Some(failure.message), excerpt: None },
        }
    }

    /// A failed attempt: retried later, or expired when the attempts are spent.
    fn failed(
        &self,
        job: &Job,
        outbound: &Outbound,
        mut outcome: Outcome,
        attempts: i32,
        retry_after: Option<u64>,
    ) -> Outcome {
        let error = outcome.attempt.as_ref().and_then(|a| a.error.clone());
        if attempts >= job.target.max_attempts {
            return outcome.finish(NotificationStatus::Expired, error);
        }
        let wait = retry::delay(
            &outbound.settings,
            job.target.policy,
            job.target.retry_interval_seconds,
            attempts,
            retry_after,
        );
        outcome.next_attempt_at = Some(hookbus_core::now() + Span::from_std(wait).unwrap_or(Span::hours(1)));
        outcome.finish(NotificationStatus::Failed, error)
    }

    async fn attempt(&self, job: &Job, outbound: &Outbound, now: Timestamp) -> Result<Answer, Failure> {
        let target = &job.target;
        let url = outbound
            .policy
            .parse_url(&target.url)
            .map_err(|blocked| Failure { message: blocked.to_string(), unreachable: false })?;
        let client = if target.secure_ssl { &self.verified } else { &self.unverified };
        let mut headers = HeaderMap::new();
        for (name, values) in &target.headers {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { continue };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(name.clone(), value);
                }
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("hookbus/", env!("CARGO_PKG_VERSION"))));
        if target.hmac_enabled {
            let id = job.notification_id.to_string();
            let timestamp = now.timestamp();
            let signature = sign::header(&target.secrets, &id, timestamp, &job.event.body);
            for (name, value) in
                [("webhook-id", id), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)]
            {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        let response = client.post(url).headers(headers).body(job.event.body.clone()).send().await.map_err(|e| {
            Failure { message: describe(&e), unreachable: (e.is_timeout() || e.is_connect()) && !blocked(&e) }
        })?;
        let code = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, now));
        let excerpt = excerpt(response, outbound.settings.response_excerpt_bytes).await;
        Ok(Answer { code, excerpt, retry_after })
    }
}

/// What a ping saw.
#[derive(Debug)]
pub(crate) struct Probe {
    pub status: Option<u16>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub excerpt: Option<String>,
}

struct Answer {
    code: StatusCode,
    excerpt: Option<String>,
    retry_after: Option<u64>,
}

/// An attempt that got no answer.
struct Failure {
    message: String,
    /// It timed out or could not connect: what the circuit breaker counts. A URI the SSRF guard
    /// refuses is not the endpoint's fault and is not counted.
    unreachable: bool,
}

/// Whether the SSRF guard refused the address (a cause of the connect error).
fn blocked(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<crate::guard::Blocked>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The first `limit` bytes of the answer's body; the rest is not read.
async fn excerpt(mut response: reqwest::Response, limit: usize) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk[..chunk.len().min(limit - bytes.len())]),
            _ => break,
        }
    }
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// A transport error with its causes (the SSRF guard's reason is a cause of a connect error).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", hookbus_core::error_chain(error))
}
