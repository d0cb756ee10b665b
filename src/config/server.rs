//! The `server:` section: the authorization server (farmOS model), its
//! roles, declarative consumers and seed users.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;
use super::types::{At, Duration, HttpUrl};

/// The admin permission for everything on the admin pages and API except
/// provider secrets.
pub const ADMINISTER_OAUTH: &str = "administer oauth";
/// The admin permission to see raw provider tokens and new client secrets.
pub const MANAGE_SECRETS: &str = "manage oauth client secrets";

/// The shortest client secret an operator may choose (in the file or with
/// `consumer create --secret-file`); generated secrets are longer.
pub const MIN_CLIENT_SECRET_LEN: usize = 16;
/// Every admin permission, in the order the pages show them.
pub const PERMISSIONS: [&str; 2] = [ADMINISTER_OAUTH, MANAGE_SECRETS];

/// Grant types a consumer may list in `grant_types`.
pub const GRANT_TYPES: [&str; 4] = ["authorization_code", "refresh_token", "client_credentials", "password"];

/// Scopes that are not roles but are accepted in requests (OpenID Connect).
pub const NON_ROLE_SCOPES: [&str; 4] = ["openid", "offline_access", "profile", "email"];

/// The longest `refresh_reuse_grace` accepted: a retry after a lost response
/// comes within seconds, and a long window only widens a stolen token's use.
pub const REFRESH_REUSE_GRACE_MAX: Duration = Duration::secs(300);

/// The default `refresh_reuse_grace`: long enough for two tabs refreshing
/// at once and for a client's retry after a lost response (both come within
/// a few seconds, and a token request is answered well within one), short
/// enough that a stolen, already rotated token is of use only in the
/// seconds after the rotation, and only until the new pair is used.
pub const REFRESH_REUSE_GRACE_DEFAULT: Duration = Duration::secs(10);

/// The authorization server; absent means the sidecar issues no tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The `iss` of every token; default: the public URL.
    pub issuer: Option<At<HttpUrl>>,
    /// Access token lifetime, unless the consumer overrides it.
    pub access_token_ttl: At<Duration>,
    /// Refresh token lifetime, unless the consumer overrides it.
    pub refresh_token_ttl: At<Duration>,
    /// How long after a refresh token's rotation a retry with that same token
    /// (its response was lost) gets the same new pair instead of revoking the
    /// family (RFC 9700 section 4.14.2); default [`REFRESH_REUSE_GRACE_DEFAULT`],
    /// `0s` turns it off.
    pub refresh_reuse_grace: At<Duration>,
    /// Authorization code lifetime; at most 10 minutes (RFC 6749 section 4.1.2).
    pub code_ttl: At<Duration>,
    /// Login session lifetime at the authorization server.
    pub session_ttl: Duration,
    /// Signing algorithm of access tokens: `EdDSA` or `RS256`.
    pub access_token_alg: At<String>,
    /// Signing algorithm of ID tokens: `RS256` or `EdDSA`.
    pub id_token_alg: At<String>,
    /// How often the running server reloads the signing keys from the store,
    /// so that `oauth-sidecar keys rotate` takes effect without a restart;
    /// `0s` reloads only when a token names an unknown key.
    pub keys_reload_interval: Duration,
    /// The role every token gets (farmOS `authenticated`).
    pub base_role: String,
    /// Failed sign-ins allowed per account within `login_window`.
    pub login_attempts: u32,
    /// Failed sign-ins allowed per client address within `login_window`
    /// (higher: many users may share one address).
    pub login_attempts_per_address: u32,
    /// The window for the two limits above.
    pub login_window: Duration,
    /// Which consumers must use PKCE at `/oauth/authorize`: `public` ones
    /// only (the default, for legacy confidential clients), or `all`
    /// (OAuth 2.1). A consumer's own `require_pkce` overrides it.
    pub require_pkce: RequirePkce,
    /// A folder of templates (`login.html`, `consent.html`, `error.html`)
    /// replacing the built-in pages.
    pub templates_dir: Option<At<PathBuf>>,
    /// Roles (scopes) with the label and description shown on the consent page.
    pub roles: BTreeMap<String, RoleConfig>,
    /// Consumers created or updated at start, marked as managed by this file.
    pub consumers: Vec<ConsumerConfig>,
    /// Users created at start when missing (normally the CLI manages users).
    pub users: Vec<UserConfig>,
    /// How people sign in: the password form and outside providers.
    pub login: super::login::LoginConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            issuer: None,
            access_token_ttl: At::default_value(Duration::secs(3600)),
            refresh_token_ttl: At::default_value(Duration::secs(14 * 86_400)),
            refresh_reuse_grace: At::default_value(REFRESH_REUSE_GRACE_DEFAULT),
            code_ttl: At::default_value(Duration::secs(60)),
            session_ttl: Duration::secs(8 * 3600),
            access_token_alg: At::default_value("EdDSA".to_owned()),
            id_token_alg: At::default_value("RS256".to_owned()),
            keys_reload_interval: Duration::secs(60),
            base_role: "authenticated".to_owned(),
            login_attempts: 5,
            login_attempts_per_address: 50,
            login_window: Duration::secs(900),
            require_pkce: RequirePkce::Public,
            templates_dir: None,
            roles: BTreeMap::new(),
            consumers: Vec::new(),
            users: Vec::new(),
            login: super::login::LoginConfig::default(),
        }
    }
}

/// Which consumers must use PKCE (`server.require_pkce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequirePkce {
    /// Every consumer, as OAuth 2.1 says.
    All,
    /// Public consumers only; confidential ones may leave it out.
    #[default]
    Public,
}

/// A role: a scope a consumer can be granted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// Short name on the consent page.
    pub label: String,
    /// What the role allows, on the consent page.
    pub description: String,
}

/// A consumer (OAuth client) declared in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// A machine name; required in the file so that restarts update the same consumer.
    pub client_id: At<String>,
    /// A label identifying the integration.
    pub label: String,
    /// The client secret (set by hand: stored as an argon2 hash).
    pub secret: Option<At<Secret>>,
    /// A file holding the client secret.
    pub secret_file: Option<At<PathBuf>>,
    /// Whether the secret is validated (farmOS); public clients must use PKCE.
    pub confidential: bool,
    /// Whether this consumer must use PKCE, overriding `server.require_pkce`
    /// (`false` is refused for a public consumer).
    pub require_pkce: Option<bool>,
    /// The user `client_credentials` acts as.
    pub user_id: Option<String>,
    /// Exact redirect URIs for the authorization code grant.
    pub redirect_uris: Vec<At<String>>,
    /// Origins allowed to call the API from a browser (CORS).
    pub allowed_origins: Vec<String>,
    /// Third-party consumers show the consent page; first-party ones skip it.
    pub third_party: bool,
    /// The consumer's roles.
    pub scopes: Vec<At<String>>,
    /// Grants the consumer may use.
    pub grant_types: Vec<At<String>>,
    /// Overrides `server.access_token_ttl`.
    pub access_token_ttl: Option<Duration>,
    /// Overrides `server.refresh_token_ttl`.
    pub refresh_token_ttl: Option<Duration>,
    /// farmOS: always grant the authorizing user's roles.
    pub grant_user_access: bool,
    /// farmOS: grant only the requested scopes.
    pub limit_requested_access: bool,
    /// farmOS: never grant more than the authorizing user has.
    pub limit_user_access: bool,
    /// Exact URIs the browser may be sent to after OpenID Connect
    /// RP-initiated logout (`post_logout_redirect_uri`).
    pub post_logout_redirect_uris: Vec<At<String>>,
    /// Where OpenID Connect back-channel logout tokens are posted when a
    /// session in which this consumer got an ID token ends.
    pub backchannel_logout_uri: Option<At<String>>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client_id: At::default_value(String::new()),
            label: String::new(),
            secret: None,
            secret_file: None,
            confidential: true,
            require_pkce: None,
            user_id: None,
            redirect_uris: Vec::new(),
            allowed_origins: Vec::new(),
            third_party: true,
            scopes: Vec::new(),
            grant_types: vec![
                At::default_value("authorization_code".to_owned()),
                At::default_value("refresh_token".to_owned()),
            ],
            access_token_ttl: None,
            refresh_token_ttl: None,
            grant_user_access: false,
            limit_requested_access: false,
            limit_user_access: false,
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
        }
    }
}

/// A user created at start when it does not exist yet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// The login name.
    pub username: At<String>,
    /// The password (hashed with argon2 before it is stored).
    pub password: Option<At<Secret>>,
    /// A file holding the password.
    pub password_file: Option<At<PathBuf>>,
    /// The user's roles.
    pub roles: Vec<At<String>>,
    /// May use the admin API and pages.
    pub admin: bool,
    /// Admin permissions (`administer oauth`, `manage oauth client
    /// secrets`); an admin without any gets `administer oauth`.
    pub permissions: Vec<At<String>>,
}

/// Checks the `server:` section and reads its `*_file` secrets into place.
pub(super) fn validate(server: &mut ServerConfig, p: &mut super::validate::Problems<'_>) {
    if *server.code_ttl > Duration::secs(600) {
        p.error(
            server.code_ttl.location,
            "server.code_ttl",
            "authorization codes may live 10 minutes at most",
        );
    }
    for (alg, path) in
        [(&server.access_token_alg, "server.access_token_alg"), (&server.id_token_alg, "server.id_token_alg")]
    {
        if !matches!(alg.value.as_str(), "EdDSA" | "RS256") {
            p.error(
                alg.location,
                path,
                format!("`{}` is not a signing algorithm here: expected `EdDSA` or `RS256`", alg.value),
            );
        }
    }
    if *server.refresh_reuse_grace > REFRESH_REUSE_GRACE_MAX {
        p.error(
            server.refresh_reuse_grace.location,
            "server.refresh_reuse_grace",
            "the refresh grace window is for a retry after a lost response: at most 5 minutes",
        );
    }
    if server.base_role.trim().is_empty() {
        p.error(serde_saphyr::Location::UNKNOWN, "server.base_role", "the base role needs a name");
    }
    let roles: Vec<String> = server.roles.keys().cloned().collect();
    let known_role = |r: &str| roles.iter().any(|k| k == r);

    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in server.consumers.iter_mut().enumerate() {
        let at = |field: &str| format!("server.consumers[{i}].{field}");
        let id = &c.client_id;
        if id.value.is_empty() {
            p.error(
                id.location,
                &at("client_id"),
                "a consumer in the file needs a `client_id` (a machine name)",
            );
        } else if !id.value.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)) {
            p.error(
                id.location,
                &at("client_id"),
                format!("`{}` is not a machine name: use letters, digits, `_`, `.`, `-`", id.value),
            );
        } else if !seen.insert(id.value.clone()) {
            p.error(id.location, &at("client_id"), format!("`{}` is declared twice", id.value));
        }
        secret_from_file(&mut c.secret, &c.secret_file, &at("secret"), &at("secret_file"), p);
        if let Some(secret) = &c.secret
            && secret.value.expose().len() < MIN_CLIENT_SECRET_LEN
        {
            let message = format!("a client secret needs at least {MIN_CLIENT_SECRET_LEN} characters");
            p.error(secret.location, &at("secret"), message);
        }
        let has_secret = c.secret.is_some() || c.secret_file.is_some();
        if c.confidential && !has_secret {
            p.error(
                id.location,
                &at("secret"),
                "a confidential consumer needs `secret` or `secret_file` (or `confidential: false`)",
            );
        }
        if c.require_pkce == Some(false) && !c.confidential {
            p.error(id.location, &at("require_pkce"), "a public consumer always needs PKCE");
        }
        for scope in &c.scopes {
            if !known_role(&scope.value) {
                p.error(
                    scope.location,
                    &at("scopes"),
                    format!("`{}` is not a role declared in server.roles", scope.value),
                );
            }
        }
        let grants: Vec<&str> = c.grant_types.iter().map(|g| g.value.as_str()).collect();
        for g in &c.grant_types {
            if !GRANT_TYPES.contains(&g.value.as_str()) {
                p.error(
                    g.location,
                    &at("grant_types"),
                    format!("`{}` is not a grant type: expected one of {}", g.value, GRANT_TYPES.join(", ")),
                );
            } else if g.value == "client_credentials" && !c.confidential {
                p.error(
                    g.location,
                    &at("grant_types"),
                    "a public consumer (`confidential: false`) may not use client_credentials",
                );
            } else if g.value == "client_credentials" && c.user_id.is_none() {
                p.warn(
                    g.location,
                    &at("user_id"),
                    "client_credentials without `user_id` acts as no user: its tokens get no roles",
                );
            } else if g.value == "password" {
                p.warn(g.location, &at("grant_types"), "the password grant must not be used (RFC 9700 section 2.4); keep it only for legacy clients");
            }
        }
        if grants.contains(&"authorization_code") && c.redirect_uris.is_empty() {
            p.error(
                id.location,
                &at("redirect_uris"),
                "the authorization_code grant needs at least one redirect URI",
            );
        }
        for uri in &c.redirect_uris {
            if let Err(e) = check_redirect_uri(&uri.value) {
                p.error(uri.location, &at("redirect_uris"), e);
            }
        }
        for uri in &c.post_logout_redirect_uris {
            if let Err(e) = check_redirect_uri(&uri.value) {
                p.error(uri.location, &at("post_logout_redirect_uris"), e);
            }
        }
        if let Some(uri) = &c.backchannel_logout_uri
            && let Err(e) = check_backchannel_logout_uri(&uri.value)
        {
            p.error(uri.location, &at("backchannel_logout_uri"), e);
        }
    }

    let mut seen = std::collections::BTreeSet::new();
    for (i, u) in server.users.iter_mut().enumerate() {
        let at = |field: &str| format!("server.users[{i}].{field}");
        if u.username.value.trim().is_empty() {
            p.error(u.username.location, &at("username"), "a user needs a `username`");
        } else if !seen.insert(u.username.value.clone()) {
            p.error(
                u.username.location,
                &at("username"),
                format!("`{}` is declared twice", u.username.value),
            );
        }
        secret_from_file(&mut u.password, &u.password_file, &at("password"), &at("password_file"), p);
        if u.password.is_none() && u.password_file.is_none() {
            p.error(
                u.username.location,
                &at("password"),
                "a user in the file needs `password` or `password_file`",
            );
        }
        for role in &u.roles {
            if !known_role(&role.value) {
                p.error(
                    role.location,
                    &at("roles"),
                    format!("`{}` is not a role declared in server.roles", role.value),
                );
            }
        }
        for permission in &u.permissions {
            if !PERMISSIONS.contains(&permission.value.as_str()) {
                p.error(
                    permission.location,
                    &at("permissions"),
                    format!(
                        "`{}` is not an admin permission (`administer oauth`, `manage oauth client secrets`)",
                        permission.value
                    ),
                );
            }
        }
    }
}

/// Reads a `*_file` secret into its field; giving both is an error.
pub(super) fn secret_from_file(
    value: &mut Option<At<Secret>>,
    file: &Option<At<PathBuf>>,
    field: &str,
    file_field: &str,
    p: &mut super::validate::Problems<'_>,
) {
    let Some(file) = file else { return };
    if value.is_some() {
        let name = field.rsplit('.').next().unwrap_or(field);
        p.error(file.location, file_field, format!("give either `{name}` or `{name}_file`, not both"));
        return;
    }
    match super::read_secret_file(&file.value) {
        Ok(secret) => *value = Some(At { value: secret, location: file.location }),
        Err(e) => p.error(file.location, file_field, format!("cannot read {}: {e}", file.value.display())),
    }
}

/// A redirect URI must be absolute, without a fragment (RFC 6749 section 3.1.2).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("`{uri}` is not a URI ({e})"))?;
    if parsed.scheme().is_none() || parsed.authority().is_none() && parsed.scheme_str() != Some("urn") {
        return Err(format!("`{uri}` is not an absolute URI"));
    }
    if uri.contains('#') {
        return Err(format!("`{uri}` has a fragment, which a redirect URI may not have"));
    }
    Ok(())
}

/// Checks a consumer's `backchannel_logout_uri`: an absolute `http` or
/// `https` URL without a fragment (OpenID Connect Back-Channel Logout 1.0
/// section 2.2).
pub fn check_backchannel_logout_uri(uri: &str) -> Result<(), String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("`{uri}` is not a URI ({e})"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.authority().is_none() {
        return Err(format!("`{uri}` is not an absolute http or https URL"));
    }
    if uri.contains('#') {
        return Err(format!("`{uri}` has a fragment, which a back-channel logout URI may not have"));
    }
    Ok(())
}
