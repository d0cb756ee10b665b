//! The `gate:` section: the resource gate in front of the upstream app
//! (bearer tokens, route rules, per-consumer CORS, identity headers).
//!
//! These are the YAML structs; the gate turns them into its plain settings
//! (`gate::configure`), reporting bad rules at their line and column and
//! warning about rules an earlier rule shadows. What is checked here needs
//! no knowledge of the gate: issuer URLs, timings, secret files.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;
use super::types::{At, Duration, HttpUrl, RoutePath};

/// What happens to a request no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Refused with 403 (the default).
    #[default]
    Deny,
    /// Passed on without a token check.
    Allow,
    /// Passed on with any valid token, whatever its scopes.
    Authenticated,
}

/// How rule paths compare with request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PathCase {
    /// Exactly, byte for byte after decoding escapes (the default).
    #[default]
    Sensitive,
    /// In any ASCII case: for upstreams that serve `/API` as `/api`.
    Insensitive,
}

/// The resource gate; absent means every request is proxied unchecked
/// (identity headers sent by clients are still removed).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// What happens to requests no rule matches.
    pub default: DefaultPolicy,
    /// Ordered route rules; the first match wins.
    pub rules: Vec<RuleConfig>,
    /// Whether rules match paths in any ASCII case; `insensitive` for
    /// upstreams that ignore case.
    pub path_case: PathCase,
    /// Other issuers whose tokens are accepted, checked against their JWKS.
    pub issuers: Vec<IssuerConfig>,
    /// The `aud` expected in tokens of `issuers` that do not name their own
    /// audience; default: the public URL without a trailing slash.
    pub audience: Option<String>,
    /// JWS algorithms accepted; default: every asymmetric one supported.
    pub algorithms: Vec<At<String>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: At<Duration>,
    /// The `realm` of `WWW-Authenticate`; default: the public URL.
    pub realm: Option<String>,
    /// A token revoked at the authorization server is refused at most this
    /// long after its revocation.
    pub revocation_interval: At<Duration>,
    /// Verified tokens kept in memory.
    pub token_cache: TokenCacheConfig,
    /// Keys of a remote issuer older than this are fetched again.
    pub jwks_refresh: At<Duration>,
    /// A token naming an unknown key makes the gate fetch the issuer's JWKS
    /// again, at most once per this interval.
    pub jwks_min_interval: At<Duration>,
    /// Time allowed for a JWKS, discovery or introspection request.
    pub fetch_timeout: Duration,
    /// RFC 7662 introspection for opaque (non-JWT) tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// Headers set for the upstream on a passed request.
    pub identity_headers: IdentityHeadersConfig,
    /// Pass the client's `Authorization` header on to the upstream (true) or
    /// remove it (false).
    pub forward_authorization: bool,
    /// CORS answers for browser apps (origins come from the consumers).
    pub cors: CorsConfig,
    /// The forward-auth decision endpoint, for an ingress (nginx, Caddy,
    /// Traefik, Envoy) that proxies by itself and asks the gate first.
    pub forward_auth: ForwardAuthConfig,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            default: DefaultPolicy::Deny,
            rules: Vec::new(),
            path_case: PathCase::Sensitive,
            issuers: Vec::new(),
            audience: None,
            algorithms: Vec::new(),
            leeway: At::default_value(Duration::secs(30)),
            realm: None,
            revocation_interval: At::default_value(Duration::secs(5)),
            token_cache: TokenCacheConfig::default(),
            jwks_refresh: At::default_value(Duration::secs(300)),
            jwks_min_interval: At::default_value(Duration::secs(30)),
            fetch_timeout: Duration::secs(10),
            introspection: None,
            identity_headers: IdentityHeadersConfig::default(),
            forward_authorization: true,
            cors: CorsConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
        }
    }
}

/// The forward-auth decision endpoint (docs/forward-auth.md): the gate's
/// decision for a request another proxy describes, without proxying it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// Answer at `path` (off by default).
    pub enabled: bool,
    /// Where the endpoint answers; Envoy's `ext_authz` appends the original
    /// path to it (`{path}/api/x`).
    pub path: At<RoutePath>,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig { enabled: false, path: At::default_value(RoutePath::new("/oauth/check")) }
    }
}

/// One route rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Path pattern: literal segments, `{name}` for one segment, `**` as the
    /// last segment for any tail.
    pub path: At<String>,
    /// Methods the rule applies to; empty: all. `GET` also covers `HEAD`.
    pub methods: Vec<At<String>>,
    /// Scopes a token needs; without it (and without `public`) any valid
    /// token passes.
    pub scopes: Option<At<ScopesConfig>>,
    /// No token needed, none checked.
    pub public: bool,
    /// Also accept the token as `?access_token=` (RFC 6750 section 2.3).
    pub allow_query_token: bool,
    /// Also accept the token as a form-body `access_token` (RFC 6750 section 2.2).
    pub allow_form_token: bool,
    /// Send the upstream a provider token of the OAuth client role on this
    /// rule's requests, instead of the caller's `Authorization`.
    pub upstream_token: Option<At<UpstreamTokenConfig>>,
}

/// Which provider token a rule's requests carry to the upstream: the
/// client role's current token for (`client`, `tag`), in `header`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTokenConfig {
    /// The client registration (`client.clients[].name`).
    pub client: At<String>,
    /// The token's tag, fixed (`reports@example.org`, a service account)
    /// or a template of the caller (`{username}`, `{subject}`, `{client_id}`).
    pub tag: At<String>,
    /// The header that carries it; default `Authorization`.
    pub header: Option<At<String>>,
    /// The word before the token; default `Bearer`; empty: the token alone.
    pub scheme: Option<At<String>>,
}

/// Scopes a rule needs: one of `any_of` or `all_of`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopesConfig {
    /// At least one of these.
    pub any_of: Vec<String>,
    /// Every one of these.
    pub all_of: Vec<String>,
}

/// Another issuer whose access tokens the gate accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` of its tokens, exactly as they carry it.
    pub issuer: At<String>,
    /// Where its JWKS is; default: found by OpenID Connect discovery
    /// (`{issuer}/.well-known/openid-configuration`, then RFC 8414).
    #[serde(default)]
    pub jwks_uri: Option<At<HttpUrl>>,
    /// The `aud` its tokens must carry; default: `gate.audience`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Accepted JWT header `typ` values; default `[at+jwt]` (RFC 9068);
    /// an empty list leaves `typ` unchecked.
    #[serde(default)]
    pub typ: Option<Vec<String>>,
}

/// The verified-token cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenCacheConfig {
    /// Tokens kept at most.
    pub capacity: u64,
    /// A verified token is kept until its `exp`, or at most this long.
    pub max_ttl: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig { capacity: 100_000, max_ttl: Duration::secs(300) }
    }
}

/// RFC 7662 token introspection for opaque tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint.
    pub endpoint: At<HttpUrl>,
    /// The gate's client id at that endpoint (HTTP Basic).
    pub client_id: String,
    /// Its secret.
    #[serde(default)]
    pub client_secret: Option<At<Secret>>,
    /// A file holding the secret.
    #[serde(default)]
    pub client_secret_file: Option<At<PathBuf>>,
    /// An answer is kept until the token's `exp`, or at most this long.
    #[serde(default = "default_introspection_ttl")]
    pub max_ttl: Duration,
    /// The `aud` an answer must name when it names one; default:
    /// `gate.audience`.
    #[serde(default)]
    pub audience: Option<String>,
}

fn default_introspection_ttl() -> Duration {
    Duration::secs(60)
}

/// Names of the headers the upstream gets on a passed request.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityHeadersConfig {
    /// The token's `sub`.
    pub subject: At<String>,
    /// The consumer (`client_id`) the token was issued to.
    pub client: At<String>,
    /// The granted scopes, space-separated.
    pub scopes: At<String>,
    /// The user's name, when the token acts for a user.
    pub username: At<String>,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        IdentityHeadersConfig {
            subject: At::default_value("X-Auth-Subject".to_owned()),
            client: At::default_value("X-Auth-Client".to_owned()),
            scopes: At::default_value("X-Auth-Scopes".to_owned()),
            username: At::default_value("X-Auth-Username".to_owned()),
        }
    }
}

/// CORS for browser apps; allowed origins come from the consumers'
/// `allowed_origins`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// `Access-Control-Allow-Methods` of a preflight answer.
    pub allow_methods: Vec<At<String>>,
    /// `Access-Control-Allow-Headers` of a preflight answer.
    pub allow_headers: Vec<At<String>>,
    /// `Access-Control-Expose-Headers` of an actual answer.
    pub expose_headers: Vec<At<String>>,
    /// `Access-Control-Max-Age`: how long a browser may reuse a preflight answer.
    pub max_age: Duration,
    /// Send `Access-Control-Allow-Credentials: true` (cookies); the origin
    /// is always echoed exactly, never `*`.
    pub allow_credentials: bool,
    /// How often the consumers' origins are read again from the store.
    pub refresh: At<Duration>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| At::default_value((*s).to_owned())).collect();
        CorsConfig {
            allow_methods: list(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allow_headers: list(&["Authorization", "Content-Type", "Accept", "X-Requested-With"]),
            expose_headers: list(&["WWW-Authenticate"]),
            max_age: Duration::secs(600),
            allow_credentials: false,
            refresh: At::default_value(Duration::secs(10)),
        }
    }
}

/// Checks the `gate:` section's issuers and timings and reads its `*_file`
/// secret into place. Rules, algorithms and header names are checked where
/// they are converted, by the gate itself (`gate::configure`).
pub(super) fn validate(
    gate: &mut GateConfig,
    server: Option<&super::server::ServerConfig>,
    p: &mut super::validate::Problems<'_>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, issuer) in gate.issuers.iter().enumerate() {
        let value = &issuer.issuer.value;
        if let Err(e) = value.parse::<HttpUrl>() {
            p.error(issuer.issuer.location, &format!("gate.issuers[{i}].issuer"), e);
        } else if !seen.insert(value.clone()) {
            p.error(issuer.issuer.location, &format!("gate.issuers[{i}].issuer"), "listed twice");
        }
    }
    if let Some(server) = server
        && let Some(own) = &server.issuer
        && seen.contains(&own.value.base())
    {
        p.warn(
            own.location,
            "gate.issuers",
            "the local authorization server's issuer is checked in process; listing it is not needed",
        );
    }
    if server.is_none() && gate.issuers.is_empty() && gate.introspection.is_none() {
        let needs_token = gate.rules.iter().any(|r| !r.public) || gate.default != DefaultPolicy::Allow;
        if needs_token {
            p.warn(
                serde_saphyr::Location::UNKNOWN,
                "gate",
                "no `server:` section, no `gate.issuers` and no introspection: no token can pass the gate",
            );
        }
    }

    for (d, path) in [
        (&gate.revocation_interval, "gate.revocation_interval"),
        (&gate.jwks_refresh, "gate.jwks_refresh"),
        (&gate.cors.refresh, "gate.cors.refresh"),
    ] {
        if d.value.0.is_zero() {
            p.error(d.location, path, "must be longer than 0s");
        }
    }
    if *gate.jwks_min_interval > *gate.jwks_refresh {
        p.error(
            gate.jwks_min_interval.location,
            "gate.jwks_min_interval",
            format!(
                "gate.jwks_min_interval ({}) is longer than gate.jwks_refresh ({})",
                *gate.jwks_min_interval, *gate.jwks_refresh
            ),
        );
    }
    if *gate.leeway > Duration::secs(300) {
        p.warn(gate.leeway.location, "gate.leeway", "more than 5 minutes of clock skew is a long time");
    }

    if let Some(intro) = &mut gate.introspection {
        if let Some(file) = &intro.client_secret_file {
            if intro.client_secret.is_some() {
                p.error(
                    file.location,
                    "gate.introspection.client_secret_file",
                    "give either `client_secret` or `client_secret_file`, not both",
                );
            } else {
                match super::read_secret_file(&file.value) {
                    Ok(secret) => intro.client_secret = Some(At { value: secret, location: file.location }),
                    Err(e) => p.error(
                        file.location,
                        "gate.introspection.client_secret_file",
                        format!("cannot read {}: {e}", file.value.display()),
                    ),
                }
            }
        }
        if intro.client_secret.is_none() && intro.client_secret_file.is_none() {
            p.error(
                intro.endpoint.location,
                "gate.introspection.client_secret",
                "the introspection endpoint needs `client_secret` or `client_secret_file`",
            );
        }
    }
}
