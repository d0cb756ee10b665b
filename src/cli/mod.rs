//! The `oauth-sidecar` command line: the arguments ([`Cli`]) and what each
//! command does ([`run`]). The binary only parses the arguments and calls
//! [`run`].
//!
//! Every command runs on one Tokio runtime, opens the store its
//! configuration names one way (and closes it), and fails with one error
//! type whose exit status comes from one table (`CliError`): 2 when
//! the configuration or the arguments are wrong, 1 for anything else.
//!
//! One file per command group: `serve`, `check_config`, `healthcheck`,
//! `consumer`, `user`, `admin` (admin API tokens), `keys`, `provider`,
//! `client`, `token` and `store`; `context` opens the configuration and
//! the store, `error` holds the exit-code table.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod check_config;
mod client;
mod consumer;
mod context;
mod error;
mod healthcheck;
mod keys;
mod provider;
mod serve;
mod store;
mod table;
mod token;
mod user;

use context::ConfigArg;
pub(crate) use error::CliError;

/// What a command prints on standard output, one line each, or why it failed.
type Lines = Result<Vec<String>, CliError>;

/// The command line's arguments; parse them with [`clap::Parser::parse`]
/// and give them to [`run`].
#[derive(Parser)]
#[command(
    name = "oauth-sidecar",
    version,
    about = "A reverse-proxy sidecar that gives a legacy application OAuth2 on both sides",
    after_help = "Examples:\n  \
        oauth-sidecar serve --config config/sidecar.example.yaml\n  \
        OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml oauth-sidecar serve\n  \
        oauth-sidecar check-config config/sidecar.example.yaml\n  \
        oauth-sidecar consumer create --config sidecar.yaml --client-id reporting --user-id reporter \\\n      \
          --scope farm_viewer --grant-type client_credentials\n  \
        oauth-sidecar user add --config sidecar.yaml alice --role farm_viewer < password.txt\n  \
        oauth-sidecar keys rotate --config sidecar.yaml\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label deploy-bot"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar until SIGTERM or SIGINT.
    #[command(after_help = "Example:\n  oauth-sidecar serve --config config/sidecar.example.yaml")]
    Serve {
        /// The YAML configuration file.
        #[arg(long, short, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file: print what would run, or every error found (exit status 2).
    #[command(after_help = "Example:\n  oauth-sidecar check-config config/sidecar.example.yaml")]
    CheckConfig {
        /// The YAML configuration file (or --config FILE, as the other commands take it).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// The YAML configuration file.
        #[arg(long, short, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Exit 0 when the sidecar this configuration describes answers its health endpoint (for container health checks).
    #[command(
        after_help = "Example:\n  OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml oauth-sidecar healthcheck"
    )]
    Healthcheck {
        /// The YAML configuration file of the running sidecar.
        #[arg(long, short, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage consumers (OAuth clients) in the store.
    Consumer {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: consumer::ConsumerCommand,
    },
    /// Manage local users in the store.
    User {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Admin API tokens, for the JSON API under the admin path (`/admin/api/`).
    #[command(after_help = "Examples:\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label deploy-bot\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label vault-sync \\\n      \
          --permission \"administer oauth\" --permission \"manage oauth client secrets\"\n  \
        oauth-sidecar admin token list --config sidecar.yaml")]
    Admin {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Store maintenance: apply migrations, or copy a SQLite store into PostgreSQL.
    #[command(after_help = "Examples:\n  \
        oauth-sidecar store migrate --config sidecar.yaml\n  \
        OAUTH_SIDECAR_COPY_TO=postgres://sidecar:secret@db/sidecar \\\n      \
          oauth-sidecar store copy --from sqlite://./data/sidecar.db")]
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Manage token-signing keys.
    Keys {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// OAuth providers the client role knows (presets and client.providers).
    Provider {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: provider::ProviderCommand,
    },
    /// OAuth client registrations at providers.
    Client {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// Tokens from providers in the store.
    Token {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: token::TokenCommand,
    },
}

impl Command {
    async fn run(self) -> Lines {
        match self {
            Command::Serve { config } => serve::run(&config).await,
            Command::CheckConfig { file, config } => check_config::run(file.or(config)),
            Command::Healthcheck { config } => healthcheck::run(&config).await,
            Command::Consumer { config, command } => consumer::run(&config, command).await,
            Command::User { config, command } => user::run(&config, command).await,
            Command::Admin { config, command } => admin::run(&config, command).await,
            Command::Store { command } => store::run(command).await,
            Command::Keys { config, command } => keys::run(&config, command).await,
            Command::Provider { config, command } => provider::run(&config, command),
            Command::Client { config, command } => client::run(&config, command).await,
            Command::Token { config, command } => token::run(&config, command).await,
        }
    }
}

/// Runs the command on one Tokio runtime, prints its lines on standard
/// output (or its error on standard error) and gives the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return CliError::Failed(format!("cannot start the async runtime: {e}")).exit(),
    };
    match runtime.block_on(cli.command.run()) {
        Ok(lines) => {
            // A reader that stops early (`| head`) closes the pipe: stop
            // printing then, without a panic; the command itself is done.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in lines {
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Collects, for `cmd` and its subcommands, arguments without a help
    /// line and `list`/`show` commands without `--json`.
    fn lacking(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() {
                out.push(format!("{path}: <{}> has no help line", arg.get_id()));
            }
        }
        if ["list", "show"].contains(&cmd.get_name()) && !cmd.get_arguments().any(|a| a.get_id() == "json") {
            out.push(format!("{path}: no --json"));
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                out.push(format!("{path} {}: no description", sub.get_name()));
            }
            lacking(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_a_help_line_and_every_list_and_show_takes_json() {
        let mut out = Vec::new();
        lacking(&Cli::command(), "oauth-sidecar", &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }
}
