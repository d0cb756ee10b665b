//! The records of the OAuth client role, in plain Rust types. Every secret
//! field holds ciphertext made by the client role (the store never sees a
//! token or a client secret in clear); times are Unix seconds.

/// A client registration made with the CLI.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRegistrationRecord {
    /// A machine name.
    pub name: String,
    /// The provider's name.
    pub provider: String,
    /// Shown to people.
    pub label: String,
    /// The client ID the provider issued.
    pub client_id: String,
    /// The client secret, encrypted.
    pub client_secret: Option<Vec<u8>>,
    /// The tenant, for `{tenant}` in the provider's URLs.
    pub tenant: Option<String>,
    /// Scopes instead of the provider's defaults.
    pub scopes: Option<Vec<String>>,
    /// When it was made.
    pub created_at: i64,
}

/// A token from a provider, one per client and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderTokenRecord {
    /// Assigned by the store; 0 before the first save.
    pub id: i64,
    /// The client registration's name.
    pub client: String,
    /// What the token is for (e.g. the mailbox); unique per client.
    pub tag: String,
    /// The grant that produced it.
    pub grant_type: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Usually `Bearer`.
    pub token_type: String,
    /// The access token, encrypted.
    pub access_token: Vec<u8>,
    /// The refresh token, encrypted.
    pub refresh_token: Option<Vec<u8>>,
    /// When the access token expires, if the provider said.
    pub expires_at: Option<i64>,
    /// The resource owner's id.
    pub owner_id: Option<String>,
    /// The resource owner's name.
    pub owner_name: Option<String>,
    /// The resource owner's email.
    pub owner_email: Option<String>,
    /// The provider's token response (JSON), encrypted.
    pub raw: Vec<u8>,
    /// `ok`, or `needs_reauthorization` after a refresh was refused.
    pub status: String,
    /// The last refresh error, if any.
    pub last_error: Option<String>,
    /// When it was first stored.
    pub created_at: i64,
    /// When it was last changed.
    pub updated_at: i64,
}

/// An authorization started at `/oauth/start`, waiting for the return.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientStateRecord {
    /// SHA-256 of the `state` parameter.
    pub state_hash: String,
    /// The client registration's name.
    pub client: String,
    /// SHA-256 of the browser-binding cookie.
    pub browser_hash: String,
    /// The PKCE verifier, encrypted.
    pub verifier: Vec<u8>,
    /// The OpenID nonce.
    pub nonce: String,
    /// The tag asked for, if any.
    pub tag: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Where to send the browser afterwards (a path on this site).
    pub return_to: Option<String>,
    /// When it stops being valid.
    pub expires_at: i64,
}

macro_rules! redacted_debug {
    ($ty:ty, $($field:ident),*) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))$(.field(stringify!($field), &self.$field))*.finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(ClientRegistrationRecord, name, provider, label, client_id, tenant, scopes);
redacted_debug!(ProviderTokenRecord, id, client, tag, grant_type, scopes, expires_at, status, last_error);
redacted_debug!(ClientStateRecord, client, tag, expires_at);
