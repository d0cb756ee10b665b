//! `token`: tokens from providers in the store.

use std::path::PathBuf;

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, with_tokens};
use super::table::{Cell, Format, Table};
use crate::client::ClientError;
use crate::client::admin::{self, FetchGrant};

#[derive(Subcommand)]
pub(super) enum TokenCommand {
    /// List tokens (no secrets): id, client, tag, grant, owner, expiry, status.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Print a token in clear: raw response, and a JWT's header and claims (unverified).
    Inspect {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
    /// Revoke a token at the provider (when it has an endpoint) and delete it.
    Delete {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
    /// Refresh a token now.
    Refresh {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
    /// Get a token with the client_credentials or password grant and store it.
    Fetch {
        /// The client (as `client list` shows it) to ask with.
        #[arg(long)]
        client: String,
        /// The grant to use.
        #[arg(long, value_parser = ["client_credentials", "password"])]
        grant: String,
        /// The tag to store it under; default `default` (client_credentials) or the username.
        #[arg(long)]
        tag: Option<String>,
        /// A scope instead of the client's (repeat for more).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// For the password grant; the password is the first line of standard input or --password-file.
        #[arg(long)]
        username: Option<String>,
        /// Read the password from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

/// Runs a `token` command on the token store of `config`.
pub(super) async fn run(config: &ConfigArg, command: TokenCommand) -> Lines {
    let loaded = config.load()?;
    with_tokens(&loaded, async |tokens, store| {
        Ok(match command {
            TokenCommand::List { format } => {
                let mut table =
                    Table::new(&["id", "client", "tag", "grant", "owner", "expires_at", "status"]);
                for t in admin::token_list(store).await? {
                    table.push(vec![
                        Cell::Number(t.id),
                        Cell::Text(t.client),
                        Cell::Text(t.tag),
                        Cell::Text(t.grant),
                        Cell::Text(t.owner.unwrap_or_default()),
                        Cell::Time(t.expires_at),
                        Cell::Text(t.status),
                    ]);
                }
                return table.print(format);
            }
            TokenCommand::Inspect { id } => admin::token_inspect(&tokens, store, id).await?,
            TokenCommand::Delete { id } => admin::token_delete(&tokens, store, id).await?,
            TokenCommand::Refresh { id } => admin::token_refresh(&tokens, store, id).await?,
            TokenCommand::Fetch { client, grant, tag, scopes, username, password_file } => {
                let grant = if grant == "password" {
                    let username = username
                        .ok_or_else(|| ClientError::Usage("the password grant needs --username".into()))?;
                    let password = crate::server::admin::read_password(password_file.as_deref())
                        .map_err(|e| ClientError::Usage(e.to_string()))?;
                    FetchGrant::Password { username, password }
                } else {
                    FetchGrant::ClientCredentials
                };
                admin::token_fetch(&tokens, &client, grant, tag, (!scopes.is_empty()).then_some(scopes))
                    .await?
            }
        })
    })
    .await
}
