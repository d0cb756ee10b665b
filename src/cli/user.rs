//! `user`: local users in the store.

use std::path::PathBuf;

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, server_section, with_store};
use crate::server::admin::{self, UserChange};

#[derive(Subcommand)]
pub(super) enum UserCommand {
    /// Add a user; the password is the first line of standard input or of --password-file.
    Add {
        username: String,
        /// A role of server.roles (repeat for more).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// May use the admin API and pages (with `administer oauth` unless --permission says).
        #[arg(long)]
        admin: bool,
        /// An admin permission: "administer oauth" or "manage oauth client secrets" (repeat for both).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// Read the password from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a user's password (first line of standard input or of --password-file).
    Passwd {
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Replace a user's roles.
    Roles { username: String, roles: Vec<String> },
    /// Replace a user's admin permissions (none: no longer an admin).
    Permissions { username: String, permissions: Vec<String> },
    /// Disable a user (no login, no token), or enable them again with --enable.
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
    },
    /// List users: username, roles, flags.
    List,
}

/// Runs a `user` command on the store of `config` (its `server:` section
/// is optional: an admin for `/oauth/start` needs no authorization server).
pub(super) async fn run(config: &ConfigArg, command: UserCommand) -> Lines {
    let loaded = config.load()?;
    let server = server_section(&loaded, false)?;
    with_store(&loaded, async |store| {
        let store = store.as_ref();
        let change = async |username: &str, change: UserChange| {
            admin::change_user(store, &server, username, change).await
        };
        Ok(match command {
            UserCommand::Add { username, roles, admin, permissions, password_file } => {
                let password = admin::read_password(password_file.as_deref())?;
                admin::add_user(store, &server, &username, &password, roles, admin, permissions).await?;
                vec![format!("added user {username}")]
            }
            UserCommand::Passwd { username, password_file } => {
                let password = admin::read_password(password_file.as_deref())?;
                change(&username, UserChange { password: Some(password), ..Default::default() }).await?;
                vec![format!("changed the password of {username}")]
            }
            UserCommand::Roles { username, roles } => {
                change(&username, UserChange { roles: Some(roles), ..Default::default() }).await?;
                vec![]
            }
            UserCommand::Permissions { username, permissions } => {
                change(&username, UserChange { permissions: Some(permissions), ..Default::default() })
                    .await?;
                vec![]
            }
            UserCommand::Disable { username, enable } => {
                change(&username, UserChange { disabled: Some(!enable), ..Default::default() }).await?;
                vec![format!("{} user {username}", if enable { "enabled" } else { "disabled" })]
            }
            UserCommand::List => admin::list_users(store).await?,
        })
    })
    .await
}
