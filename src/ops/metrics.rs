//! Prometheus metrics with the `metrics` crate. The recorder is installed once
//! per process; the hot path holds pre-registered handles behind one `Arc`,
//! so recording is a few uncontended atomic additions and no registry lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "oauth_sidecar_requests_total";
const IN_FLIGHT: &str = "oauth_sidecar_requests_in_flight";
const UPSTREAM_LATENCY: &str = "oauth_sidecar_upstream_duration_seconds";
const UPSTREAM_ERRORS: &str = "oauth_sidecar_upstream_errors_total";

/// Upstream latency buckets in seconds: 0.5 ms to 60 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global recorder (once)
/// and returns its handle for rendering. `None` when the program installed
/// another recorder first: the sidecar's metrics then go to that one.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(UPSTREAM_LATENCY.into()), &LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "another metrics recorder is installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Requests answered, by status class (1xx..5xx).");
    metrics::describe_gauge!(IN_FLIGHT, "Requests being handled now.");
    metrics::describe_histogram!(
        UPSTREAM_LATENCY,
        metrics::Unit::Seconds,
        "Time from sending a request to the upstream to its response headers."
    );
    metrics::describe_counter!(UPSTREAM_ERRORS, "Upstream failures, by kind (connect, timeout, other).");
}

/// The proxy's metric handles, registered once; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Handles>);

pub(crate) struct Handles {
    /// `oauth_sidecar_requests_total{class}`, index 0 for 1xx .. 4 for 5xx.
    requests: [Counter; 5],
    /// Requests started and finished; their difference is the in-flight
    /// gauge, set when metrics are rendered (two counters cost less under
    /// contention than a floating-point gauge updated twice per request).
    started: AtomicU64,
    finished: AtomicU64,
    in_flight: Gauge,
    /// `oauth_sidecar_upstream_duration_seconds`.
    upstream_latency: Histogram,
    /// `oauth_sidecar_upstream_errors_total{kind}`.
    pub(crate) upstream_errors: UpstreamErrors,
}

/// Upstream failure counters by kind.
pub(crate) struct UpstreamErrors {
    pub(crate) connect: Counter,
    pub(crate) timeout: Counter,
    pub(crate) other: Counter,
}

impl Metrics {
    /// Installs the recorder if needed and registers the handles.
    pub fn register() -> Self {
        let _ = prometheus();
        let class = |c: &'static str| metrics::counter!(REQUESTS, "class" => c);
        let kind = |k: &'static str| metrics::counter!(UPSTREAM_ERRORS, "kind" => k);
        Metrics(Arc::new(Handles {
            requests: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            in_flight: metrics::gauge!(IN_FLIGHT),
            upstream_latency: metrics::histogram!(UPSTREAM_LATENCY),
            upstream_errors: UpstreamErrors {
                connect: kind("connect"),
                timeout: kind("timeout"),
                other: kind("other"),
            },
        }))
    }

    pub(crate) fn handles(&self) -> &Handles {
        &self.0
    }

    /// A request entered the stack.
    pub(crate) fn request_started(&self) {
        self.0.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A request left the stack (answered, failed or dropped).
    pub(crate) fn request_finished(&self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered request by its status class.
    pub(crate) fn count_status(&self, status: http::StatusCode) {
        let i = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.0.requests[i].increment(1);
    }

    /// Records the time to the upstream's response headers.
    pub(crate) fn upstream_latency(&self, d: Duration) {
        self.0.upstream_latency.record(d.as_secs_f64());
    }

    /// Sets the in-flight gauge from the counters; called before rendering.
    pub(crate) fn publish_in_flight(&self) {
        let finished = self.0.finished.load(Ordering::Relaxed);
        let started = self.0.started.load(Ordering::Relaxed);
        self.0.in_flight.set(started.saturating_sub(finished) as f64);
    }
}

/// Drains histogram samples into buckets every few seconds, so memory stays
/// flat between scrapes. Runs until aborted.
pub fn spawn_upkeep() -> Option<tokio::task::JoinHandle<()>> {
    let handle = prometheus()?.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    }))
}
