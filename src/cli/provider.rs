//! `provider`: the OAuth providers the client role knows.

use clap::Subcommand;

use super::Lines;
use super::context::ConfigArg;
use crate::client::{admin, provider};

#[derive(Subcommand)]
pub(super) enum ProviderCommand {
    /// Print the table name | title.
    List,
    /// Print a provider's options (scopes included) as JSON.
    Show { name: String },
}

/// Runs a `provider` command: on the presets and the file's
/// `client.providers`, or on the presets alone without a file.
pub(super) fn run(config: &ConfigArg, command: ProviderCommand) -> Lines {
    let (custom, issuer) = match &config.config {
        Some(_) => {
            let loaded = config.load()?;
            (
                loaded.config.client.as_ref().map(|c| c.providers.clone()).unwrap_or_default(),
                loaded.public_url.base(),
            )
        }
        None => (Vec::new(), "http://localhost:8080".to_owned()),
    };
    let all = provider::all(&custom, &issuer);
    match command {
        ProviderCommand::List => Ok(admin::provider_list(&all)),
        ProviderCommand::Show { name } => Ok(admin::provider_show(&all, &name)?),
    }
}
