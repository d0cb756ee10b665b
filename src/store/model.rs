//! The records the authorization server keeps, in plain Rust types so that
//! every backend can hold them. Secrets, codes and refresh tokens appear
//! only as hashes; times are Unix seconds.

/// An OAuth client (farmOS "consumer"), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The `client_id`: a machine name, or a UUID v4 when none was given.
    pub client_id: String,
    /// A label to identify the integration.
    pub label: String,
    /// The secret's hash (`hmac-sha256:...` for generated secrets,
    /// `$argon2id$...` for secrets set by hand); `None` without a secret.
    pub secret_hash: Option<String>,
    /// Whether the secret is validated.
    pub confidential: bool,
    /// The user `client_credentials` acts as.
    pub user_id: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Origins allowed to make CORS requests.
    pub allowed_origins: Vec<String>,
    /// Third-party consumers show the consent page.
    pub third_party: bool,
    /// The consumer's roles.
    pub scopes: Vec<String>,
    /// Grant types the consumer may use.
    pub grant_types: Vec<String>,
    /// Access token lifetime in seconds, overriding the server's.
    pub access_token_ttl: Option<u64>,
    /// Refresh token lifetime in seconds, overriding the server's.
    pub refresh_token_ttl: Option<u64>,
    /// farmOS: always grant the authorizing user's roles.
    pub grant_user_access: bool,
    /// farmOS: grant only the requested scopes.
    pub limit_requested_access: bool,
    /// farmOS: never grant more than the user has.
    pub limit_user_access: bool,
    /// Created or updated from the YAML file at start (not by the CLI).
    pub managed_by_config: bool,
    /// Exact URIs the browser may be sent to after RP-initiated logout.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout tokens are posted, if anywhere.
    pub backchannel_logout_uri: Option<String>,
}

/// The admin permissions a user record may hold: the names the file's
/// `server.users[].permissions` uses.
pub use crate::config::server::{ADMINISTER_OAUTH, MANAGE_SECRETS, PERMISSIONS};

/// A local user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name.
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// May sign in to the admin pages and start provider authorizations.
    pub admin: bool,
    /// What the user may do there: `administer oauth`, `manage oauth client secrets`.
    pub permissions: Vec<String>,
    /// Refused at login and for every grant.
    pub disabled: bool,
}

impl UserRecord {
    /// True when the user is an enabled admin holding `permission`.
    pub fn may(&self, permission: &str) -> bool {
        self.admin && !self.disabled && self.permissions.iter().any(|p| p == permission)
    }
}

/// An admin API token, as stored: only the SHA-256 of the token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRecord {
    /// A short public id, shown in listings and used to delete the token.
    pub id: String,
    /// What the token is for, as its creator said.
    pub label: String,
    /// SHA-256 of the token, base64url.
    pub token_hash: String,
    /// The admin permissions the token carries.
    pub permissions: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A token-signing key pair, as stored. Its `Debug` leaves the private key out.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id, the JWT header's `kid`.
    pub kid: String,
    /// JWS algorithm: `EdDSA` or `RS256`.
    pub alg: String,
    /// The private key, PKCS#8 DER.
    pub private_der: Vec<u8>,
    /// When it was created.
    pub created_at: i64,
}

/// An authorization code, stored until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The consumer it was issued to.
    pub client_id: String,
    /// The user who authorized it.
    pub username: String,
    /// The redirect URI it was issued for.
    pub redirect_uri: String,
    /// The granted roles, space-separated.
    pub scope: String,
    /// PKCE S256 challenge, when given.
    pub code_challenge: Option<String>,
    /// OIDC nonce, when given.
    pub nonce: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// When the code stops being valid.
    pub expires_at: i64,
    /// The sign-in session it came from (the ID token's `sid`).
    pub sid: Option<String>,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code, now marked used.
    Fresh(AuthCodeRecord),
    /// The code was used before: the refresh family and access token ids
    /// issued from it, to be revoked.
    Reused {
        /// The refresh-token family issued from the first use, if any.
        family_id: Option<String>,
        /// Access token `jti`s issued from the first use, with their `exp`.
        access_jtis: Vec<(String, i64)>,
    },
    /// No such code.
    Unknown,
}

/// A refresh token, stored as a hash, one link in a rotation family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// All tokens rotated from one grant share a family.
    pub family_id: String,
    /// The consumer it belongs to.
    pub client_id: String,
    /// The user it acts for.
    pub username: Option<String>,
    /// The granted roles, space-separated.
    pub scope: String,
    /// When the user authenticated (for ID tokens).
    pub auth_time: Option<i64>,
    /// When it stops being valid.
    pub expires_at: i64,
    /// The `jti` and `exp` of the access token issued with it, revoked
    /// with its family.
    pub access: Option<(String, i64)>,
    /// The sign-in session of its grant (the ID token's `sid`).
    pub sid: Option<String>,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was current: it is now rotated out and the successor stored
    /// in its family; carries the presented token's record.
    Rotated(RefreshTokenRecord),
    /// The token was already rotated: its whole family is now revoked.
    Reused,
    /// The token was rotated within its grace window, and what that rotation
    /// issued is still current: nothing changed, and the caller gets the
    /// [`RefreshGrace::sealed`] response the rotation left.
    Retry {
        /// The presented (rotated) token's record.
        presented: RefreshTokenRecord,
        /// The rotation's sealed response.
        sealed: Vec<u8>,
    },
    /// No such token, revoked, or expired.
    Invalid,
}

/// What a rotation leaves for a retry with the same token within the grace
/// window (`server.refresh_reuse_grace`): the response it answered, sealed so
/// that only the holder of the rotated token can open it. The store keeps it
/// until `expires_at`, or until the successor is rotated or the family
/// revoked, whichever comes first.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshGrace {
    /// The sealed response (an AEAD nonce and ciphertext, opaque to the store).
    pub sealed: Vec<u8>,
    /// Until when a retry may get it (Unix seconds, exclusive).
    pub expires_at: i64,
}

impl std::fmt::Debug for RefreshGrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshGrace")
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A browser's login session at the authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie's value.
    pub id_hash: String,
    /// The sign-in that made it, where alone it counts: `oauth` (the
    /// `/oauth/` pages) or `admin` (the admin pages).
    pub kind: String,
    /// The logged-in user.
    pub username: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// When the session ends.
    pub expires_at: i64,
}

/// A back-channel logout token still to deliver: the consumer, and the
/// ended session (its `sid`) and user it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackchannelLogoutRecord {
    /// The ended session's `sid`.
    pub sid: String,
    /// The consumer to tell.
    pub client_id: String,
    /// The session's user, the token's `sub`.
    pub username: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (Unix seconds).
    pub next_attempt: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_der", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}
