//! `check-config`: what a configuration file would run, or every error in it.

use std::path::PathBuf;

use super::error::CliError;
use super::{Lines, context};

/// `FILE: ok` and the summary, or every error with its line and column.
pub(super) fn run(file: Option<PathBuf>) -> Lines {
    let Some(file) = file else {
        return Err(CliError::Usage(
            "give the configuration file: check-config FILE, --config FILE or OAUTH_SIDECAR_CONFIG".into(),
        ));
    };
    let file = file.as_path();
    let loaded = context::load(file)?;
    Ok(vec![format!("{}: ok\n{}", file.display(), loaded.summary())])
}
