//! Structured logs with `tracing`: text for people or JSON for collectors,
//! the level from the configuration unless `RUST_LOG` is set. Every line
//! written while a request is handled carries its request id (the
//! `request` span, see [`crate::ops::ObserveLayer`]).

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Replaces the installed subscriber's filter (the subscriber's type differs
/// between text and JSON, so its reload handle is kept behind a closure).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Set by [`init`] when the level comes from the file, so that
/// [`set_level`] can change it while running.
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Installs the process-wide log subscriber. Returns an error when one is
/// already installed or the filter does not parse.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let (filter, from_file) = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            (EnvFilter::builder().parse(&env).map_err(|e| format!("RUST_LOG: {e}"))?, false)
        }
        _ => (EnvFilter::builder().parse(&config.level.value).map_err(|e| format!("log.level: {e}"))?, true),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(colours());
    let set: SetFilter;
    let result = match config.format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            set = Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()));
            builder.try_init()
        }
        LogFormat::Json => {
            let builder =
                builder.json().with_current_span(true).with_span_list(false).with_filter_reloading();
            let handle = builder.reload_handle();
            set = Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()));
            builder.try_init()
        }
    };
    result.map_err(|e| e.to_string())?;
    if from_file {
        let _ = SET_FILTER.set(set);
    }
    Ok(())
}

/// Changes the log level to `level` (a `log.level` filter) while running.
/// Nothing changes when `RUST_LOG` set the level, which wins over the file,
/// or when [`init`] did not install the subscriber.
pub fn set_level(level: &str) -> Result<(), String> {
    let Some(set) = SET_FILTER.get() else { return Ok(()) };
    let filter = EnvFilter::builder().parse(level).map_err(|e| format!("log.level: {e}"))?;
    set(filter)
}

/// Colours only for a person at a terminal: never in a file or a pipe, and
/// never with `NO_COLOR` set (<https://no-color.org>).
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
