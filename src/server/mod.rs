//! The authorization server role (farmOS model): consumers, users and roles,
//! the scope policy, signing keys and JWT access tokens.
//!
//! [`AuthorizationServer::start`] prepares everything from the `server:`
//! section (consumers synced from the file, seed users created, signing keys
//! loaded or created) and [`AuthorizationServer::router`] serves:
//!
//! | path | what |
//! |---|---|
//! | `POST /oauth/token` | the token endpoint ([`token`]) |
//! | `GET /.well-known/jwks.json` | the public signing keys |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//! | `GET /.well-known/openid-configuration` | the same document |
//!
//! Access tokens are RFC 9068 JWTs: `iss` is the issuer (`server.issuer`,
//! default the public URL without a trailing slash), and `aud` is the issuer
//! too, because the resource the tokens open (the gate in front of the
//! upstream) lives behind the same public URL.

pub mod admin;
pub mod consumer;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod policy;
pub mod token;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::CACHE_CONTROL;
use serde_json::{Value, json};

use crate::config::server::ServerConfig;
use crate::config::types::HttpUrl;
use crate::store::{Store, StoreError, UserRecord};
use consumer::{Secrets, SyncError};
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
    /// The configured access token algorithm is unknown.
    #[error(transparent)]
    Alg(#[from] keys::UnknownAlg),
}

/// What the handlers share.
pub(crate) struct Inner {
    store: Arc<dyn Store>,
    secrets: Secrets,
    keys: KeyRing,
    issuer: String,
    audience: String,
    access_alg: Alg,
    access_ttl: u64,
    refresh_ttl: u64,
    base_role: String,
    roles: BTreeSet<String>,
    /// An argon2 hash checked for unknown users, so they cost the same.
    dummy_hash: String,
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
    pub async fn start(
        store: Arc<dyn Store>,
        config: &ServerConfig,
        public_url: &HttpUrl,
    ) -> Result<Self, ServerStartError> {
        let secrets = Secrets::load(store.as_ref()).await?;
        let report = consumer::sync_consumers(store.as_ref(), &secrets, &config.consumers).await?;
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
                    admin: u.admin,
                    disabled: false,
                })
                .await?;
            tracing::info!(username = %u.username.value, "user created from the file");
        }
        let access_ttl = config.access_token_ttl.0.as_secs();
        let longest = config
            .consumers
            .iter()
            .filter_map(|c| c.access_token_ttl.map(|d| d.0.as_secs()))
            .fold(access_ttl, u64::max);
        let keys = KeyRing::load_or_create(store.as_ref(), &Alg::ALL, Duration::from_secs(longest)).await?;
        let issuer = config.issuer.as_ref().map_or_else(|| public_url.base(), |i| i.value.base());
        let dummy_hash = password::hash_blocking(consumer::random_token())
            .await
            .map_err(|_| ServerStartError::Hash(String::new()))?;
        let inner = Inner {
            store,
            secrets,
            keys,
            audience: issuer.clone(),
            issuer,
            access_alg: config.access_token_alg.value.parse()?,
            access_ttl,
            refresh_ttl: config.refresh_token_ttl.0.as_secs(),
            base_role: config.base_role.clone(),
            roles: config.roles.keys().cloned().collect(),
            dummy_hash,
        };
        Ok(AuthorizationServer { inner: Arc::new(inner) })
    }

    /// The issuer, the `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The current public signing keys as a JWKS document, for resource
    /// servers in this process (the gate) that verify tokens without HTTP.
    pub fn jwks(&self) -> Value {
        self.inner.keys.jwks()
    }

    /// The paths the router answers, as prefixes: `/oauth/` and `/.well-known/`.
    pub fn owned_prefixes(&self) -> [&'static str; 2] {
        ["/oauth/", "/.well-known/"]
    }

    /// The endpoints, as an axum router (see the module docs).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token::token))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/openid-configuration", get(metadata))
            .with_state(self.inner.clone())
    }
}

async fn jwks(State(server): State<Arc<Inner>>) -> ([(http::HeaderName, &'static str); 1], Json<Value>) {
    ([(CACHE_CONTROL, "public, max-age=300")], Json(server.keys.jwks()))
}

/// RFC 8414 metadata, listing only what this server implements.
async fn metadata(State(server): State<Arc<Inner>>) -> Json<Value> {
    let issuer = &server.issuer;
    let mut scopes: Vec<&str> = server.roles.iter().map(String::as_str).collect();
    scopes.push(&server.base_role);
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": scopes,
    }))
}
