//! Prometheus metrics, served at `/metrics`. One registry per application, so that instances in
//! one process (as in tests) do not mix their figures.

use std::{borrow::Cow, time::Duration};

use actix_web::http::Method;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route pattern, never the raw path, so that the label set stays small.
    route: Cow<'static, str>,
    /// A standard method's name, else `_OTHER` (see [`method_label`]).
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    execution_type: i16,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    commands: HistogramFamily<CommandLabels>,
    /// `router_executions`' counters, by execution type code and then error/ok: taken from the
    /// family once, so that a routed request does not hash its labels to find its counter.
    executions: [[Counter; 2]; 4],
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    /// The server's figures, plus the delivery engine's and the group commits'.
    pub fn new(delivery: &hookbus_outbound::DeliveryMetrics, groups: &hookbus_store::GroupCommitMetrics) -> Self {
        let mut registry = Registry::with_prefix("hookbus");
        delivery.register(&mut registry);
        groups.register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        let commands: HistogramFamily<CommandLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("command_duration_seconds", "Command latency by $type and outcome", commands.clone());
        let family = Family::<ExecutionLabels, Counter>::default();
        registry.register("router_executions", "Router executions by execution type and outcome", family.clone());
        let executions = std::array::from_fn(|code| {
            let counter = |outcome| {
                let execution_type = i16::try_from(code).unwrap_or_default();
                family.get_or_create(&ExecutionLabels { execution_type, outcome }).clone()
            };
            [counter("error"), counter("ok")]
        });
        Self { registry, requests, commands, executions }
    }

    /// Counts a finished request under its route pattern (borrowed when it is a literal, so that
    /// finding the counter of a request allocates nothing).
    pub fn record_request(&self, route: Cow<'static, str>, method: &Method, status: u16) {
        let labels = RequestLabels { route, method: method_label(method), status };
        self.requests.get_or_create(&labels).inc();
    }

    pub fn record_command(&self, command: &str, ok: bool, elapsed: Duration) {
        let labels = CommandLabels { command: command.to_owned(), outcome: if ok { "ok" } else { "error" } };
        self.commands.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a routed request's execution; `execution_type` is a configuration's code (0-3).
    pub fn record_execution(&self, execution_type: i16, ok: bool) {
        if let Some(counters) = usize::try_from(execution_type).ok().and_then(|code| self.executions.get(code)) {
            counters[usize::from(ok)].inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// A request method as a label: the standard methods by name; any other (HTTP allows any token,
/// so a caller could otherwise add a time series per made-up method) as `_OTHER`, the name
/// OpenTelemetry's HTTP conventions give it.
fn method_label(method: &Method) -> &'static str {
    static STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD.iter().find(|(standard, _)| standard == method).map_or("_OTHER", |(_, name)| name)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&hookbus_outbound::DeliveryMetrics::default(), &hookbus_store::GroupCommitMetrics::default())
    }
}
