//! Delivery figures for `/metrics`: deliveries by outcome, the queue depth, the time from
//! publishing to a successful delivery, unhealthy endpoints and notifications held back. Nothing
//! is labelled by subscription: that label would have no bound.

use std::sync::atomic::AtomicI64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    deliveries: Family<OutcomeLabels, Counter>,
    queue_depth: Gauge<i64, AtomicI64>,
    latency: Histogram,
    published: Counter,
    unhealthy: Gauge<i64, AtomicI64>,
    held: Family<ReasonLabels, Counter>,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            deliveries: Family::default(),
            queue_depth: Gauge::default(),
            // 1 ms to about 65 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            published: Counter::default(),
            unhealthy: Gauge::default(),
            held: Family::default(),
        }
    }
}

impl DeliveryMetrics {
    /// Adds these figures to an application's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "deliveries",
            "Delivery attempts by outcome (delivered, failed, expired, diverted, cancelled)",
            self.deliveries.clone(),
        );
        registry.register(
            "delivery_queue_depth",
            "Notifications waiting to be sent (pending or waiting for a retry)",
            self.queue_depth.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from publishing an event to its successful delivery",
            self.latency.clone(),
        );
        registry.register("events_published", "Events published", self.published.clone());
        registry.register(
            "subscriptions_unhealthy",
            "Subscriptions whose endpoint is unhealthy (its circuit breaker open), in the database",
            self.unhealthy.clone(),
        );
        registry.register(
            "deliveries_held",
            "Notifications held back: unhealthy (taken back when the endpoint became unhealthy), \
             rate_limit (waited for the subscription's rate), ordering (behind a failed notification \
             of a FIFO subscription)",
            self.held.clone(),
        );
    }

    pub(crate) fn unhealthy(&self, count: u64) {
        self.unhealthy.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn held(&self, reason: &'static str, count: u64) {
        self.held.get_or_create(&ReasonLabels { reason }).inc_by(count);
    }

    pub(crate) fn outcome(&self, outcome: &'static str) {
        self.deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub(crate) fn delivered_after(&self, seconds: f64) {
        self.latency.observe(seconds.max(0.0));
    }

    pub(crate) fn queue_depth(&self, depth: u64) {
        self.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub(crate) fn published(&self) {
        self.published.inc();
    }
}
