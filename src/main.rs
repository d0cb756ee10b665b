//! The `oauth-sidecar` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a configuration that does not load.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "oauth-sidecar",
    version,
    about = "A reverse-proxy sidecar that gives a legacy application OAuth2 on both sides",
    after_help = "Examples:\n  \
        oauth-sidecar serve --config config/sidecar.example.yaml\n  \
        OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml oauth-sidecar serve\n  \
        oauth-sidecar check-config config/sidecar.example.yaml"
)]
struct Cli {
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
        /// The YAML configuration file.
        #[arg(env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        file: PathBuf,
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { file } => match load(&file) {
            Ok(loaded) => {
                println!("{}: ok\n{}", file.display(), loaded.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => serve(config),
        Command::Healthcheck { config } => healthcheck(config),
    }
}

/// Loads the configuration, or prints every error and gives exit status 2.
fn load(file: &std::path::Path) -> Result<oauth_sidecar::config::Loaded, ExitCode> {
    oauth_sidecar::config::load(file).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn healthcheck(file: PathBuf) -> ExitCode {
    let loaded = match load(&file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let config = &loaded.config;
    // A wildcard listener is asked on loopback.
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let probe = oauth_sidecar::ops::probe(addr, &config.ops.health.0, config.tls.is_some());
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(probe),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(file: PathBuf) -> ExitCode {
    let loaded = match load(&file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(e) = oauth_sidecar::telemetry::init(&loaded.config.log) {
        eprintln!("oauth-sidecar: cannot set up logging: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Installed first, so SIGTERM during start-up still shuts down cleanly.
        let shutdown = oauth_sidecar::shutdown_signal();
        match oauth_sidecar::Sidecar::build(loaded).await {
            Ok(sidecar) => {
                sidecar.run(shutdown).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("cannot start: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
