//! [`BearerGateLayer`]: lets through only requests whose route rule is
//! satisfied, checking bearer tokens (RFC 6750) against trusted issuers.
//!
//! Per request: the route rule is found ([`super::rules`]); a public rule
//! passes at once. Otherwise the token is taken from the `Authorization:
//! Bearer` header, or, where the rule allows it, from the query string or a
//! form body; a request with tokens in two places, or with a query token
//! where none is accepted, is refused. The token is validated
//! ([`super::verify`]), its scopes compared with the rule, and, when an
//! origin check is configured, the request's `Origin` with the
//! `allowed_origins` of the token's consumer. A passed request carries the
//! [`Identity`] in its extensions (as `Arc<Identity>`).
//!
//! A token the cache knows is decided inside `call`, without boxing or
//! waiting; only a token that needs verification, introspection, a
//! revocation answer or a form body goes through an async step.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::{GateError, RefusalBody};
use super::identity::Identity;
use super::introspect::{IntrospectionSettings, Introspector};
use super::jwk::JwsAlg;
use super::jwks::{IssuerKeys, KeySource, http_client};
use super::origin::{Origin, OriginIndex, RequestOrigin};
use super::rules::{Access, CompiledRule, DefaultPolicy, RouteRule, RouteRules, RuleError};
use super::verify::{Issuer, LastToken, Quick, RevocationList, Validator, ValidatorParts, short_typ};

/// Largest form body read for an `access_token` (RFC 6750 section 2.2).
const MAX_FORM_BODY: usize = 64 << 10;

/// A request body the gate can put back after reading a form body for its
/// token. Implemented for axum's body and for `Either<B, Full<Bytes>>`
/// (the sidecar wraps hyper's body in the latter).
pub trait ReplayBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Sized
{
    /// A body holding `bytes`.
    fn replay(bytes: Bytes) -> Self;
}

impl ReplayBody for axum::body::Body {
    fn replay(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

impl<B> ReplayBody for http_body_util::Either<B, http_body_util::Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn replay(bytes: Bytes) -> Self {
        http_body_util::Either::Right(http_body_util::Full::new(bytes))
    }
}

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

/// Everything [`BearerGateLayer`] needs, as plain data.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Ordered route rules; the first match wins.
    pub rules: Vec<RouteRule>,
    /// What happens to requests no rule matches.
    pub default: DefaultPolicy,
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

/// What the gate's services share.
struct Shared {
    rules: RouteRules,
    validator: Validator,
    realm: Box<str>,
    origins: Option<OriginCheck>,
}

/// A Tower layer that checks bearer tokens and route rules (see the module
/// docs). Build it once; clones share caches and keys.
///
/// ```
/// use oauth_sidecar::gate::{BearerGateLayer, GateSettings, IssuerSettings};
/// use oauth_sidecar::gate::rules::{Access, RouteRule};
///
/// let gate = BearerGateLayer::new(
///     GateSettings::default()
///         .realm("farm")
///         .rule(RouteRule::public("/healthcheck"))
///         .rule(RouteRule::new("/api/**", Access::AnyOf(vec!["farm_viewer".into()])).methods(["GET"]))
///         .issuer(
///             IssuerSettings::new("https://auth.example.org", "https://farm.example.org")
///                 .jwks_uri("https://auth.example.org/.well-known/jwks.json"),
///         ),
/// )
/// .unwrap();
/// # drop(gate);
/// ```
#[derive(Clone)]
pub struct BearerGateLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for BearerGateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerGateLayer").field("realm", &self.shared.realm).finish_non_exhaustive()
    }
}

impl BearerGateLayer {
    /// Compiles the rules and sets up the issuers; no key is read yet (see
    /// [`BearerGateLayer::prefetch_keys`]).
    pub fn new(settings: GateSettings) -> Result<Self, GateBuildError> {
        let rules = RouteRules::compile(&settings.rules, settings.default)?;
        let client = http_client(settings.fetch_timeout).map_err(GateBuildError::Client)?;
        let mut issuers: Vec<Issuer> = Vec::with_capacity(settings.issuers.len());
        for i in settings.issuers {
            if issuers.iter().any(|known| known.issuer == i.issuer) {
                return Err(GateBuildError::DuplicateIssuer(i.issuer));
            }
            let (refresh, min_interval) = match i.keys {
                // Reading in process costs nothing: follow rotations quickly.
                KeySource::InProcess(_) => {
                    (settings.jwks_refresh.min(Duration::from_secs(60)), Duration::from_secs(1))
                }
                _ => (settings.jwks_refresh, settings.jwks_min_interval),
            };
            let keys = IssuerKeys::new(i.issuer.clone(), i.keys, client.clone(), refresh, min_interval);
            issuers.push(Issuer {
                issuer: i.issuer,
                audience: i.audience,
                typ: i.typ.iter().map(|t| short_typ(t)).collect(),
                keys: Arc::new(keys),
                revocation: i.revocation,
                username_from_subject: i.username_from_subject,
            });
        }
        let algorithms =
            if settings.algorithms.is_empty() { JwsAlg::ALL.to_vec() } else { settings.algorithms };
        let validator = Validator::new(ValidatorParts {
            issuers,
            algorithms,
            leeway: settings.leeway,
            cache_capacity: settings.token_cache_capacity,
            cache_max_ttl: settings.token_cache_max_ttl,
            revocation_interval: settings.revocation_interval,
            introspection: settings.introspection.map(|s| Introspector::new(s, client.clone())),
        });
        let shared =
            Shared { rules, validator, realm: settings.realm.into_boxed_str(), origins: settings.origins };
        Ok(BearerGateLayer { shared: Arc::new(shared) })
    }

    /// Reads every issuer's keys once, so the first tokens do not wait for
    /// them; failures are logged and retried on demand. Needs a Tokio
    /// runtime (reqwest).
    pub async fn prefetch_keys(&self) {
        for issuer in self.shared.validator.issuers() {
            issuer.keys.read(issuer.keys.generation()).await;
        }
    }
}

impl<S> Layer<S> for BearerGateLayer {
    type Service = BearerGate<S>;
    fn layer(&self, inner: S) -> BearerGate<S> {
        BearerGate { inner, shared: self.shared.clone(), last: None }
    }
}

/// The service [`BearerGateLayer`] builds.
#[derive(Clone)]
pub struct BearerGate<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The last token this service saw (one service per connection in the
    /// sidecar), so a repeat costs a comparison instead of a hash.
    last: Option<Arc<LastToken>>,
}

impl<S: fmt::Debug> fmt::Debug for BearerGate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerGate").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// How a request is decided without waiting.
enum Decision {
    Pass,
    Refuse(GateError),
    Slow,
}

/// Where the token is. Its bytes are not checked for RFC 6750 syntax
/// here: a token the cache knows was checked when it was first verified, so
/// the check ([`token_text`]) belongs to the async step.
enum Found<'a> {
    None,
    Token(Cow<'a, [u8]>),
    /// Maybe in the form body: needs the async step.
    MaybeForm,
}

impl Shared {
    /// Logs a refusal: the rule, the reason, the token's client and `jti`
    /// at most, never the token.
    fn refuse(&self, rule: &str, error: &GateError, identity: Option<&Identity>) {
        let client_id = identity.and_then(|i| i.client_id.as_deref()).unwrap_or("");
        let jti = identity.and_then(|i| i.jti.as_deref()).unwrap_or("");
        tracing::info!(
            rule,
            status = error.status().as_u16(),
            reason = %error,
            client_id,
            jti,
            "refused by the gate"
        );
    }

    fn find<'r, B>(&'r self, req: &Request<B>) -> Result<&'r CompiledRule, GateError> {
        self.rules.find(req.method(), req.uri().path()).map_err(|e| GateError::InvalidRequest(format!("{e}")))
    }

    fn decide<B>(&self, req: &mut Request<B>, last: &mut Option<Arc<LastToken>>) -> Decision {
        let rule = match self.find(req) {
            Ok(rule) => rule,
            Err(e) => {
                self.refuse("path", &e, None);
                return Decision::Refuse(e);
            }
        };
        match rule.access() {
            Access::Public => return Decision::Pass,
            Access::Deny => {
                self.refuse(rule.label(), &GateError::Denied, None);
                return Decision::Refuse(GateError::Denied);
            }
            _ => {}
        }
        let quick = match find_token(req, rule) {
            Err(e) => {
                self.refuse(rule.label(), &e, None);
                return Decision::Refuse(e);
            }
            Ok(Found::None) => {
                self.refuse(rule.label(), &GateError::MissingToken, None);
                return Decision::Refuse(GateError::MissingToken);
            }
            Ok(Found::MaybeForm) => return Decision::Slow,
            Ok(Found::Token(token)) => self.validator.quick(&token, last),
        };
        match quick {
            Quick::Slow => Decision::Slow,
            Quick::Refuse(e, identity) => {
                self.refuse(rule.label(), &e, Some(&identity));
                Decision::Refuse(e)
            }
            Quick::Pass(identity) => match self.admit(req, rule, identity) {
                Ok(()) => Decision::Pass,
                Err(e) => Decision::Refuse(e),
            },
        }
    }

    /// Scopes and origin; on success the identity goes into the request.
    fn admit<B>(
        &self,
        req: &mut Request<B>,
        rule: &CompiledRule,
        identity: Arc<Identity>,
    ) -> Result<(), GateError> {
        if !rule.scopes_satisfied(identity.sorted_scopes()) {
            let e = GateError::InsufficientScope { scope: rule.scope_param.to_string() };
            self.refuse(rule.label(), &e, Some(&identity));
            return Err(e);
        }
        if let Some(check) = &self.origins {
            let allowed = match RequestOrigin::of(req.headers(), check.same_origin.as_ref()) {
                RequestOrigin::SameOrNone => true,
                RequestOrigin::Bad => false,
                RequestOrigin::Cross(origin) => {
                    identity.client_id.as_deref().is_some_and(|c| check.index.allows(c, &origin))
                }
            };
            if !allowed {
                self.refuse(rule.label(), &GateError::OriginNotAllowed, Some(&identity));
                return Err(GateError::OriginNotAllowed);
            }
        }
        req.extensions_mut().insert(identity);
        Ok(())
    }

    /// The async step: form body, verification, revocation answer.
    async fn authorize<B: ReplayBody>(self: Arc<Self>, req: Request<B>) -> Result<Request<B>, GateError> {
        let rule = self.find(&req)?;
        let found = find_token(&req, rule).map_err(|e| self.refused(rule, e))?;
        let token = match found {
            Found::None => return Err(self.refused(rule, GateError::MissingToken)),
            Found::Token(token) => Some(token_text(&token).map_err(|e| self.refused(rule, e))?),
            Found::MaybeForm => None,
        };
        let (mut req, token) = match token {
            Some(token) => (req, token),
            None => match read_form_token(req).await.map_err(|e| self.refused(rule, e))? {
                (req, Some(token)) => (req, token),
                (_, None) => return Err(self.refused(rule, GateError::MissingToken)),
            },
        };
        let identity = match self.validator.validate(&token).await {
            Ok(identity) => identity,
            Err((e, identity)) => {
                self.refuse(rule.label(), &e, identity.as_deref());
                return Err(e);
            }
        };
        self.admit(&mut req, rule, identity)?;
        Ok(req)
    }

    fn refused(&self, rule: &CompiledRule, e: GateError) -> GateError {
        self.refuse(rule.label(), &e, None);
        e
    }
}

/// Finds the token as the module docs say, without allocating for a header
/// token.
fn find_token<'a, B>(req: &'a Request<B>, rule: &CompiledRule) -> Result<Found<'a>, GateError> {
    let header = bearer_header(req.headers())?;
    let query = match req.uri().query() {
        Some(q) if q.contains("access_token") => query_token(q)?,
        _ => None,
    };
    match (header, query) {
        (Some(_), Some(_)) => {
            Err(GateError::InvalidRequest("the request carries more than one token".into()))
        }
        (_, Some(_)) if !rule.allow_query_token => {
            Err(GateError::InvalidRequest("this route does not accept a token in the query string".into()))
        }
        (Some(token), None) => Ok(Found::Token(Cow::Borrowed(token))),
        (None, Some(token)) => Ok(Found::Token(match token {
            Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
            Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        })),
        (None, None) => {
            let form = rule.allow_form_token
                && !matches!(*req.method(), Method::GET | Method::HEAD)
                && req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
                    ct.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
                });
            Ok(if form { Found::MaybeForm } else { Found::None })
        }
    }
}

/// The `Authorization: Bearer` token's bytes; `None` without one (another
/// scheme counts as none).
fn bearer_header(headers: &http::HeaderMap) -> Result<Option<&[u8]>, GateError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GateError::InvalidRequest("the request has more than one Authorization header".into()));
    }
    let bytes = value.as_bytes();
    let Some(space) = bytes.iter().position(|&b| b == b' ') else { return Ok(None) };
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let mut token = &bytes[space + 1..];
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    while let [rest @ .., b' '] = token {
        token = rest;
    }
    if token.is_empty() {
        return Err(GateError::InvalidRequest("the bearer token is empty".into()));
    }
    Ok(Some(token))
}

/// The token as text, checked against RFC 6750 section 2.1:
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn token_text(token: &[u8]) -> Result<String, GateError> {
    let text = std::str::from_utf8(token).ok().filter(|t| check_b64token(t).is_ok());
    text.map(str::to_owned).ok_or_else(|| GateError::InvalidRequest("the bearer token is malformed".into()))
}

fn check_b64token(token: &str) -> Result<(), GateError> {
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
    {
        return Err(GateError::InvalidRequest("the bearer token is empty or malformed".into()));
    }
    Ok(())
}

/// The `access_token` query parameter (RFC 6750 section 2.3).
fn query_token(query: &str) -> Result<Option<Cow<'_, str>>, GateError> {
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(GateError::InvalidRequest("access_token is given more than once".into()));
        }
        found = Some(value);
    }
    let Some(raw) = found else { return Ok(None) };
    let token = if raw.contains(['%', '+']) {
        Cow::Owned(
            form_decode(raw)
                .ok_or_else(|| GateError::InvalidRequest("the access_token parameter is malformed".into()))?,
        )
    } else {
        Cow::Borrowed(raw)
    };
    check_b64token(&token)?;
    Ok(Some(token))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a form body (at most [`MAX_FORM_BODY`]) for its `access_token`,
/// and puts the body back.
async fn read_form_token<B: ReplayBody>(req: Request<B>) -> Result<(Request<B>, Option<String>), GateError> {
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::Limited::new(body, MAX_FORM_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GateError::TooLarge
            } else {
                GateError::InvalidRequest("the request body could not be read".into())
            }
        })?
        .to_bytes();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| GateError::InvalidRequest("the form body is not UTF-8".into()))?;
    let mut token = None;
    for pair in text.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(name).as_deref() != Some("access_token") {
            continue;
        }
        if token.is_some() {
            return Err(GateError::InvalidRequest("access_token is given more than once".into()));
        }
        let value = form_decode(value)
            .ok_or_else(|| GateError::InvalidRequest("the access_token parameter is malformed".into()))?;
        check_b64token(&value)?;
        token = Some(value);
    }
    Ok((Request::from_parts(parts, B::replay(bytes)), token))
}

type Authorizing<B> = Pin<Box<dyn Future<Output = Result<Request<B>, GateError>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for BearerGate<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    B: ReplayBody + Send + 'static,
    ResB: RefusalBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let state = match self.shared.decide(&mut req, &mut self.last) {
            Decision::Pass => State::Calling { fut: self.inner.call(req) },
            Decision::Refuse(e) => State::Refused { res: Some(e.into_response(&self.shared.realm)) },
            Decision::Slow => {
                // The ready service goes with the request; this one keeps a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let shared = self.shared.clone();
                State::Authorizing {
                    fut: Box::pin(shared.clone().authorize(req)),
                    inner: Some(inner),
                    shared,
                }
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// Response future of [`BearerGate`]: the inner service's future on
    /// the fast path, unboxed.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B, S::Response>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B, R> {
        Calling { #[pin] fut: F },
        Refused { res: Option<R> },
        Authorizing { fut: Authorizing<B>, inner: Option<S>, shared: Arc<Shared> },
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: RefusalBody,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => return fut.poll(cx),
                StateProj::Refused { res } => {
                    return Poll::Ready(Ok(res.take().expect("ResponseFuture polled after completion")));
                }
                StateProj::Authorizing { fut, inner, shared } => {
                    let result = ready!(fut.as_mut().poll(cx));
                    match result {
                        Ok(req) => {
                            let mut inner = inner.take().expect("ResponseFuture polled after completion");
                            let fut = inner.call(req);
                            this.state.set(State::Calling { fut });
                        }
                        Err(e) => {
                            let res = e.into_response(&shared.realm);
                            this.state.set(State::Refused { res: Some(res) });
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_come_from_the_header_only_when_well_formed() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_header(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_header(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "bearer  abc.def-_~+/== ".parse().unwrap());
        let token = bearer_header(&h).unwrap().unwrap();
        assert_eq!(token, b"abc.def-_~+/==");
        assert_eq!(token_text(token).unwrap(), "abc.def-_~+/==");
        assert!(token_text(b"a,b").is_err());
        assert!(token_text("caf\u{e9}".as_bytes()).is_err());
        h.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(bearer_header(&h).is_err());
        h.append(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(bearer_header(&h).is_err());
    }

    #[test]
    fn query_tokens_are_decoded_and_must_be_single() {
        assert_eq!(query_token("a=1&access_token=abc").unwrap().as_deref(), Some("abc"));
        assert_eq!(query_token("access_token=a%2Bb").unwrap().as_deref(), Some("a+b"));
        assert!(query_token("access_token=a&access_token=b").is_err());
        assert_eq!(query_token("my_access_token=a").unwrap(), None);
    }
}
