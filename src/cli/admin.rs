//! `admin token`: tokens for the admin JSON API.

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, with_store};
use super::table::{Cell, Format, Table};

#[derive(Subcommand)]
pub(super) enum AdminCommand {
    /// Tokens for `Authorization: Bearer` on the admin JSON API.
    Token {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
}

#[derive(Subcommand)]
pub(super) enum AdminTokenCommand {
    /// Make a token: printed once with its id, stored only as its SHA-256 hash.
    Create {
        /// What the token is for (shown by `admin token list`).
        #[arg(long)]
        label: String,
        /// "administer oauth" (the default) or "manage oauth client secrets" (repeat for both).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// List tokens: id, label, permissions, created; never a token or its hash.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Delete a token by id: it stops working at once.
    Delete {
        /// The token's id, as `admin token list` shows it.
        id: String,
    },
}

/// Runs an `admin token` command on the store of `config` (no `server:`
/// section needed).
pub(super) async fn run(config: &ConfigArg, AdminCommand::Token { command }: AdminCommand) -> Lines {
    let loaded = config.load()?;
    with_store(&loaded, async |store| {
        let store = store.as_ref();
        Ok(match command {
            AdminTokenCommand::Create { label, permissions } => {
                let made = crate::admin::create_token(store, &label, permissions).await?;
                vec![
                    format!("id: {}", made.id),
                    format!("token: {}", made.token.expose()),
                    "(the token is shown only now; it is stored as a hash)".into(),
                ]
            }
            AdminTokenCommand::List { format } => {
                let mut table = Table::new(&["id", "label", "permissions", "created_at"]);
                for t in crate::admin::list_tokens(store).await? {
                    table.push(vec![
                        Cell::Text(t.id),
                        Cell::Text(t.label),
                        Cell::List(t.permissions),
                        Cell::Time(Some(t.created_at)),
                    ]);
                }
                return table.print(format);
            }
            AdminTokenCommand::Delete { id } => {
                crate::admin::delete_token(store, &id).await?;
                vec![format!("deleted admin token {id}")]
            }
        })
    })
    .await
}
