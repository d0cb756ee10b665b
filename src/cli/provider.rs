//! `provider`: the OAuth providers the client role knows.

use clap::Subcommand;

use serde_json::Value;

use super::Lines;
use super::context::ConfigArg;
use super::table::{Cell, Format, Table, record};
use crate::client::{admin, provider};

#[derive(Subcommand)]
pub(super) enum ProviderCommand {
    /// List providers: name and title, presets first.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Show a provider's options, scopes included.
    Show {
        /// The provider's name, as `provider list` shows it.
        name: String,
        #[command(flatten)]
        format: Format,
    },
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
        ProviderCommand::List { format } => {
            let mut table = Table::new(&["name", "title"]);
            for p in &all {
                table.push(vec![Cell::text(&p.name), Cell::text(&p.title)]);
            }
            table.print(format)
        }
        ProviderCommand::Show { name, format } => {
            let provider = admin::provider_show(&all, &name)?;
            if format.json {
                return Ok(vec![serde_json::to_string_pretty(&provider.options_json()).unwrap_or_default()]);
            }
            let mut fields = vec![
                ("name".to_owned(), Cell::text(&provider.name)),
                ("title".to_owned(), Cell::text(&provider.title)),
            ];
            if let Ok(Value::Object(options)) = serde_json::to_value(provider) {
                fields.extend(options.into_iter().map(|(k, v)| (k, Cell::from_json(v))));
            }
            record(fields, format)
        }
    }
}
