//! The `oauth-sidecar` command line: parses the arguments and hands them to
//! [`oauth_sidecar::cli::run`], where the commands live.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    oauth_sidecar::cli::run(oauth_sidecar::cli::Cli::parse())
}
