//! The bearer gate's settings as plain data: what [`BearerGateLayer`]
//! is built from, with no YAML involved. The sidecar fills them from the
//! `gate:` section ([`super::GateLayers::from_config`]).
//!
//! [`BearerGateLayer`]: super::BearerGateLayer

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::introspect::IntrospectionSettings;
use super::jwk::JwsAlg;
use super::jwks::KeySource;
use super::origin::{Origin, OriginIndex};
use super::rules::{DefaultPolicy, PathCase, RouteRule, RuleError};
use super::verify::RevocationList;

/// An issuer whose access tokens the gate accepts.
#[derive(Clone)]
pub struct IssuerSettings {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// Where its keys come from.
    pub keys: KeySource,
    /// Accepted header `typ` values; empty: not checked. Default `at+jwt`.
    pub typ: Vec<String>,
    /// Its revocation list, if it has one the gate can read.
    pub revocation: Option<Arc<dyn RevocationList>>,
    /// Its `sub` is a username when it differs from the `client_id` (true
    /// for the local authorization server).
    pub username_from_subject: bool,
}

impl fmt::Debug for IssuerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("typ", &self.typ)
            .field("revocation", &self.revocation.is_some())
            .finish()
    }
}

impl IssuerSettings {
    /// An issuer whose keys are found by discovery, tokens typed `at+jwt`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        IssuerSettings {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: KeySource::Discover,
            typ: vec!["at+jwt".into()],
            revocation: None,
            username_from_subject: false,
        }
    }

    /// Reads the keys from this JWKS URL instead of discovering it.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.keys = KeySource::JwksUri(uri.into());
        self
    }

    /// Takes the keys from a JWKS produced in this process.
    pub fn in_process(mut self, jwks: impl Fn() -> serde_json::Value + Send + Sync + 'static) -> Self {
        self.keys = KeySource::InProcess(Arc::new(jwks));
        self
    }

    /// Accepts these header `typ` values (empty: any).
    pub fn typ<I: IntoIterator<Item = S>, S: Into<String>>(mut self, typ: I) -> Self {
        self.typ = typ.into_iter().map(Into::into).collect();
        self
    }

    /// Checks tokens against this revocation list.
    pub fn revocation(mut self, list: Arc<dyn RevocationList>) -> Self {
        self.revocation = Some(list);
        self
    }
}

/// The origin check: a token used from a browser origin must come from an
/// origin its consumer allows.
#[derive(Debug, Clone)]
pub struct OriginCheck {
    /// Which consumer allows which origin.
    pub index: OriginIndex,
    /// The public URL's origin: requests from it are same-origin and pass.
    pub same_origin: Option<Origin>,
}

/// Everything [`BearerGateLayer`](super::BearerGateLayer) needs, as plain data.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Ordered route rules; the first match wins.
    pub rules: Vec<RouteRule>,
    /// What happens to requests no rule matches.
    pub default: DefaultPolicy,
    /// Whether rule literals match in any ASCII case (for upstreams that
    /// ignore case).
    pub path_case: PathCase,
    /// The trusted issuers.
    pub issuers: Vec<IssuerSettings>,
    /// Accepted algorithms; empty: every one of [`JwsAlg::ALL`].
    pub algorithms: Vec<JwsAlg>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The `realm` of `WWW-Authenticate`.
    pub realm: String,
    /// Verified tokens kept at most.
    pub token_cache_capacity: u64,
    /// A verified token is kept until its `exp`, or at most this long.
    pub token_cache_max_ttl: Duration,
    /// A revoked token is refused at most this long after its revocation.
    pub revocation_interval: Duration,
    /// Keys older than this are read again.
    pub jwks_refresh: Duration,
    /// An unknown `kid` makes the gate read the keys again at most once per
    /// this interval; also the wait after a failed read.
    pub jwks_min_interval: Duration,
    /// Time allowed for outbound requests (JWKS, discovery, introspection).
    pub fetch_timeout: Duration,
    /// Introspection for opaque tokens.
    pub introspection: Option<IntrospectionSettings>,
    /// The origin check; `None`: origins are not looked at.
    pub origins: Option<OriginCheck>,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            rules: Vec::new(),
            default: DefaultPolicy::Deny,
            path_case: PathCase::Sensitive,
            issuers: Vec::new(),
            algorithms: Vec::new(),
            leeway: Duration::from_secs(30),
            realm: "oauth-sidecar".into(),
            token_cache_capacity: 100_000,
            token_cache_max_ttl: Duration::from_secs(300),
            revocation_interval: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(10),
            introspection: None,
            origins: None,
        }
    }
}

impl GateSettings {
    /// Appends a rule.
    pub fn rule(mut self, rule: RouteRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets what happens to requests no rule matches.
    pub fn default_policy(mut self, default: DefaultPolicy) -> Self {
        self.default = default;
        self
    }

    /// Trusts an issuer.
    pub fn issuer(mut self, issuer: IssuerSettings) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Sets the realm.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Checks origins against the consumers' `allowed_origins`.
    pub fn origins(mut self, check: OriginCheck) -> Self {
        self.origins = Some(check);
        self
    }
}

/// Why a gate could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GateBuildError {
    /// A rule does not compile.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The outbound HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// An issuer is listed twice.
    #[error("issuer {0:?} is listed twice")]
    DuplicateIssuer(String),
}
