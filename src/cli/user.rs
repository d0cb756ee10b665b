//! `user`: local users in the store.

use std::path::PathBuf;

use clap::Subcommand;

use super::Lines;
use super::context::{ConfigArg, server_section, with_store};
use super::table::{Cell, Format, Table};
use crate::server::admin::{self, UserChange};

#[derive(Subcommand)]
pub(super) enum UserCommand {
    /// Add a user; the password is the first line of standard input or of --password-file.
    Add {
        /// The login name.
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
        /// The user's login name.
        username: String,
        /// Read the password from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Replace a user's roles.
    Roles {
        /// The user's login name.
        username: String,
        /// The roles of server.roles the user holds from now on (none: no role).
        #[arg(value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Replace a user's admin permissions (none: no longer an admin).
    Permissions {
        /// The user's login name.
        username: String,
        /// "administer oauth" and/or "manage oauth client secrets" (none: no longer an admin).
        #[arg(value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Disable a user (no login, no token), or enable them again with --enable.
    Disable {
        /// The user's login name.
        username: String,
        /// Enable the user again instead.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a user with their sessions and refresh tokens.
    Delete {
        /// The user's login name.
        username: String,
    },
    /// List users: username, roles, admin permissions, disabled.
    List {
        #[command(flatten)]
        format: Format,
    },
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
                let shown = listed(&roles);
                change(&username, UserChange { roles: Some(roles), ..Default::default() }).await?;
                vec![format!("{username} now has the roles: {shown}")]
            }
            UserCommand::Permissions { username, permissions } => {
                let shown = listed(&permissions);
                change(&username, UserChange { permissions: Some(permissions), ..Default::default() })
                    .await?;
                vec![format!("{username} now has the admin permissions: {shown}")]
            }
            UserCommand::Disable { username, enable } => {
                change(&username, UserChange { disabled: Some(!enable), ..Default::default() }).await?;
                vec![format!("{} user {username}", if enable { "enabled" } else { "disabled" })]
            }
            UserCommand::Delete { username } => {
                admin::delete_user(store, &username).await?;
                vec![format!("deleted user {username}")]
            }
            UserCommand::List { format } => {
                let mut table = Table::new(&["username", "roles", "admin_permissions", "disabled"]);
                for u in admin::list_users(store).await? {
                    table.push(vec![
                        Cell::Text(u.username),
                        Cell::List(u.roles),
                        Cell::List(u.permissions),
                        Cell::Flag(u.disabled),
                    ]);
                }
                return table.print(format);
            }
        })
    })
    .await
}

/// Names for a message: `a, b`, or `none`.
fn listed(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}
