//! `store`: migrations, and the copy of a SQLite store into PostgreSQL.

use clap::Subcommand;

use super::context::{ConfigArg, with_store};
use super::{CliError, Lines};
use crate::config::StoreUrl;
use crate::store::{PostgresOptions, copy, redacted_url};

#[derive(Subcommand)]
pub(super) enum StoreCommand {
    /// Apply the pending migrations to the configured store and print the versions applied
    /// (`serve` does this at start too; this is for a deploy step before replicas start).
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy a SQLite store into a new, empty PostgreSQL store (both migrated first), all or
    /// nothing; hashes, keys and encrypted tokens move unchanged, so everything keeps working.
    Copy {
        /// The SQLite store: sqlite://PATH.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL store: postgres://user:password@host/db (from the environment, so
        /// the password stays out of the process list).
        #[arg(long, env = "OAUTH_SIDECAR_COPY_TO", value_name = "URL", hide_env_values = true)]
        to: String,
    },
}

/// Runs a `store` command.
pub(super) async fn run(command: StoreCommand) -> Lines {
    match command {
        StoreCommand::Migrate { config } => {
            let loaded = config.load()?;
            let versions = with_store(&loaded, async |store| Ok(store.applied_migrations().await?)).await?;
            let versions: Vec<String> = versions.iter().map(i64::to_string).collect();
            Ok(vec![format!("{}: migrations applied: {}", loaded.store, versions.join(", "))])
        }
        StoreCommand::Copy { from, to } => {
            let Ok(StoreUrl::Sqlite(from)) = from.parse::<StoreUrl>() else {
                return Err(CliError::Usage("--from must be sqlite://PATH".into()));
            };
            let Ok(StoreUrl::Postgres(to)) = to.parse::<StoreUrl>() else {
                return Err(CliError::Usage("--to must be postgres://user:password@host/db".into()));
            };
            let report = copy::sqlite_to_postgres(&from, to.expose(), PostgresOptions::default()).await?;
            let mut out =
                vec![format!("copied sqlite://{} to {}", from.display(), redacted_url(to.expose()))];
            out.extend(report.tables.into_iter().map(|(table, rows)| format!("  {table}: {rows}")));
            Ok(out)
        }
    }
}
