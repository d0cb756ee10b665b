//! What the `consumer`, `user` and `keys` commands do, on a [`ServerStore`] and
//! the file's `server:` section; the CLI (`crate::cli`) only parses arguments and prints.
//!
//! Consumers made here are not config-managed: a start of the sidecar leaves
//! them alone, and config-managed consumers cannot be changed here (edit the
//! file instead). A generated client secret is returned once, in
//! [`CreatedConsumer::secret`], and kept only as its keyed hash.
//!
//! ```
//! use oauth_sidecar::server::admin::{AdminError, ConsumerSpec};
//!
//! let spec = ConsumerSpec { scopes: Some(vec!["nope".into()]), ..ConsumerSpec::default() };
//! let err = spec.check(&Default::default()).unwrap_err();
//! assert!(matches!(err, AdminError::Usage(_)));
//! ```

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use super::keys::{Alg, KeyError, KeyRing};
use crate::clock;
use crate::config::Secret;
use crate::config::server::{
    GRANT_TYPES, MIN_CLIENT_SECRET_LEN, ServerConfig, check_backchannel_logout_uri, check_redirect_uri,
};
use crate::store::{ADMINISTER_OAUTH, ConsumerRecord, PERMISSIONS, ServerStore, StoreError, UserRecord};
use crate::web::password;
use crate::web::secrets::{HMAC_PREFIX, Secrets};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The arguments or the configuration do not allow it (exit status 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    /// No consumer or user by that name.
    #[error("{0}")]
    NotFound(String),
    /// The consumer or user exists already.
    #[error("{0}")]
    Exists(String),
    /// The consumer comes from the configuration file.
    #[error(
        "consumer {0:?} is managed by the configuration file (server.consumers): change it there, it is synced at start"
    )]
    ConfigManaged(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A signing key could not be made or read.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A password could not be hashed or read.
    #[error("{0}")]
    Password(String),
}

/// The consumer fields a command sets; `None` leaves a field as it is (on
/// update) or at its default (on create).
#[derive(Debug, Clone, Default)]
pub struct ConsumerSpec {
    /// A label identifying the integration.
    pub label: Option<String>,
    /// Public (`confidential: false`): no secret is validated.
    pub public: Option<bool>,
    /// Third-party consumers show the consent page.
    pub third_party: Option<bool>,
    /// The user `client_credentials` acts as.
    pub user_id: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
    /// CORS origins.
    pub allowed_origins: Option<Vec<String>>,
    /// Roles.
    pub scopes: Option<Vec<String>>,
    /// Grant types.
    pub grant_types: Option<Vec<String>>,
    /// farmOS `grant_user_access`.
    pub grant_user_access: Option<bool>,
    /// farmOS `limit_requested_access`.
    pub limit_requested_access: Option<bool>,
    /// farmOS `limit_user_access`.
    pub limit_user_access: Option<bool>,
    /// A secret the operator chose (kept as an argon2 hash, never shown
    /// again) instead of a generated one; confidential consumers only.
    pub secret: Option<Secret>,
    /// Exact URIs for after RP-initiated logout.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Where back-channel logout tokens go; empty clears it.
    pub backchannel_logout_uri: Option<String>,
}

impl ConsumerSpec {
    /// Checks roles, grant types and redirect URIs as the file's validation does.
    pub fn check(&self, server: &ServerConfig) -> Result<(), AdminError> {
        check_roles(server, self.scopes.iter().flatten())?;
        for g in self.grant_types.iter().flatten() {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(AdminError::Usage(format!(
                    "`{g}` is not a grant type: expected one of {}",
                    GRANT_TYPES.join(", ")
                )));
            }
        }
        for uri in self.redirect_uris.iter().chain(&self.post_logout_redirect_uris).flatten() {
            check_redirect_uri(uri).map_err(AdminError::Usage)?;
        }
        if let Some(uri) = self.backchannel_logout_uri.as_deref().filter(|u| !u.is_empty()) {
            check_backchannel_logout_uri(uri).map_err(AdminError::Usage)?;
        }
        Ok(())
    }

    fn apply(&self, c: &mut ConsumerRecord) {
        let set = |field: &mut bool, value: Option<bool>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        if let Some(label) = &self.label {
            c.label.clone_from(label);
        }
        if let Some(public) = self.public {
            c.confidential = !public;
        }
        set(&mut c.third_party, self.third_party);
        set(&mut c.grant_user_access, self.grant_user_access);
        set(&mut c.limit_requested_access, self.limit_requested_access);
        set(&mut c.limit_user_access, self.limit_user_access);
        if let Some(user) = &self.user_id {
            c.user_id = (!user.is_empty()).then(|| user.clone());
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            c.backchannel_logout_uri = (!uri.is_empty()).then(|| uri.clone());
        }
        for (field, value) in [
            (&mut c.redirect_uris, &self.redirect_uris),
            (&mut c.allowed_origins, &self.allowed_origins),
            (&mut c.scopes, &self.scopes),
            (&mut c.grant_types, &self.grant_types),
            (&mut c.post_logout_redirect_uris, &self.post_logout_redirect_uris),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
    }
}

/// Refuses a combination the token endpoint could not serve.
fn check_record(c: &ConsumerRecord) -> Result<(), AdminError> {
    let has = |g: &str| c.grant_types.iter().any(|x| x == g);
    if !c.confidential && has("client_credentials") {
        return Err(AdminError::Usage(
            "a public consumer (not confidential, `--public`) may not use client_credentials".into(),
        ));
    }
    if has("authorization_code") && c.redirect_uris.is_empty() {
        return Err(AdminError::Usage(
            "the authorization_code grant needs at least one redirect URI (`--redirect-uri`)".into(),
        ));
    }
    Ok(())
}

fn check_roles<'a>(server: &ServerConfig, roles: impl Iterator<Item = &'a String>) -> Result<(), AdminError> {
    for r in roles {
        if !server.roles.contains_key(r) {
            return Err(AdminError::Usage(format!("`{r}` is not a role declared in server.roles")));
        }
    }
    Ok(())
}

/// A consumer just created, with its generated secret (shown once).
#[derive(Debug)]
pub struct CreatedConsumer {
    /// The stored consumer.
    pub consumer: ConsumerRecord,
    /// The generated secret, for a confidential consumer.
    pub secret: Option<Secret>,
}

/// Creates a consumer. `client_id` defaults to a UUID v4; the default grant
/// types are `authorization_code` and `refresh_token`, as in the file.
pub async fn create_consumer(
    store: &dyn ServerStore,
    server: &ServerConfig,
    client_id: Option<String>,
    spec: &ConsumerSpec,
) -> Result<CreatedConsumer, AdminError> {
    spec.check(server)?;
    let client_id = client_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if client_id.is_empty() || !client_id.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)) {
        return Err(AdminError::Usage(format!(
            "`{client_id}` is not a machine name: use letters, digits, `_`, `.`, `-`"
        )));
    }
    if store.consumer(&client_id).await?.is_some() {
        return Err(AdminError::Exists(format!("consumer {client_id:?} exists already")));
    }
    let mut consumer = ConsumerRecord {
        client_id,
        label: String::new(),
        secret_hash: None,
        confidential: true,
        user_id: None,
        redirect_uris: vec![],
        allowed_origins: vec![],
        third_party: true,
        scopes: vec![],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        access_token_ttl: None,
        refresh_token_ttl: None,
        grant_user_access: false,
        limit_requested_access: false,
        limit_user_access: false,
        managed_by_config: false,
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
    };
    spec.apply(&mut consumer);
    check_record(&consumer)?;
    let secret = set_secret(store, &mut consumer, spec.secret.as_ref(), true).await?;
    store.put_consumer(&consumer).await?;
    Ok(CreatedConsumer { consumer, secret })
}

/// Changes a CLI-made consumer; with `new_secret`, generates a new secret
/// (returned once) that replaces the old one.
pub async fn update_consumer(
    store: &dyn ServerStore,
    server: &ServerConfig,
    client_id: &str,
    spec: &ConsumerSpec,
    new_secret: bool,
) -> Result<CreatedConsumer, AdminError> {
    spec.check(server)?;
    let mut consumer = editable(store, client_id).await?;
    spec.apply(&mut consumer);
    check_record(&consumer)?;
    if new_secret && !consumer.confidential {
        return Err(AdminError::Usage("a public consumer has no secret to renew".into()));
    }
    let generate = new_secret || consumer.secret_hash.is_none();
    let secret = set_secret(store, &mut consumer, spec.secret.as_ref(), generate).await?;
    store.put_consumer(&consumer).await?;
    Ok(CreatedConsumer { consumer, secret })
}

/// Gives a confidential consumer its secret: the one `chosen` (stored as an
/// argon2 hash, not returned) or, when `generate`, a new one, returned to be
/// shown once. A public consumer takes none.
async fn set_secret(
    store: &dyn ServerStore,
    consumer: &mut ConsumerRecord,
    chosen: Option<&Secret>,
    generate: bool,
) -> Result<Option<Secret>, AdminError> {
    if let Some(chosen) = chosen {
        if !consumer.confidential {
            return Err(AdminError::Usage("a public consumer takes no secret".into()));
        }
        if chosen.expose().len() < MIN_CLIENT_SECRET_LEN {
            let message = format!("a client secret needs at least {MIN_CLIENT_SECRET_LEN} characters");
            return Err(AdminError::Usage(message));
        }
        consumer.secret_hash = Some(hash(chosen).await?);
        return Ok(None);
    }
    if !(consumer.confidential && generate) {
        return Ok(None);
    }
    let (clear, hash) = Secrets::load(store).await?.generate();
    consumer.secret_hash = Some(hash);
    Ok(Some(Secret::new(clear)))
}

/// Deletes a CLI-made consumer and its tokens: its refresh tokens go, and
/// its access tokens are revoked (the gate refuses them within
/// `gate.revocation_interval`).
pub async fn delete_consumer(store: &dyn ServerStore, client_id: &str) -> Result<(), AdminError> {
    editable(store, client_id).await?;
    store.delete_consumer(client_id).await?;
    Ok(())
}

async fn editable(store: &dyn ServerStore, client_id: &str) -> Result<ConsumerRecord, AdminError> {
    let consumer = show_consumer(store, client_id).await?.0;
    if consumer.managed_by_config {
        return Err(AdminError::ConfigManaged(consumer.client_id));
    }
    Ok(consumer)
}

/// A consumer as the CLI prints it: every field but the secret hash.
#[derive(Debug)]
pub struct ConsumerView(pub ConsumerRecord);

/// The consumer with this `client_id`.
pub async fn show_consumer(store: &dyn ServerStore, client_id: &str) -> Result<ConsumerView, AdminError> {
    match store.consumer(client_id).await? {
        Some(c) => Ok(ConsumerView(c)),
        None => Err(AdminError::NotFound(format!("no consumer {client_id:?}"))),
    }
}

/// Every consumer, by `client_id`.
pub async fn list_consumers(store: &dyn ServerStore) -> Result<Vec<ConsumerView>, AdminError> {
    Ok(store.consumers().await?.into_iter().map(ConsumerView).collect())
}

impl ConsumerView {
    /// How the consumer's secret is kept: none, generated (a keyed hash) or
    /// set by hand (an argon2 hash). Never the secret or its hash.
    pub fn secret_kind(&self) -> &'static str {
        match self.0.secret_hash.as_deref() {
            None => "none",
            Some(h) if h.starts_with(HMAC_PREFIX) => "generated (stored as a keyed hash)",
            Some(_) => "set by hand (stored as an argon2 hash)",
        }
    }
}

// --- users ---

/// Reads a password: the first line of `file`, or of standard input.
pub fn read_password(file: Option<&Path>) -> Result<Secret, AdminError> {
    let mut line = String::new();
    let read = match file {
        Some(path) => std::fs::read_to_string(path).map(|text| {
            line = text.lines().next().unwrap_or_default().to_owned();
        }),
        None => std::io::stdin().lock().read_line(&mut line).map(drop),
    };
    read.map_err(|e| AdminError::Usage(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(AdminError::Usage("the password is empty (give it on standard input)".into()));
    }
    Ok(Secret::new(password))
}

async fn hash(password: &Secret) -> Result<String, AdminError> {
    password::hash_blocking(password.expose().to_owned())
        .await
        .map_err(|e| AdminError::Password(format!("cannot hash the password: {e}")))
}

/// Adds a user; refuses an existing username.
pub async fn add_user(
    store: &dyn ServerStore,
    server: &ServerConfig,
    username: &str,
    password: &Secret,
    roles: Vec<String>,
    admin: bool,
    permissions: Vec<String>,
) -> Result<(), AdminError> {
    if username.trim().is_empty() {
        return Err(AdminError::Usage("a user needs a name".into()));
    }
    check_roles(server, roles.iter())?;
    check_permissions(&permissions)?;
    if store.user(username).await?.is_some() {
        return Err(AdminError::Exists(format!("user {username:?} exists already")));
    }
    let password_hash = hash(password).await?;
    let user = UserRecord {
        username: username.to_owned(),
        password_hash,
        roles,
        admin: admin || !permissions.is_empty(),
        permissions: permissions_for(admin, permissions),
        disabled: false,
    };
    Ok(store.put_user(&user).await?)
}

/// The permissions an admin gets: those named, else `administer oauth`.
pub fn permissions_for(admin: bool, permissions: Vec<String>) -> Vec<String> {
    if admin && permissions.is_empty() { vec![ADMINISTER_OAUTH.to_owned()] } else { permissions }
}

/// Refuses a permission name the admin pages do not know.
pub fn check_permissions(permissions: &[String]) -> Result<(), AdminError> {
    match permissions.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        Some(p) => Err(AdminError::Usage(format!(
            "unknown permission {p:?}; known: {}",
            PERMISSIONS.map(|k| format!("{k:?}")).join(", ")
        ))),
        None => Ok(()),
    }
}

async fn user(store: &dyn ServerStore, username: &str) -> Result<UserRecord, AdminError> {
    store.user(username).await?.ok_or_else(|| AdminError::NotFound(format!("no user {username:?}")))
}

/// What changes about a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    /// The roles, replacing the old ones (each one of `server.roles`).
    pub roles: Option<Vec<String>>,
    /// The admin permissions, replacing the old ones; none: no longer an admin.
    pub permissions: Option<Vec<String>>,
    /// Disabled (a disabled user gets no token) or enabled again.
    pub disabled: Option<bool>,
    /// A new password (hashed with argon2).
    pub password: Option<Secret>,
}

/// Applies `change` to a user in one write; nothing is written when a role
/// or permission is unknown. `server` is read only for `change.roles`.
/// Disabling the user or setting a new password also ends their sign-in
/// sessions and refresh families and revokes their access tokens
/// ([`ServerStore::end_user_grants`]).
pub async fn change_user(
    store: &dyn ServerStore,
    server: &ServerConfig,
    username: &str,
    change: UserChange,
) -> Result<(), AdminError> {
    if let Some(roles) = &change.roles {
        check_roles(server, roles.iter())?;
    }
    if let Some(permissions) = &change.permissions {
        check_permissions(permissions)?;
    }
    let mut u = user(store, username).await?;
    if let Some(roles) = change.roles {
        u.roles = roles;
    }
    if let Some(permissions) = change.permissions {
        u.admin = !permissions.is_empty();
        u.permissions = permissions;
    }
    if let Some(disabled) = change.disabled {
        u.disabled = disabled;
    }
    if let Some(password) = &change.password {
        u.password_hash = hash(password).await?;
    }
    store.put_user(&u).await?;
    // A disabled user, or one whose password was reset (perhaps because it
    // leaked), keeps nothing issued before: sessions, refresh families and
    // access tokens end now.
    if change.disabled == Some(true) || change.password.is_some() {
        store.end_user_grants(username).await?;
    }
    Ok(())
}

/// Ends every sign-in session of a user ("sign out everywhere"), queuing a
/// back-channel logout for each consumer that got an ID token in one
/// ([`ServerStore::end_user_sessions`]); a running server delivers them
/// within [`super::backchannel::POLL`].
pub async fn sign_out_everywhere(store: &dyn ServerStore, username: &str) -> Result<(), AdminError> {
    user(store, username).await?;
    store.end_user_sessions(username).await?;
    Ok(())
}

/// Every user, by username (the CLI never prints their password hash).
pub async fn list_users(store: &dyn ServerStore) -> Result<Vec<UserRecord>, AdminError> {
    Ok(store.users().await?)
}

/// Deletes a user with their sessions, codes and refresh tokens. A user
/// that a consumer's `client_credentials` acts as (`user_id`) is kept until
/// that consumer is changed, so no consumer is left acting as nobody.
pub async fn delete_user(store: &dyn ServerStore, username: &str) -> Result<(), AdminError> {
    user(store, username).await?;
    let acting: Vec<String> = store
        .consumers()
        .await?
        .into_iter()
        .filter(|c| c.user_id.as_deref() == Some(username))
        .map(|c| c.client_id)
        .collect();
    if !acting.is_empty() {
        return Err(AdminError::Usage(format!(
            "consumer {} acts as {username} (user_id): change or delete it first",
            acting.join(", ")
        )));
    }
    store.delete_user(username).await?;
    Ok(())
}

// --- signing keys ---

/// Adds a signing key of `alg` (`EdDSA` or `RS256`); returns its `kid`. A
/// running sidecar signs with it once it reloads its keys (within
/// `server.keys_reload_interval`, see [`super::key_reload`]).
pub async fn rotate_key(store: &dyn ServerStore, alg: &str) -> Result<String, AdminError> {
    let alg: Alg = alg.parse().map_err(|e: super::keys::UnknownAlg| AdminError::Usage(e.to_string()))?;
    Ok(KeyRing::rotate(store, alg).await?)
}

/// A signing key as `keys list` shows it (never its private part).
#[derive(Debug)]
pub struct KeySummary {
    /// The key id tokens name in their header.
    pub kid: String,
    /// `EdDSA` or `RS256`.
    pub alg: &'static str,
    /// When it was made (Unix time).
    pub created_at: i64,
    /// `active` (signing), `published` (verifying tokens signed before a
    /// rotation) or `retired`.
    pub state: &'static str,
}

/// Every signing key, oldest first, with its state.
pub async fn list_keys(
    store: &dyn ServerStore,
    server: &ServerConfig,
) -> Result<Vec<KeySummary>, AdminError> {
    let ring = KeyRing::load(store, Duration::from_secs(longest_ttl(server))).await?;
    let now = clock::now();
    Ok(ring
        .keys()
        .iter()
        .map(|k| {
            let state = if ring.active(k.alg()).is_some_and(|a| a.kid() == k.kid()) {
                "active"
            } else if k.is_published_at(now) {
                "published"
            } else {
                "retired"
            };
            KeySummary { kid: k.kid().to_owned(), alg: k.alg().as_str(), created_at: k.created_at(), state }
        })
        .collect())
}

/// The longest access token lifetime (seconds), for which old keys stay
/// published. Per-consumer lifetimes come from the file only: the CLI sets
/// none.
pub(crate) fn longest_ttl(server: &ServerConfig) -> u64 {
    server
        .consumers
        .iter()
        .filter_map(|c| c.access_token_ttl.map(|d| d.0.as_secs()))
        .fold(server.access_token_ttl.0.as_secs(), u64::max)
}
