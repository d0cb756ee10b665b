//! The authorization server role (farmOS model): consumers, users and roles,
//! the scope policy, signing keys and JWT access tokens.
//!
//! [`AuthorizationServer::start`] prepares everything from the `server:`
//! section (consumers synced from the file, seed users created, signing keys
//! loaded or created) and [`AuthorizationServer::mount`] serves:
//!
//! | path | what |
//! |---|---|
//! | `POST /oauth/token` | the token endpoint ([`token`]) |
//! | `GET /.well-known/jwks.json` | the public signing keys |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//! | `GET /.well-known/openid-configuration` | the same document |
//! | `POST /oauth/revoke` | RFC 7009 token revocation ([`revoke`]) |
//! | `POST /oauth/introspect` | RFC 7662 token introspection ([`introspect`]) |
//! | `GET`, `POST /oauth/userinfo` | OpenID Connect UserInfo ([`userinfo`]) |
//! | `GET`, `POST /oauth/logout` | OpenID Connect RP-initiated logout ([`logout`]); back-channel logout tokens follow ([`backchannel`]) |
//!
//! Access tokens are RFC 9068 JWTs: `iss` is the issuer (`server.issuer`,
//! default the public URL without a trailing slash), and `aud` is the issuer
//! too, because the resource the tokens open (the gate in front of the
//! upstream) lives behind the same public URL.
//!
//! The signing keys are reloaded from the store while the server runs
//! ([`key_reload`]), so a `keys rotate` by the CLI needs no restart.

pub mod admin;
pub mod authorize;
pub mod backchannel;
pub mod cache;
pub mod consent;
pub mod consumer;
pub mod error;
pub mod grace;
pub mod introspect;
pub mod jwt;
pub mod key_reload;
pub mod keys;
pub mod logout;
pub mod oidc;
pub mod policy;
pub mod revoke;
pub mod token;
pub mod userinfo;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use http::header::CACHE_CONTROL;
use serde_json::{Value, json};

use crate::config::server::{RequirePkce, RoleConfig, ServerConfig};
use crate::config::types::{HttpUrl, TrustedProxy};
use crate::mount::Mount;
use crate::store::{self, ServerStore, StoreError, UserRecord};
use crate::web::cookie::CookieScope;
use crate::web::pages::TemplateError;
use crate::web::password;
use crate::web::secrets::Secrets;
use crate::web::signin::{SignIn, SignInError};
use crate::web::throttle::Throttle;
use consumer::SyncError;
use key_reload::LiveKeys;
use keys::{Alg, KeyError, KeyRing};

/// Why the authorization server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerStartError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file's consumers could not be synced.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Signing keys could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A seed user's password could not be hashed.
    #[error("cannot hash the password of user {0:?}")]
    Hash(String),
    /// A configured token algorithm is unknown.
    #[error(transparent)]
    Alg(#[from] keys::UnknownAlg),
    /// A page template could not be loaded.
    #[error(transparent)]
    Templates(#[from] TemplateError),
    /// The HTTP client for back-channel logout could not be built.
    #[error("{0}")]
    Http(String),
    /// Sign-in through providers could not be set up.
    #[error("cannot prepare sign-in through providers: {0}")]
    Federation(String),
}

impl From<SignInError> for ServerStartError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::Store(e) => ServerStartError::Store(e),
            SignInError::Templates(e) => ServerStartError::Templates(e),
            SignInError::Hash(_) => ServerStartError::Hash(String::new()),
            SignInError::Federation(e) => ServerStartError::Federation(e),
        }
    }
}

/// What the handlers share.
pub(crate) struct Inner {
    store: Arc<dyn ServerStore>,
    /// Consumers and users as the token endpoint reads them.
    cache: cache::DirectoryCache,
    secrets: Secrets,
    keys: Arc<LiveKeys>,
    issuer: String,
    audience: String,
    access_alg: Alg,
    id_alg: Alg,
    access_ttl: u64,
    refresh_ttl: u64,
    code_ttl: u64,
    /// `server.session_ttl` in seconds: how long a sign-in session lasts at
    /// most, and how long after expiry an `id_token_hint` still counts.
    session_ttl: i64,
    /// Wakes the back-channel logout delivery when this process queued one.
    backchannel: Arc<backchannel::Wake>,
    /// `server.refresh_reuse_grace` in whole seconds (rounded up); 0 is off.
    refresh_grace: u64,
    base_role: String,
    /// The file's roles and consumer settings, replaced on reload.
    file: ArcSwap<FileDefined>,
    /// Sign-in at `/oauth/authorize` (and the pages, the throttle, the
    /// equal-cost password check of the password grant).
    signin: SignIn,
    /// Failed client authentications, per `client_id` and per address.
    client_throttle: Throttle,
    /// `server.require_pkce: all`.
    pkce_for_all: bool,
}

/// What the handlers read of `server.roles` and `server.consumers`, one
/// value so that a reload replaces it whole.
pub(crate) struct FileDefined {
    roles: BTreeSet<String>,
    /// Labels and descriptions for the consent page.
    role_info: BTreeMap<String, RoleConfig>,
    /// The file's consumers that set `require_pkce` themselves.
    pkce_overrides: BTreeMap<String, bool>,
}

impl FileDefined {
    fn of(config: &ServerConfig) -> Self {
        FileDefined {
            roles: config.roles.keys().cloned().collect(),
            role_info: config.roles.clone(),
            pkce_overrides: config
                .consumers
                .iter()
                .filter_map(|c| Some((c.client_id.value.clone(), c.require_pkce?)))
                .collect(),
        }
    }
}

/// Syncs the file's consumers into the store and creates its users when
/// missing: at start and on every reload.
async fn sync_file(
    store: &dyn ServerStore,
    secrets: &Secrets,
    config: &ServerConfig,
) -> Result<(), ServerStartError> {
    let report = consumer::sync_consumers(store, secrets, &config.consumers).await?;
    for gone in &report.deleted {
        tracing::info!(client_id = %gone, "consumer removed from the file; deleted");
    }
    for u in &config.users {
        if store.user(&u.username).await?.is_some() {
            continue;
        }
        let Some(password) = &u.password else { continue };
        let password_hash = password::hash_blocking(password.expose().to_owned())
            .await
            .map_err(|_| ServerStartError::Hash(u.username.value.clone()))?;
        store
            .put_user(&UserRecord {
                username: u.username.value.clone(),
                password_hash,
                roles: u.roles.iter().map(|r| r.value.clone()).collect(),
                admin: u.admin || !u.permissions.is_empty(),
                permissions: admin::permissions_for(
                    u.admin,
                    u.permissions.iter().map(|p| p.value.clone()).collect(),
                ),
                disabled: false,
            })
            .await?;
        tracing::info!(username = %u.username.value, "user created from the file");
    }
    Ok(())
}

impl Inner {
    /// True when `consumer` must send a PKCE challenge: always when public;
    /// else as its own `require_pkce` in the file says, or
    /// `server.require_pkce`.
    fn requires_pkce(&self, consumer: &store::ConsumerRecord) -> bool {
        !consumer.confidential
            || self.file.load().pkce_overrides.get(&consumer.client_id).copied().unwrap_or(self.pkce_for_all)
    }
}

/// The authorization server, ready to serve.
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer").field("issuer", &self.inner.issuer).finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// Syncs the file's consumers, creates its users when missing, and loads
    /// the signing keys (creating EdDSA and RS256 keys on first start, kept
    /// in the JWKS after a rotation for the longest access token lifetime).
    /// `trusted_proxies` say whose `X-Forwarded-For` names the client.
    pub async fn start(
        store: Arc<dyn ServerStore>,
        config: &ServerConfig,
        public_url: &HttpUrl,
        trusted_proxies: &[TrustedProxy],
    ) -> Result<Self, ServerStartError> {
        let signin = SignIn::new(
            store.clone(),
            Some(config),
            public_url,
            trusted_proxies,
            CookieScope::oauth(public_url.is_https()),
        )
        .await?;
        let secrets = signin.secrets().clone();
        sync_file(store.as_ref(), &secrets, config).await?;
        let access_ttl = config.access_token_ttl.0.as_secs();
        let retention = Duration::from_secs(admin::longest_ttl(config));
        let ring = KeyRing::load_or_create(store.as_ref(), &Alg::ALL, retention).await?;
        let keys = Arc::new(LiveKeys::new(store.clone(), ring));
        key_reload::spawn_periodic_reload(&keys, config.keys_reload_interval.0);
        let issuer = config.issuer.as_ref().map_or_else(|| public_url.base(), |i| i.value.base());
        let cache = cache::DirectoryCache::following(store.as_ref());
        let inner = Inner {
            store,
            cache,
            secrets,
            keys,
            audience: issuer.clone(),
            issuer,
            access_alg: config.access_token_alg.value.parse()?,
            id_alg: config.id_token_alg.value.parse()?,
            access_ttl,
            refresh_ttl: config.refresh_token_ttl.0.as_secs(),
            code_ttl: config.code_ttl.0.as_secs(),
            session_ttl: i64::try_from(config.session_ttl.0.as_secs()).unwrap_or(i64::MAX),
            backchannel: Arc::new(backchannel::Wake::default()),
            refresh_grace: {
                let grace = config.refresh_reuse_grace.0;
                grace.as_secs() + u64::from(grace.subsec_nanos() > 0)
            },
            base_role: config.base_role.clone(),
            file: ArcSwap::from_pointee(FileDefined::of(config)),
            signin,
            // Per client_id the address's (higher) limit: a client's burst
            // of parallel first requests, each an argon2 check counted
            // before it runs, must not lock out the client itself.
            client_throttle: Throttle::new(
                config.login_attempts_per_address,
                config.login_attempts_per_address,
                config.login_window.0,
            ),
            pkce_for_all: config.require_pkce == RequirePkce::All,
        };
        let inner = Arc::new(inner);
        backchannel::spawn_delivery(&inner)?;
        Ok(AuthorizationServer { inner })
    }

    /// Applies a reloaded `server:` section: its consumers synced again,
    /// its missing users created, its roles and consumers' PKCE settings
    /// replaced. The other settings keep the values they started with.
    pub async fn reload(&self, config: &ServerConfig) -> Result<(), ServerStartError> {
        sync_file(self.inner.store.as_ref(), &self.inner.secrets, config).await?;
        self.inner.file.store(Arc::new(FileDefined::of(config)));
        self.inner.cache.forget_all();
        Ok(())
    }

    /// The issuer, the `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The current public signing keys as a JWKS document, for resource
    /// servers in this process (the gate) that verify tokens without HTTP.
    pub fn jwks(&self) -> Value {
        self.inner.keys.current().jwks()
    }

    /// The endpoints (see the module docs), owning all of `/oauth/` and
    /// `/.well-known/`: an unknown path there is the server's 404, never the
    /// upstream's.
    pub fn mount(&self) -> Mount {
        let mut mount = Mount::new();
        if let Some((start, back)) = self.inner.signin.federation_paths() {
            mount = mount.route(&start, get(login_start)).route(&back, get(login_return));
        }
        mount
            .prefix("/oauth/")
            .prefix("/.well-known/")
            .route("/oauth/authorize", get(authorize::authorize).post(authorize::authorize))
            .route("/oauth/token", post(token::token))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/oauth/revoke", post(revoke::revoke))
            .route("/oauth/introspect", post(introspect::introspect))
            .route("/oauth/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
            .route("/oauth/logout", get(logout::logout).post(logout::logout))
            .with_state(self.inner.clone())
    }
}

/// `GET /oauth/login/start`: sign-in through an outside provider begins
/// (for `/oauth/authorize` and `/oauth/start`, which share the session).
async fn login_start(
    State(server): State<Arc<Inner>>,
    headers: http::HeaderMap,
    conn: Option<axum::Extension<crate::proxy::ConnectionInfo>>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    server.signin.federated_start(&headers, conn.as_deref(), query.as_deref().unwrap_or_default()).await
}

/// `GET /oauth/login/return`: the provider sends the browser back here.
async fn login_return(
    State(server): State<Arc<Inner>>,
    headers: http::HeaderMap,
    conn: Option<axum::Extension<crate::proxy::ConnectionInfo>>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    server.signin.federated_return(&headers, conn.as_deref(), query.as_deref().unwrap_or_default()).await
}

async fn jwks(State(server): State<Arc<Inner>>) -> ([(http::HeaderName, &'static str); 1], Json<Value>) {
    ([(CACHE_CONTROL, "public, max-age=300")], Json(server.keys.current().jwks()))
}

/// RFC 8414 metadata, also served as the OpenID Connect discovery document,
/// listing only what this server implements.
async fn metadata(State(server): State<Arc<Inner>>) -> Json<Value> {
    let issuer = &server.issuer;
    let mut scopes: Vec<&str> = vec!["openid"];
    let file = server.file.load();
    scopes.extend(file.roles.iter().map(String::as_str));
    scopes.push(&server.base_role);
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["authorization_code", "client_credentials", "password", "refresh_token"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": scopes,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [server.id_alg.as_str()],
        "claims_supported": ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid"],
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "frontchannel_logout_session_supported": false,
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}
