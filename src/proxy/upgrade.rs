//! `Upgrade` passthrough: once both sides have switched protocols (HTTP 101),
//! the two connections are joined into one byte tunnel.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

/// Spawns the tunnel between the client's and the upstream's upgraded
/// connections; it ends when either side closes.
pub(super) fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(both) => both,
                Err(err) => {
                    tracing::warn!(error = %err, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(err) => tracing::debug!(error = %err, "upgraded connection ended"),
            }
        }
        .instrument(span),
    );
}
