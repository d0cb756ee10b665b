//! What each part of the sidecar asks of the store, one trait per role, so
//! that a role takes only what it uses and a test double for one role is
//! small. [`Store`] is their union: every backend has all of them, and an
//! `Arc<dyn Store>` turns into any narrower `Arc<dyn ...Store>` by itself.
//!
//! ```text
//! StoreBase          backend, ping, close, migrations, changes, server-wide values
//! ├── GateStore      consumers (their origins), the access-token revocation list
//! ├── SignInStore    users by name, login sessions, sign-in through providers
//! ├── ServerStore    (GateStore + SignInStore) consumers, users, keys, codes, refresh tokens
//! ├── ClientStore    client registrations, provider tokens, started authorizations
//! └── AdminStore     (ServerStore + ClientStore) admin API tokens, the grant listing
//! ```
//!
//! The traits speak only in plain Rust types, so no database type leaks
//! through; calling a method needs its trait in scope.

use async_trait::async_trait;

use super::{
    AdminTokenRecord, AuthCodeRecord, BackchannelLogoutRecord, ClientRegistrationRecord, ClientStateRecord,
    CodeRedemption, ConsumerRecord, FederatedIdentityRecord, LoginStateRecord, ProviderTokenRecord,
    RefreshGrace, RefreshRotation, RefreshTokenRecord, SessionRecord, SigningKeyRecord, StoreChanges,
    StoreError, UserRecord,
};

/// What every user of the store needs: which backend, whether it answers,
/// its migrations, its change announcements and the server-wide values.
#[async_trait]
pub trait StoreBase: Send + Sync + 'static {
    /// The backend's name for logs and readiness output (`sqlite`).
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve queries; used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Versions of the migrations applied to this store, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError>;

    /// Closes the connections cleanly (for SQLite, checkpoints the WAL).
    async fn close(&self);

    /// A subscription to the changes any process sharing this store makes
    /// to what caches hold (see [`change`](super::change)), when the backend
    /// announces them (PostgreSQL); `None` when caches have only their
    /// periodic re-reads (SQLite). Call inside a Tokio runtime.
    fn changes(&self) -> Option<StoreChanges> {
        None
    }

    /// Stores `value` under `key` unless the key exists; returns the value
    /// that is stored afterwards (so concurrent first starts agree).
    async fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// What the resource gate reads: the consumers (for their allowed origins)
/// and the access-token revocation list.
#[async_trait]
pub trait GateStore: StoreBase {
    /// Every consumer, ordered by `client_id`.
    async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError>;
    /// True when the access token id was revoked.
    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
}

/// What signing in needs, wherever it happens (`/oauth/authorize`,
/// `/oauth/start`, the admin pages): users by name and login sessions.
#[async_trait]
pub trait SignInStore: StoreBase {
    /// The user with this username.
    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Stores a login session under the hash of its cookie value.
    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session of `kind` with this hash, if it has not expired at `now`
    /// (a session of another kind is not found).
    async fn session(&self, id_hash: &str, kind: &str, now: i64)
    -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session.
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Moves a session's end to `expires_at` (idle timeouts slide it).
    async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Stores a sign-in started at an outside provider.
    async fn add_login_state(&self, state: &LoginStateRecord) -> Result<(), StoreError>;
    /// Removes and returns a started sign-in (one use), expired or not.
    async fn take_login_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<LoginStateRecord>, StoreError>;
    /// The local user linked to a provider's account.
    async fn federated_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<FederatedIdentityRecord>, StoreError>;
    /// Records a sign-in through a provider, in one transaction: the user
    /// is created (`create`) or gets `user`'s roles, admin flag and
    /// permissions; the link is created or updated.
    async fn save_federated_sign_in(
        &self,
        user: &UserRecord,
        create: bool,
        identity: &FederatedIdentityRecord,
    ) -> Result<(), StoreError>;
    /// Every link to a provider's account, ordered by username.
    async fn federated_identities(&self) -> Result<Vec<FederatedIdentityRecord>, StoreError>;
}

/// What the authorization server keeps: consumers, users, signing keys,
/// authorization codes, refresh tokens and revocations.
#[async_trait]
pub trait ServerStore: GateStore + SignInStore {
    /// Creates the consumer, or replaces the one with the same `client_id`.
    async fn put_consumer(&self, consumer: &ConsumerRecord) -> Result<(), StoreError>;
    /// The consumer with this `client_id`.
    async fn consumer(&self, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError>;
    /// Deletes a consumer and its codes and refresh tokens, and revokes its
    /// access tokens; false when absent.
    async fn delete_consumer(&self, client_id: &str) -> Result<bool, StoreError>;

    /// Creates the user, or replaces the one with the same username.
    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Every user, ordered by username.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes a user with their login sessions, authorization codes and
    /// refresh tokens, and revokes their access tokens; false when there was
    /// no such user.
    async fn delete_user(&self, username: &str) -> Result<bool, StoreError>;

    /// Adds a signing key.
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Adds `key` unless a key of the same algorithm is stored; true when it
    /// was added. The check and the insert are one step for every process
    /// sharing the store, so replicas starting together on an empty store
    /// create one first key per algorithm.
    async fn add_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError>;

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

    /// Stores a new refresh token (a new family, or a rotation's successor).
    async fn add_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError>;
    /// Rotates a refresh token atomically: exactly one concurrent caller gets
    /// `Rotated` and its successor `next` is stored; a token rotated before
    /// revokes its family (unless that rotation left a grace entry, see
    /// [`ServerStore::rotate_refresh_token_with_grace`]). `now` decides expiry.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        now: i64,
    ) -> Result<RefreshRotation, StoreError> {
        self.rotate_refresh_token_with_grace(token_hash, next, None, now).await
    }
    /// [`ServerStore::rotate_refresh_token`], keeping `grace` for a retry
    /// when the rotation happens. A token rotated before answers `Retry`
    /// with the grace entry its rotation left, if that entry has not expired
    /// at `now` and the successor it names is still current; otherwise its
    /// family is revoked (`Reused`). A rotation drops the grace entry whose
    /// successor is the presented token, and every expired one.
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

    /// Records an issued access token (its `jti` and `exp`, the consumer it
    /// was issued to and the user it acts for) until it expires, so that
    /// [`ServerStore::delete_consumer`] and [`ServerStore::end_user_grants`]
    /// can revoke it.
    async fn record_access_token(
        &self,
        jti: &str,
        client_id: &str,
        username: Option<&str>,
        exp: i64,
    ) -> Result<(), StoreError>;
    /// Ends everything a user was granted, in one transaction: their sign-in
    /// sessions, their refresh-token families, and their access tokens (on
    /// the revocation list); for a disabled user or a new password. Each
    /// consumer that got an ID token in one of the sessions is queued for a
    /// back-channel logout.
    async fn end_user_grants(&self, username: &str) -> Result<(), StoreError>;

    /// Records that `client_id` got an ID token in the session `sid` of
    /// `username`, until `expires_at` (when the session ends anyway).
    async fn record_session_consumer(
        &self,
        sid: &str,
        client_id: &str,
        username: &str,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Ends one sign-in session (by the hash of its cookie value), queues
    /// a back-channel logout for each consumer with a `backchannel_logout_uri`
    /// that got an ID token in it (`sid`), and revokes the refresh token
    /// families granted in it without `offline_access` (with their access
    /// tokens), in one transaction.
    async fn end_session(&self, id_hash: &str, sid: &str) -> Result<(), StoreError>;
    /// Ends every sign-in session of a user (of every kind), revokes the
    /// refresh token families granted in them without `offline_access`, and
    /// queues their back-channel logouts, in one transaction ("sign out
    /// everywhere").
    async fn end_user_sessions(&self, username: &str) -> Result<(), StoreError>;
    /// Back-channel logouts due at `now`, the oldest due first, at most `limit`.
    async fn due_backchannel_logouts(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<BackchannelLogoutRecord>, StoreError>;
    /// Takes a due logout for one delivery attempt: counts the attempt and
    /// moves its next attempt to `next_attempt`, unless another process took
    /// it first (its `next_attempt` changed); true when taken.
    async fn claim_backchannel_logout(
        &self,
        logout: &BackchannelLogoutRecord,
        next_attempt: i64,
    ) -> Result<bool, StoreError>;
    /// Forgets a logout: delivered, or given up.
    async fn delete_backchannel_logout(&self, sid: &str, client_id: &str) -> Result<(), StoreError>;

    /// Adds an access token id to the revocation list until its `exp`.
    async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), StoreError>;
    /// Deletes expired codes, tokens and revocation entries; returns how many.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;
}

/// What the OAuth client role keeps: client registrations, provider tokens
/// (ciphertext) with their refresh leases, and started authorizations.
#[async_trait]
pub trait ClientStore: StoreBase {
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

/// What the admin pages and API keep beside what they administer: admin
/// API tokens and the listing of current grants.
#[async_trait]
pub trait AdminStore: ServerStore + ClientStore {
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
}

/// Everything the sidecar keeps across restarts: the union of the role
/// traits, which every backend implements. Code that uses one role takes
/// that role's trait instead.
pub trait Store: AdminStore {}

impl<T: AdminStore + ?Sized> Store for T {}
