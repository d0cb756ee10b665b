//! The command line's one error type and its one exit-code table.
//!
//! | exit status | when |
//! |---|---|
//! | 0 | the command did what it was asked |
//! | 1 | it failed: the store, a provider, an unknown name, an unhealthy sidecar |
//! | 2 | the configuration or the arguments do not allow it (`check-config` errors included) |

use std::process::ExitCode;

use crate::client::{ClientError, ClientStartError};
use crate::config::ConfigErrors;
use crate::server::admin::AdminError;
use crate::store::StoreError;

/// Exit status for a configuration that does not load, or arguments that
/// do not fit it.
const EXIT_CONFIG: u8 = 2;

/// Exit status for everything else that fails.
const EXIT_FAILED: u8 = 1;

/// Why a command failed; [`CliError::exit`] prints it and gives its status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The configuration file does not load: every error, one per line.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The arguments or the configuration do not allow the command.
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A consumer, user, key or admin token command failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The OAuth client's token store could not be opened (its key, its section).
    #[error(transparent)]
    ClientStart(#[from] ClientStartError),
    /// A provider, client or token command failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The running sidecar did not answer its health endpoint.
    #[error("{0}")]
    Unhealthy(String),
    /// `serve` could not start (logged, since logging is set up by then).
    #[error("cannot start: {0}")]
    Start(#[from] crate::StartError),
    /// Anything else that failed, such as the async runtime.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The exit status, from the table in the module docs.
    fn code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) | CliError::ClientStart(_) => EXIT_CONFIG,
            CliError::Admin(AdminError::Usage(_)) | CliError::Client(ClientError::Usage(_)) => EXIT_CONFIG,
            CliError::Admin(_)
            | CliError::Client(_)
            | CliError::Store(_)
            | CliError::Unhealthy(_)
            | CliError::Start(_)
            | CliError::Failed(_) => EXIT_FAILED,
        }
    }

    /// Prints the error where its reader looks for it and gives the exit status.
    pub(crate) fn exit(self) -> ExitCode {
        match &self {
            // As `check-config` shows them: `file:line:column: path: message`.
            CliError::Config(errors) => eprintln!("{errors}"),
            CliError::Unhealthy(why) => eprintln!("unhealthy: {why}"),
            CliError::Start(_) => tracing::error!("{self}"),
            _ => eprintln!("oauth-sidecar: {self}"),
        }
        ExitCode::from(self.code())
    }
}
