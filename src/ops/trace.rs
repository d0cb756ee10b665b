//! OpenTelemetry traces (`telemetry.otlp`): the `tracing` spans of the
//! stack, bridged by `tracing-opentelemetry` and exported over OTLP
//! (HTTP/protobuf or gRPC) in batches from a Tokio task.
//!
//! The request span ([`super::ObserveLayer`]) continues a caller's W3C
//! `traceparent`; the upstream call, token grants, provider calls and
//! egress calls are its children, and the upstream and egress targets get a
//! `traceparent` naming the child span. Spans carry methods, paths (never
//! query strings), statuses, rule labels, grant types and client ids: no
//! token, secret or code.
//!
//! Off unless [`Traces::start`] installed an exporter: then the extra spans
//! are not even created ([`enabled`] is one atomic load).

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use tracing::Span;

use crate::config::telemetry::TelemetryConfig;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True once spans are exported: the stack then creates its trace spans
/// and propagates `traceparent`.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns the trace spans on for a program that installs its own
/// `tracing-opentelemetry` layer instead of [`Traces::start`].
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// A span made by `make` when traces are on, [`Span::none`] otherwise.
pub fn span_if_enabled(make: impl FnOnce() -> Span) -> Span {
    if enabled() { make() } else { Span::none() }
}

/// Notes an HTTP status on `span` (a request's or a call's); a 5xx marks
/// the span as failed.
pub fn record_status(span: &Span, status: http::StatusCode) {
    if enabled() {
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Notes the gate's decision on the request span: the rule's label,
/// `allow` or `refuse`, and a refusal's reason (never the token).
pub fn record_gate(rule: &str, refusal: Option<&dyn std::fmt::Display>) {
    if enabled() {
        let span = Span::current();
        span.record("gate.rule", rule);
        span.record("gate.decision", if refusal.is_some() { "refuse" } else { "allow" });
        if let Some(reason) = refusal {
            span.record("gate.reason", tracing::field::display(reason));
        }
    }
}

/// Makes `span` continue the trace a caller named in `traceparent`.
pub fn continue_from(span: &Span, headers: &HeaderMap) {
    #[cfg(feature = "otlp")]
    if enabled() {
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let parent = propagator.extract(&opentelemetry_http::HeaderExtractor(headers));
        use opentelemetry::trace::TraceContextExt;
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (span, headers);
}

/// Writes `traceparent` (and `tracestate`) naming `span` into `headers`,
/// replacing the caller's.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    #[cfg(feature = "otlp")]
    if enabled() {
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        propagator.inject_context(&span.context(), &mut opentelemetry_http::HeaderInjector(headers));
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (span, headers);
}

/// The trace exporter of the process, when `telemetry.otlp` is set:
/// [`Traces::layer`] goes into the log subscriber, [`Traces::shutdown`]
/// sends what is still buffered before exit.
#[derive(Default)]
pub struct Traces {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Traces {
    /// Builds the exporter `config` asks for (none without `otlp`) and turns
    /// the trace spans on. Call it inside the Tokio runtime: the batches
    /// are sent from a Tokio task.
    pub fn start(config: &TelemetryConfig) -> Result<Traces, String> {
        let Some(otlp) = &config.otlp else { return Ok(Traces::default()) };
        #[cfg(feature = "otlp")]
        {
            let provider = otlp::provider(otlp)?;
            enable();
            Ok(Traces { provider: Some(provider) })
        }
        #[cfg(not(feature = "otlp"))]
        {
            let _ = otlp;
            Err("telemetry.otlp: this build has no OpenTelemetry support (crate feature `otlp`)".to_owned())
        }
    }

    /// The `tracing` layer that turns this crate's spans into OpenTelemetry
    /// spans, or `None` when nothing is exported.
    pub fn layer<S>(&self) -> Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        #[cfg(feature = "otlp")]
        {
            self.provider.as_ref().map(otlp::layer)
        }
        #[cfg(not(feature = "otlp"))]
        None
    }

    /// Exports the spans still buffered and stops the exporter, waiting
    /// at most 5 s for the collector (exit is not held up longer).
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            // Blocks until the batch task has sent the last batch.
            let done = tokio::task::spawn_blocking(move || provider.shutdown());
            match tokio::time::timeout(std::time::Duration::from_secs(5), done).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the last spans could not be exported"),
                Ok(Err(_)) | Err(_) => tracing::warn!("the last spans were not exported within 5s"),
            }
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::runtime::Tokio;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;

    use crate::config::telemetry::{OtlpConfig, OtlpProtocol};

    /// The tracer provider: OTLP exporter, batches every `export_interval`
    /// (the other `OTEL_BSP_*` variables tune them), parent-based ratio
    /// sampling.
    pub(super) fn provider(config: &OtlpConfig) -> Result<SdkTracerProvider, String> {
        let endpoint = config.endpoint.value.0.to_string();
        let exporter = match config.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(http_client()?)
                .with_endpoint(http_endpoint(&endpoint))
                .build(),
            OtlpProtocol::Grpc => {
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()
            }
        }
        .map_err(|e| format!("telemetry.otlp: {e}"))?;
        let batches = BatchSpanProcessor::builder(exporter, Tokio)
            .with_batch_config(
                BatchConfigBuilder::default().with_scheduled_delay(config.export_interval.0).build(),
            )
            .build();
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio.0)));
        Ok(SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(sampler)
            .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
            .build())
    }

    /// The bridge layer: this crate's spans at info and above, and the
    /// events inside them.
    pub(super) fn layer<S>(provider: &SdkTracerProvider) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        let tracer = provider.tracer("oauth-sidecar");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target("oauth_sidecar", tracing::Level::INFO))
            .boxed()
    }

    /// A collector origin gets the standard traces path; a URL with a path
    /// is used as written.
    fn http_endpoint(endpoint: &str) -> String {
        match endpoint.strip_suffix('/') {
            Some(origin)
                if !origin.trim_start_matches("http://").trim_start_matches("https://").contains('/') =>
            {
                format!("{origin}/v1/traces")
            }
            _ => endpoint.to_owned(),
        }
    }

    /// HTTPS to the collector with rustls (ring) and the platform's trust store.
    fn http_client() -> Result<reqwest::Client, String> {
        crate::outbound::client_builder()?
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("telemetry.otlp: cannot build the HTTP client: {e}"))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn collector_origin_gets_the_traces_path() {
            assert_eq!(super::http_endpoint("http://c:4318/"), "http://c:4318/v1/traces");
            assert_eq!(super::http_endpoint("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
            assert_eq!(super::http_endpoint("https://c/otlp/traces"), "https://c/otlp/traces");
        }
    }
}
