//! The store: everything the sidecar keeps across restarts, behind one
//! [`Store`] trait so that the OAuth roles do not care which database holds it.
//!
//! SQLite ([`SqliteStore`]) is the embedded default: one file, created with its
//! folder on first start, migrations embedded in the binary and applied at
//! start. PostgreSQL ([`PostgresStore`]) is for several replicas sharing one
//! database. The trait speaks only in plain Rust types, so neither backend
//! leaks through; the same test suite runs against both.
//!
//! Processes sharing a PostgreSQL store learn of each other's changes
//! through [`Store::changes`] ([`change`]), so their caches stay close to the
//! store; SQLite has one process and no announcements.

pub mod change;
mod client_model;
pub mod copy;
mod migration;
mod model;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::StoreUrl;

pub use change::{StoreChange, StoreChanges};
pub use client_model::{ClientRegistrationRecord, ClientStateRecord, ProviderTokenRecord};
pub use migration::Migration;
pub use model::{
    ADMINISTER_OAUTH, AdminTokenRecord, AuthCodeRecord, CodeRedemption, ConsumerRecord, MANAGE_SECRETS,
    PERMISSIONS, RefreshGrace, RefreshRotation, RefreshTokenRecord, SessionRecord, SigningKeyRecord,
    UserRecord,
};
pub use postgres::{
    CHANGES_CHANNEL, LISTENER_APPLICATION_NAME, PostgresOptions, PostgresStore,
    migrations as postgres_migrations, redacted_url,
};
pub use sqlite::{SqliteStore, migrations};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or created.
    #[error("cannot open the store at {location}: {reason}")]
    Open {
        /// Where the store was looked for (a file path, never a password).
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A migration failed; nothing of it was applied.
    #[error("migration {version} ({description}) failed: {reason}; the store was left as it was")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// Its description (file name without the number).
        description: String,
        /// What the database said.
        reason: String,
    },
    /// The store holds migrations this binary does not know: it was written by
    /// a newer version.
    #[error(
        "the store was migrated by a newer oauth-sidecar (it has migration {0}, unknown to this version)"
    )]
    TooNew(i64),
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(String),
}

/// What the sidecar keeps across restarts. The OAuth roles add their
/// operations here, each backend implements them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for logs and readiness output (`sqlite`).
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve queries; used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Versions of the migrations applied to this store, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError>;

    /// Closes the connections cleanly (for SQLite, checkpoints the WAL).
    async fn close(&self);

    /// A subscription to the changes any process sharing this store makes
    /// to what caches hold (see [`change`]), when the backend announces them
    /// (PostgreSQL); `None` when caches have only their periodic re-reads
    /// (SQLite). Call inside a Tokio runtime.
    fn changes(&self) -> Option<StoreChanges> {
        None
    }

    // --- server-wide values ---

    /// Stores `value` under `key` unless the key exists; returns the value
    /// that is stored afterwards (so concurrent first starts agree).
    async fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;

    // --- consumers ---

    /// Creates the consumer, or replaces the one with the same `client_id`.
    async fn put_consumer(&self, consumer: &ConsumerRecord) -> Result<(), StoreError>;
    /// The consumer with this `client_id`.
    async fn consumer(&self, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError>;
    /// Every consumer, ordered by `client_id`.
    async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError>;
    /// Deletes a consumer and its codes and refresh tokens; false when absent.
    async fn delete_consumer(&self, client_id: &str) -> Result<bool, StoreError>;

    // --- users ---

    /// Creates the user, or replaces the one with the same username.
    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// The user with this username.
    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, ordered by username.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;

    // --- signing keys ---

    /// Adds a signing key.
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Adds `key` unless a key of the same algorithm is stored; true when it
    /// was added. The check and the insert are one step for every process
    /// sharing the store, so replicas starting together on an empty store
    /// create one first key per algorithm.
    async fn add_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError>;

    // --- authorization codes ---

    /// Stores a new authorization code.
    async fn add_auth_code(&self, code: &AuthCodeRecord) -> Result<(), StoreError>;
    /// Redeems a code once, atomically: the first call gets it, later calls
    /// learn what was issued from it. Expired codes are still reported, the
    /// caller checks `expires_at`.
    async fn redeem_auth_code(&self, code_hash: &str) -> Result<CodeRedemption, StoreError>;
    /// Records what the first redemption of a code issued, so a reuse can
    /// revoke it.
    async fn record_code_issue(
        &self,
        code_hash: &str,
        family_id: Option<&str>,
        access_jti: &str,
        access_exp: i64,
    ) -> Result<(), StoreError>;

    // --- refresh tokens ---

    /// Stores a new refresh token (a new family, or a rotation's successor).
    async fn add_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError>;
    /// Rotates a refresh token atomically: exactly one concurrent caller gets
    /// `Rotated` and its successor `next` is stored; a token rotated before
    /// revokes its family (unless that rotation left a grace entry, see
    /// [`Store::rotate_refresh_token_with_grace`]). `now` decides expiry.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        now: i64,
    ) -> Result<RefreshRotation, StoreError> {
        self.rotate_refresh_token_with_grace(token_hash, next, None, now).await
    }
    /// [`Store::rotate_refresh_token`], keeping `grace` for a retry when the
    /// rotation happens. A token rotated before answers `Retry` with the
    /// grace entry its rotation left, if that entry has not expired at `now`
    /// and the successor it names is still current; otherwise its family is
    /// revoked (`Reused`). A rotation drops the grace entry whose successor
    /// is the presented token, and every expired one.
    async fn rotate_refresh_token_with_grace(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        grace: Option<&RefreshGrace>,
        now: i64,
    ) -> Result<RefreshRotation, StoreError>;
    /// The current refresh token with this hash (not rotated, not revoked,
    /// not expired at `now`).
    async fn refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Revokes every token of a family (and drops their grace entries).
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError>;

    // --- login sessions ---

    /// Stores a login session under the hash of its cookie value.
    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session with this hash, if it has not expired at `now`.
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session.
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Moves a session's end to `expires_at` (idle timeouts slide it).
    async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<(), StoreError>;

    // --- the admin API ---

    /// Stores a new admin API token.
    async fn add_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError>;
    /// The admin API token with this hash.
    async fn admin_token(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError>;
    /// Every admin API token, oldest first.
    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError>;
    /// Deletes the admin API token with this id; false when absent.
    async fn delete_admin_token(&self, id: &str) -> Result<bool, StoreError>;
    /// The current refresh token of every grant (not rotated, not revoked,
    /// not expired at `now`), ordered by consumer, user and expiry: what
    /// the admin pages list as grants.
    async fn current_refresh_tokens(&self, now: i64) -> Result<Vec<RefreshTokenRecord>, StoreError>;

    // --- access token revocation ---

    /// Adds an access token id to the revocation list until its `exp`.
    async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), StoreError>;
    /// True when the access token id was revoked.
    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Deletes expired codes, tokens and revocation entries; returns how many.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;

    // --- the OAuth client role ---

    /// Creates or replaces a client registration (CLI-made).
    async fn put_client_registration(&self, client: &ClientRegistrationRecord) -> Result<(), StoreError>;
    /// Every stored client registration, ordered by name.
    async fn client_registrations(&self) -> Result<Vec<ClientRegistrationRecord>, StoreError>;
    /// Deletes a client registration with its tokens; false when absent.
    async fn delete_client_registration(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a provider token, replacing the one with the same client and
    /// tag; returns its id.
    async fn save_provider_token(&self, token: &ProviderTokenRecord) -> Result<i64, StoreError>;
    /// The provider token with this id.
    async fn provider_token(&self, id: i64) -> Result<Option<ProviderTokenRecord>, StoreError>;
    /// The provider token of a client and tag.
    async fn provider_token_by_tag(
        &self,
        client: &str,
        tag: &str,
    ) -> Result<Option<ProviderTokenRecord>, StoreError>;
    /// Every provider token, oldest first.
    async fn provider_tokens(&self) -> Result<Vec<ProviderTokenRecord>, StoreError>;
    /// Deletes a provider token; false when absent.
    async fn delete_provider_token(&self, id: i64) -> Result<bool, StoreError>;
    /// Sets a provider token's status and last error.
    async fn set_provider_token_status(
        &self,
        id: i64,
        status: &str,
        last_error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Takes the refresh lease of provider token `id` for `holder` until
    /// `until`, unless another holder's lease lasts past `now`; true when
    /// taken (or already held by `holder`). Of several processes sharing the
    /// store, one refreshes a token at a time.
    async fn lease_provider_token(
        &self,
        id: i64,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Gives back `holder`'s lease of provider token `id` (nothing if
    /// another holds it).
    async fn release_provider_token(&self, id: i64, holder: &str) -> Result<(), StoreError>;
    /// Stores a started authorization.
    async fn add_client_state(&self, state: &ClientStateRecord) -> Result<(), StoreError>;
    /// Removes and returns a started authorization (one use), expired or not.
    async fn take_client_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<ClientStateRecord>, StoreError>;
}

/// The stored form of an opaque token (refresh token, code, session id,
/// admin API token, OAuth client state): SHA-256, base64url. Tokens are
/// random and long, so a plain digest is enough; only the digest is stored.
pub fn token_hash(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
}

/// Opens the store a configuration names, applying pending migrations, with
/// the default pool size; see [`open_with`].
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, PostgresOptions::default()).await
}

/// Opens the store a configuration names, applying pending migrations; a
/// PostgreSQL store connects with `options` (SQLite ignores them).
pub async fn open_with(url: &StoreUrl, options: PostgresOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        StoreUrl::Postgres(secret) => Ok(Arc::new(PostgresStore::open(secret.expose(), options).await?)),
    }
}
