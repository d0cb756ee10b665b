//! [`ProviderTokens`]: where the gate's `upstream_token` rules find the
//! provider token a request carries to the upstream. The OAuth client role
//! implements it with its token store (single-flight refresh, back-off),
//! the sidecar assembly hands it to the gate; the trait lives here, below
//! both, so that neither imports the other.

use crate::config::Secret;

/// Why no provider token could be had for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderTokenError {
    /// No token is stored for this client and tag: someone must connect
    /// one through `/oauth/start/{client}?tag=...`.
    #[error("no token is connected for this client and tag")]
    NotConnected,
    /// The provider refused the token's refresh: someone must connect it again.
    #[error("the token needs re-authorization")]
    NeedsReauthorization,
    /// The token expired and cannot be refreshed now (provider down, back-off).
    #[error("the token cannot be refreshed now: {0}")]
    Unavailable(String),
}

/// The current provider token of a client registration and tag.
#[async_trait::async_trait]
pub trait ProviderTokens: Send + Sync + 'static {
    /// The current access token of `client` + `tag`, refreshed first (once
    /// for all concurrent callers) when it is about to expire.
    async fn token(&self, client: &str, tag: &str) -> Result<Secret, ProviderTokenError>;

    /// A token to try after the upstream refused `rejected` with 401:
    /// refreshed, unless another caller already replaced that token.
    async fn token_rejected(
        &self,
        client: &str,
        tag: &str,
        rejected: &str,
    ) -> Result<Secret, ProviderTokenError>;
}
