//! `keys`: the authorization server's token-signing keys.

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, server_section, with_store};
use super::table::{Cell, Format, Table};
use crate::server::admin;

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Add a signing key (a running sidecar signs with it once it reloads its keys: at once on
    /// PostgreSQL, which announces the change, else within server.keys_reload_interval); prints its kid.
    Rotate {
        /// The key's algorithm.
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "RS256"])]
        alg: String,
    },
    /// List signing keys: kid, alg, created, state (active, published or retired).
    List {
        #[command(flatten)]
        format: Format,
    },
}

/// Runs a `keys` command on the store of `config` (which needs a `server:` section).
pub(super) async fn run(config: &ConfigArg, command: KeysCommand) -> Lines {
    let loaded = config.load()?;
    let server = server_section(&loaded, true)?;
    with_store(&loaded, async |store| {
        Ok(match command {
            KeysCommand::Rotate { alg } => vec![admin::rotate_key(store.as_ref(), &alg).await?],
            KeysCommand::List { format } => {
                let mut table = Table::new(&["kid", "alg", "created_at", "state"]);
                for k in admin::list_keys(store.as_ref(), &server).await? {
                    table.push(vec![
                        Cell::Text(k.kid),
                        Cell::text(k.alg),
                        Cell::Time(Some(k.created_at)),
                        Cell::text(k.state),
                    ]);
                }
                return table.print(format);
            }
        })
    })
    .await
}
