//! `check-config`: what a configuration file would run, or every error in it.

use std::path::Path;

use super::{Lines, context};

/// `FILE: ok` and the summary, or every error with its line and column.
pub(super) fn run(file: &Path) -> Lines {
    let loaded = context::load(file)?;
    Ok(vec![format!("{}: ok\n{}", file.display(), loaded.summary())])
}
