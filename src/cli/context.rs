//! What the commands share: the configuration file and the store it names,
//! opened one way and always closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::CliError;
use crate::client::Tokens;
use crate::config::Loaded;
use crate::config::server::ServerConfig;
use crate::store::Store;

/// The `--config` option of the commands that work on a configuration's store.
#[derive(Args)]
pub(crate) struct ConfigArg {
    /// The YAML configuration file (it names the store and the server settings).
    #[arg(long, short, global = true, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl ConfigArg {
    /// The loaded configuration; a usage error without a file.
    pub(crate) fn load(&self) -> Result<Loaded, CliError> {
        let Some(file) = &self.config else {
            return Err(CliError::Usage(
                "give the configuration with --config FILE or OAUTH_SIDECAR_CONFIG".into(),
            ));
        };
        load(file)
    }
}

/// Loads a configuration file, or gives every error found in it.
pub(crate) fn load(file: &Path) -> Result<Loaded, CliError> {
    crate::load_config(file).map_err(CliError::Config)
}

/// Opens the store `loaded` names (applying migrations), runs `run` on it
/// and closes it, whether `run` succeeded or not (closing SQLite
/// checkpoints its log).
pub(crate) async fn with_store<T>(
    loaded: &Loaded,
    run: impl AsyncFnOnce(Arc<dyn Store>) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let store = crate::store::open_for(loaded).await?;
    let out = run(store.clone()).await;
    store.close().await;
    out
}

/// The file's `server:` section; without one, a usage error when the
/// command needs it (consumers, keys), else the defaults (users such as
/// admins for `/oauth/start`, and admin tokens, need no authorization server).
pub(crate) fn server_section(loaded: &Loaded, required: bool) -> Result<ServerConfig, CliError> {
    match &loaded.config.server {
        Some(server) => Ok(server.clone()),
        None if !required => Ok(ServerConfig::default()),
        None => Err(CliError::Usage(
            "the configuration has no `server:` section, so no consumers, users or keys".into(),
        )),
    }
}

/// [`with_store`] with the OAuth client's token store too (its key checked
/// against the stored tokens first).
pub(crate) async fn with_tokens<T>(
    loaded: &Loaded,
    run: impl AsyncFnOnce(Arc<Tokens>, &dyn Store) -> Result<T, CliError>,
) -> Result<T, CliError> {
    with_store(loaded, async |store| {
        let tokens = crate::client::open_tokens(loaded, store.clone()).await?;
        run(tokens, store.as_ref()).await
    })
    .await
}
