//! Structured logs with `tracing`: text for people or JSON for collectors,
//! the level from the configuration unless `RUST_LOG` is set. Every line
//! written while a request is handled carries its request id (the
//! `request` span, see [`crate::ops::ObserveLayer`]).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the process-wide log subscriber. Returns an error when one is
/// already installed or the filter does not parse.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::builder().parse(&env).map_err(|e| format!("RUST_LOG: {e}"))?
        }
        _ => EnvFilter::builder().parse(&config.level.value).map_err(|e| format!("log.level: {e}"))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(colours());
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    result.map_err(|e| e.to_string())
}

/// Colours only for a person at a terminal: never in a file or a pipe, and
/// never with `NO_COLOR` set (<https://no-color.org>).
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
