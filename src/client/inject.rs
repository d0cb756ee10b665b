//! [`InjectTokenLayer`]: a Tower layer for an outbound HTTP client service
//! (hyper-util's `Client`, or anything that is a
//! `Service<http::Request<B>>`) that sends each request with
//! `Authorization: Bearer` and the cached provider token of a client and tag.
//! When the API answers 401, it asks for a fresh token once (a refresh,
//! unless someone else already replaced the rejected token) and sends the
//! request again once, when the body can be replayed ([`ReplayBody`]).
//!
//! ```no_run
//! # async fn run(tokens: std::sync::Arc<oauth_sidecar::client::Tokens>) {
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use oauth_sidecar::client::{InjectTarget, InjectTokenLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let layer = InjectTokenLayer::builder()
//!     .source(tokens)
//!     .target(InjectTarget { client: "ms-main".into(), tag: "info@example.org".into() })
//!     .build()
//!     .expect("a source, a client and a tag");
//! let graph = ServiceBuilder::new().layer(layer).service(http);
//! let req = http::Request::get("http://127.0.0.1:9000/v1.0/me").body(Full::new(Bytes::new())).unwrap();
//! let res = graph.oneshot(req).await;
//! # let _ = res;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};

use super::tokens::{TokenError, Tokens};
use crate::config::Secret;
use crate::proxy::{ProviderTokenError, ProviderTokens};

/// Where injected tokens come from; [`Tokens`] is the sidecar's.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// The current access token of `client` + `tag`, refreshed first when
    /// it is about to expire.
    async fn token(&self, client: &str, tag: &str) -> Result<String, TokenError>;
    /// A new token after an API refused `rejected` (401).
    async fn token_rejected(&self, client: &str, tag: &str, rejected: &str) -> Result<String, TokenError>;
}

#[async_trait::async_trait]
impl TokenSource for Tokens {
    async fn token(&self, client: &str, tag: &str) -> Result<String, TokenError> {
        Ok(self.access_token(client, tag).await?.access_token.expose().to_owned())
    }

    async fn token_rejected(&self, client: &str, tag: &str, rejected: &str) -> Result<String, TokenError> {
        Ok(self.after_rejection(client, tag, rejected).await?.access_token.expose().to_owned())
    }
}

/// The gate's `upstream_token` rules take their tokens from the same
/// store, refresh and back-off as the egress routes.
#[async_trait::async_trait]
impl ProviderTokens for Tokens {
    async fn token(&self, client: &str, tag: &str) -> Result<Secret, ProviderTokenError> {
        Ok(self.access_token(client, tag).await.map_err(provider_error)?.access_token)
    }

    async fn token_rejected(
        &self,
        client: &str,
        tag: &str,
        rejected: &str,
    ) -> Result<Secret, ProviderTokenError> {
        Ok(self.after_rejection(client, tag, rejected).await.map_err(provider_error)?.access_token)
    }
}

/// What the gate needs to know of a [`TokenError`]; the reason is logged
/// here, where the client and tag are named.
fn provider_error(e: TokenError) -> ProviderTokenError {
    match e {
        TokenError::NotFound { .. } => ProviderTokenError::NotConnected,
        TokenError::NeedsReauthorization { .. } => ProviderTokenError::NeedsReauthorization,
        TokenError::Unavailable { reason, .. } => ProviderTokenError::Unavailable(reason),
        TokenError::Internal(reason) => ProviderTokenError::Unavailable(reason),
    }
}

/// Which token a layer injects: a plain struct, as in an egress route.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct InjectTarget {
    /// The client registration's name.
    pub client: String,
    /// The token's tag.
    pub tag: String,
}

/// A request body that can be sent a second time.
pub trait ReplayBody: Sized {
    /// A copy to send again, or `None` when the body is a one-shot stream.
    fn try_replay(&self) -> Option<Self>;
}

impl ReplayBody for http_body_util::Full<Bytes> {
    fn try_replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for http_body_util::Empty<Bytes> {
    fn try_replay(&self) -> Option<Self> {
        Some(*self)
    }
}

/// Why an injected call failed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// No token could be had (none stored, needs re-authorization, provider down).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The wrapped service failed.
    #[error("the outbound call failed: {0}")]
    Inner(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a layer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("InjectTokenLayer needs {0}")]
pub struct InjectBuildError(&'static str);

/// Adds the cached provider token to every request (see the module docs).
#[derive(Clone)]
pub struct InjectTokenLayer {
    source: Arc<dyn TokenSource>,
    target: Arc<InjectTarget>,
    retry: bool,
}

impl std::fmt::Debug for InjectTokenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectTokenLayer").field("target", &self.target).field("retry", &self.retry).finish()
    }
}

/// Builds an [`InjectTokenLayer`]; missing parts are refused by `build`.
#[derive(Default)]
pub struct InjectTokenBuilder {
    source: Option<Arc<dyn TokenSource>>,
    target: InjectTarget,
    retry: bool,
}

impl InjectTokenBuilder {
    /// Where tokens come from.
    pub fn source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Which client and tag.
    pub fn target(mut self, target: InjectTarget) -> Self {
        self.target = target;
        self
    }

    /// Whether a 401 leads to one refresh and one retry (default: yes).
    pub fn retry_on_unauthorized(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// The layer, or what is missing.
    pub fn build(self) -> Result<InjectTokenLayer, InjectBuildError> {
        let source = self.source.ok_or(InjectBuildError("a token source"))?;
        if self.target.client.is_empty() {
            return Err(InjectBuildError("a client name"));
        }
        if self.target.tag.is_empty() {
            return Err(InjectBuildError("a tag"));
        }
        Ok(InjectTokenLayer { source, target: Arc::new(self.target), retry: self.retry })
    }
}

impl InjectTokenLayer {
    /// A builder with retry on 401 on.
    pub fn builder() -> InjectTokenBuilder {
        InjectTokenBuilder { retry: true, ..InjectTokenBuilder::default() }
    }
}

impl<S> Layer<S> for InjectTokenLayer {
    type Service = InjectToken<S>;
    fn layer(&self, inner: S) -> InjectToken<S> {
        InjectToken { inner, layer: self.clone() }
    }
}

/// The service made by [`InjectTokenLayer`].
#[derive(Clone, Debug)]
pub struct InjectToken<S> {
    inner: S,
    layer: InjectTokenLayer,
}

fn with_token<B>(mut req: Request<B>, token: &str) -> Result<Request<B>, InjectError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| InjectError::Inner("the provider's token is not a valid header value".into()))?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(req)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for InjectToken<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: ReplayBody + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = InjectError;
    type Future = BoxFuture<Result<Response<RB>, InjectError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), InjectError>> {
        self.inner.poll_ready(cx).map_err(|e| InjectError::Inner(e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (client, tag) = (&layer.target.client, &layer.target.tag);
            let token = layer.source.token(client, tag).await?;
            let replay = if layer.retry {
                req.body().try_replay().map(|body| {
                    let mut again = Request::new(body);
                    *again.method_mut() = req.method().clone();
                    *again.uri_mut() = req.uri().clone();
                    *again.version_mut() = req.version();
                    *again.headers_mut() = req.headers().clone();
                    again
                })
            } else {
                None
            };
            let res = inner.call(with_token(req, &token)?).await.map_err(|e| InjectError::Inner(e.into()))?;
            let Some(again) = replay.filter(|_| res.status() == StatusCode::UNAUTHORIZED) else {
                return Ok(res);
            };
            let fresh = layer.source.token_rejected(client, tag, &token).await?;
            if fresh == token {
                return Ok(res);
            }
            drop(res);
            tracing::info!(client = %client, tag = %tag, "the API refused the token (401); retrying once with a fresh one");
            let ready = inner.ready().await.map_err(|e| InjectError::Inner(e.into()))?;
            ready.call(with_token(again, &fresh)?).await.map_err(|e| InjectError::Inner(e.into()))
        })
    }
}
