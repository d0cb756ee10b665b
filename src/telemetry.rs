//! Structured logs with `tracing`: text for people or JSON for collectors,
//! the level from the configuration unless `RUST_LOG` is set. Every line
//! written while a request is handled carries its request id (the
//! `request` span, see [`crate::ops::ObserveLayer`]). With `telemetry.otlp`
//! the spans are exported as OpenTelemetry traces too ([`crate::ops::trace`]).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, registry, reload};

use crate::config::telemetry::TelemetryConfig;
use crate::config::{LogConfig, LogFormat};
use crate::ops::trace::Traces;

/// Replaces the installed subscriber's filter (kept behind a closure, so
/// that the subscriber's type does not leak into this module's statics).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Set by [`init`] when the level comes from the file, so that
/// [`set_level`] can change it while running.
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Installs the process-wide log subscriber and, with `telemetry.otlp`, the
/// trace exporter beside it (the log level does not limit the spans
/// exported). Returns an error when a subscriber is already installed, the
/// filter does not parse or the exporter cannot be built. Call it inside
/// the Tokio runtime; keep the returned [`Traces`] to flush at exit.
pub fn init(config: &LogConfig, telemetry: &TelemetryConfig) -> Result<Traces, String> {
    let (filter, from_file) = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            (EnvFilter::builder().parse(&env).map_err(|e| format!("RUST_LOG: {e}"))?, false)
        }
        _ => (EnvFilter::builder().parse(&config.level.value).map_err(|e| format!("log.level: {e}"))?, true),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let traces = Traces::start(telemetry)?;
    let result = match traces.layer() {
        // Without traces the filter is global, as it always was.
        None => registry().with(filter).with(log_lines(config.format)).try_init(),
        Some(spans) => registry().with(log_lines(config.format).with_filter(filter)).with(spans).try_init(),
    };
    result.map_err(|e| e.to_string())?;
    if from_file {
        let _ = SET_FILTER.set(Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())));
    }
    Ok(traces)
}

/// Changes the log level to `level` (a `log.level` filter) while running.
/// Nothing changes when `RUST_LOG` set the level, which wins over the file,
/// or when [`init`] did not install the subscriber.
pub fn set_level(level: &str) -> Result<(), String> {
    let Some(set) = SET_FILTER.get() else { return Ok(()) };
    let filter = EnvFilter::builder().parse(level).map_err(|e| format!("log.level: {e}"))?;
    set(filter)
}

/// The log line writer: text or JSON.
fn log_lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_ansi(colours());
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().with_current_span(true).with_span_list(false).boxed(),
    }
}

/// Colours only for a person at a terminal: never in a file or a pipe, and
/// never with `NO_COLOR` set (<https://no-color.org>).
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
