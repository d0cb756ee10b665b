//! The OAuth client role (CiviCRM's oauth-client model): the sidecar holds
//! the OAuth2 connections to outside providers, so that the app behind it
//! can call their APIs without knowing OAuth.
//!
//! - [`provider`]: the presets `gmail`, `ms-exchange`, `demo` and `oidc`,
//!   and `client.providers` overrides.
//! - [`registry`]: client registrations (file and CLI).
//! - [`protocol`]: the exchanges, through the `oauth2` and `openidconnect` crates.
//! - `start`: `/oauth/start/{client}` (signed-in admins only, through
//!   [`crate::web::signin`]): a confirmation page whose button goes on to the provider.
//! - [`flow`]: the return path.
//! - [`tokens`]: the token store in use: encrypted at rest ([`crypto`]),
//!   refresh before use and in the background, single flight.
//! - [`inject`]: [`InjectTokenLayer`], for any outbound HTTP client service.
//! - [`egress`]: the loopback listener for the app's calls, and token vending.
//! - [`admin`]: what the `provider`, `client` and `token` commands do.

pub mod admin;
pub mod crypto;
pub mod egress;
pub mod flow;
pub mod inject;
pub mod protocol;
pub mod provider;
pub mod registry;
mod start;
pub mod tokens;

use std::sync::Arc;

use axum::routing::get;

pub use inject::{InjectTarget, InjectTokenLayer, ReplayBody, TokenSource};
pub use tokens::{LiveToken, TokenError, Tokens};

use crate::config::Loaded;
use crate::mount::{Mount, Task};
use crate::store::{ClientStore, Store, StoreError};
use crate::web::cookie::CookieScope;
use crate::web::signin::{SignIn, SignInError};
use crypto::{CryptoError, TokenCipher};
use protocol::{Http, ProviderError};
use registry::Registry;

/// The SASL XOAUTH2 initial response for IMAP and SMTP, base64.
pub fn xoauth2(user: &str, access_token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {access_token}\x01\x01"))
}

/// Why an OAuth client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request cannot be done as asked (exit status 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    /// No such client, provider or token.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token key is wrong, or a value is damaged.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The provider failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// No usable token.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why the OAuth client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientStartError {
    /// The configuration has no `client:` section, or no key.
    #[error("{0}")]
    Config(String),
    /// The token key does not open the stored tokens, or the store failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The local sign-in could not be set up.
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// The HTTP client could not be built.
    #[error("{0}")]
    Http(String),
}

/// The issuer of the `demo` provider: this sidecar's own authorization server.
fn local_issuer(loaded: &Loaded) -> String {
    loaded
        .config
        .server
        .as_ref()
        .and_then(|s| s.issuer.as_ref())
        .map_or_else(|| loaded.public_url.base(), |i| i.value.base())
}

/// Opens the token store of a configuration: checks the key against the
/// store, builds the registry and the provider HTTP client.
pub async fn open_tokens(
    loaded: &Loaded,
    store: Arc<dyn ClientStore>,
) -> Result<Arc<Tokens>, ClientStartError> {
    let Some(config) = &loaded.config.client else {
        return Err(ClientStartError::Config("the configuration has no `client:` section".into()));
    };
    let key = loaded
        .client
        .token_key
        .ok_or_else(|| ClientStartError::Config("client.token_key is missing".into()))?;
    let cipher = TokenCipher::open(&key, store.as_ref()).await?;
    let extra_ca = config.extra_ca_file.as_ref().map(|f| f.value.as_path());
    let http = Http::new(config.provider_timeout.0, extra_ca).map_err(ClientStartError::Http)?;
    let registry =
        Arc::new(Registry::new(config, &loaded.client, &local_issuer(loaded), store.clone(), cipher.clone()));
    Ok(Arc::new(Tokens::new(store, cipher, http, registry, config.refresh_skew.0)))
}

/// What the handlers share.
pub(crate) struct Inner {
    store: Arc<dyn ClientStore>,
    tokens: Arc<Tokens>,
    signin: SignIn,
    redirect_url: String,
    return_path: String,
    state_ttl: i64,
    secure: bool,
    /// The admin pages' path when they are on, for the landing page's link back.
    admin_path: Option<String>,
}

/// The OAuth client role, ready to serve.
#[derive(Clone)]
pub struct OAuthClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient").field("redirect_url", &self.inner.redirect_url).finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Opens the token store (a wrong key stops here) and sets up sign-in.
    pub async fn start(loaded: &Loaded, store: Arc<dyn Store>) -> Result<Self, ClientStartError> {
        let tokens = open_tokens(loaded, store.clone()).await?;
        let Some(config) = &loaded.config.client else {
            return Err(ClientStartError::Config("the configuration has no `client:` section".into()));
        };
        let signin = SignIn::new(
            store.clone(),
            loaded.config.server.as_ref(),
            &loaded.public_url,
            &loaded.config.proxy.trusted_proxies,
            CookieScope::oauth(loaded.public_url.is_https()),
        )
        .await?;
        let inner = Inner {
            store,
            tokens,
            signin,
            redirect_url: loaded.redirect_url().unwrap_or_default(),
            return_path: config.return_path.0.clone(),
            state_ttl: i64::try_from(config.state_ttl.0.as_secs()).unwrap_or(600),
            secure: loaded.public_url.is_https(),
            admin_path: (cfg!(feature = "admin") && loaded.config.admin.enabled)
                .then(|| loaded.config.admin.path.value.0.trim_end_matches('/').to_owned()),
        };
        Ok(OAuthClient { inner: Arc::new(inner) })
    }

    /// The token store, for egress and [`InjectTokenLayer`].
    pub fn tokens(&self) -> Arc<Tokens> {
        self.inner.tokens.clone()
    }

    /// The routes, owning `/oauth/start/` and the return path.
    pub fn mount(&self) -> Mount {
        Mount::new()
            .route("/oauth/start/{client}", get(start::start).post(start::start))
            .route(&self.inner.return_path, get(flow::finish))
            .with_state(self.inner.clone())
    }
}

/// The whole role as the binary runs it: the routes on the public listener,
/// the background refresh and the egress listener.
pub struct ClientRole {
    client: OAuthClient,
    egress: Option<egress::EgressListener>,
    ahead: std::time::Duration,
    interval: std::time::Duration,
}

impl std::fmt::Debug for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRole").field("egress", &self.egress).finish_non_exhaustive()
    }
}

impl ClientRole {
    /// Starts the role when the configuration has a `client:` section, and
    /// binds the egress listener when it has an `egress:` section.
    pub async fn start(loaded: &Loaded, store: Arc<dyn Store>) -> Result<Option<Self>, ClientStartError> {
        let Some(config) = &loaded.config.client else { return Ok(None) };
        let client = OAuthClient::start(loaded, store).await?;
        let egress = match &loaded.config.egress {
            Some(e) => {
                let extra_ca = config.extra_ca_file.as_ref().map(|f| f.value.as_path());
                let tls = protocol::tls_config(extra_ca).map_err(ClientStartError::Http)?;
                let listener = egress::EgressListener::bind(e, &loaded.client, client.tokens(), tls)
                    .await
                    .map_err(ClientStartError::Http)?;
                Some(listener.limited_by(&loaded.config))
            }
            None => None,
        };
        Ok(Some(ClientRole {
            client,
            egress,
            ahead: config.refresh_ahead.0,
            interval: config.refresh_interval.0,
        }))
    }

    /// The routes for the public listener.
    pub fn client(&self) -> &OAuthClient {
        &self.client
    }

    /// The egress listener's routes, when there is one, for a reload to replace.
    pub fn egress_routes(&self) -> Option<egress::EgressRoutes> {
        self.egress.as_ref().map(egress::EgressListener::routes)
    }

    /// The egress listener's address, when there is one.
    pub fn egress_addr(&self) -> Option<std::net::SocketAddr> {
        self.egress.as_ref().map(egress::EgressListener::local_addr)
    }

    /// The routes, and the background refresh and the egress listener,
    /// started now and stopped with the sidecar (the egress listener drains
    /// for the shutdown grace).
    pub fn mount(self) -> Mount {
        let mut mount = self.client.mount();
        if let Some(background) = self.client.tokens().spawn_background(self.ahead, self.interval) {
            mount = mount.task(Task::aborted(background));
        }
        if let Some(listener) = self.egress {
            tracing::info!(addr = %listener.local_addr(), "egress ready");
            let (stop, mut stopped) = tokio::sync::watch::channel(false);
            let egress = tokio::spawn(listener.serve(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            mount = mount.task(Task::drained(egress, stop, "egress listener"));
        }
        mount
    }
}
