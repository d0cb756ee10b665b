//! Records of sign-in through outside providers (`server.login.providers`).

use serde::{Deserialize, Serialize};

/// A sign-in started at a provider, waiting for its return (one use).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginStateRecord {
    /// SHA-256 of the `state` parameter.
    pub state_hash: String,
    /// SHA-256 of the browser-binding cookie.
    pub browser_hash: String,
    /// What the return needs, as JSON (holds the PKCE verifier).
    pub data: String,
    /// When it stops being valid, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for LoginStateRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStateRecord").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Which rule gave a role at the last sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSource {
    /// The role, or `admin` for the admin pages.
    pub role: String,
    /// The rule, in words (`google: groups has managers`).
    pub source: String,
}

/// A local user's link to a provider's account (provider name, `sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentityRecord {
    /// The `server.login.providers` entry's name.
    pub provider: String,
    /// The ID token's `sub`.
    pub subject: String,
    /// The linked local user.
    pub username: String,
    /// The email the provider gave at the last sign-in.
    pub email: Option<String>,
    /// Where each of the user's roles came from at the last sign-in.
    pub role_sources: Vec<RoleSource>,
    /// When the user last signed in this way, Unix seconds.
    pub last_sign_in: i64,
}
