//! `serve`: the sidecar, until SIGTERM or SIGINT.

use std::path::Path;

use super::{CliError, Lines, context};

/// Loads the file, sets up logging and runs the [`crate::Sidecar`] it describes.
pub(super) async fn run(file: &Path) -> Lines {
    let loaded = context::load(file)?;
    let traces = crate::telemetry::init(&loaded.config.log, &loaded.config.telemetry)
        .map_err(|e| CliError::Usage(format!("cannot set up logging: {e}")))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    // Installed first, so SIGTERM during start-up still shuts down cleanly.
    let shutdown = crate::shutdown_signal();
    // The exporter is stopped on every path: dropped inside the runtime, it would wait on itself.
    match crate::Sidecar::build(loaded).await {
        Ok(sidecar) => sidecar.run(shutdown).await,
        Err(e) => {
            traces.shutdown().await;
            return Err(e.into());
        }
    }
    traces.shutdown().await;
    Ok(Vec::new())
}
