//! `client`: OAuth client registrations at providers.

use std::path::PathBuf;

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, with_tokens};
use super::table::{Cell, Format, Table};
use crate::client::{ClientError, admin};
use crate::config::{Secret, read_secret_file};

#[derive(Subcommand)]
pub(super) enum ClientCommand {
    /// Register a client: the provider's name and the credentials it issued.
    Create {
        /// A machine name for /oauth/start/NAME; default: the provider's name.
        #[arg(long)]
        name: Option<String>,
        /// The provider: a preset (gmail, ms-exchange, demo) or a name of client.providers.
        #[arg(long)]
        provider: String,
        /// The client ID the provider issued.
        #[arg(long)]
        client_id: String,
        /// The client secret (or --secret-file; none for a public client).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        /// Read the client secret from this file (first line), keeping it out of the shell's history.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The tenant (ms-exchange).
        #[arg(long)]
        tenant: Option<String>,
        /// A scope instead of the provider's defaults (repeat for more).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A label for the admin pages and lists.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List clients: name, provider, client ID, source (config or cli), label.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Delete a client made with the CLI, with its tokens.
    Delete {
        /// The client's name, as `client list` shows it.
        name: String,
    },
    /// Print the Redirect URL to copy to the provider (warns when providers will refuse it).
    RedirectUrl,
}

/// Runs a `client` command: `redirect-url` on the file alone, the others on
/// its token store.
pub(super) async fn run(config: &ConfigArg, command: ClientCommand) -> Lines {
    let loaded = config.load()?;
    if let ClientCommand::RedirectUrl = command {
        let (url, warning) = admin::redirect_url(&loaded)?;
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        return Ok(vec![url]);
    }
    with_tokens(&loaded, async |tokens, _store| {
        Ok(match command {
            ClientCommand::Create {
                name,
                provider,
                client_id,
                secret,
                secret_file,
                tenant,
                scopes,
                label,
            } => {
                let secret = match (secret, secret_file) {
                    (Some(s), _) => Some(Secret::new(s)),
                    (None, Some(f)) => Some(
                        read_secret_file(&f)
                            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", f.display())))?,
                    ),
                    (None, None) => None,
                };
                let name = name.unwrap_or_else(|| provider.clone());
                let scopes = (!scopes.is_empty()).then_some(scopes);
                tokens
                    .registry()
                    .create(&name, &provider, &client_id, secret.as_ref(), tenant, scopes, label)
                    .await?;
                vec![format!("created client {name} (provider {provider}); start it at /oauth/start/{name}")]
            }
            ClientCommand::List { format } => {
                let mut table = Table::new(&["name", "provider", "client_id", "source", "label"]);
                for r in tokens.registry().list().await? {
                    table.push(vec![
                        Cell::text(&r.name),
                        Cell::text(&r.provider.name),
                        Cell::text(&r.creds.client_id),
                        Cell::text(r.source),
                        Cell::text(&r.label),
                    ]);
                }
                return table.print(format);
            }
            ClientCommand::Delete { name } => {
                tokens.registry().delete(&name).await?;
                vec![format!("deleted client {name}")]
            }
            ClientCommand::RedirectUrl => vec![],
        })
    })
    .await
}
