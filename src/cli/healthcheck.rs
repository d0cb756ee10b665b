//! `healthcheck`: asks a running sidecar's health endpoint, for container
//! health checks.

use std::path::Path;

use super::{CliError, Lines, context};

/// Succeeds, printing nothing, when the sidecar `file` describes answers.
pub(super) async fn run(file: &Path) -> Lines {
    let loaded = context::load(file)?;
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
    crate::ops::probe(addr, &config.ops.health.0, config.tls.is_some()).await.map_err(CliError::Unhealthy)?;
    Ok(Vec::new())
}
