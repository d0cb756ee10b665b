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
//!
//! [`BearerGateLayer::spawn_follow`] keeps the cache in step with a store
//! that announces changes (several replicas on PostgreSQL): revocations
//! and key rotations made by another process are seen within moments
//! instead of `revocation_interval`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::{GateError, RefusalBody};
use super::identity::Identity;
use super::introspect::Introspector;
use super::jwk::JwsAlg;
use super::jwks::{IssuerKeys, KeySource, http_client};
use super::origin::RequestOrigin;
use super::rules::{Access, CompiledRule, PathError, RouteRules, canonical_path};
use super::settings::{GateBuildError, GateSettings, OriginCheck};
use super::token::{Found, ReplayBody, find_token, read_form_token, token_text};
use super::verify::{Issuer, LastToken, Quick, Validator, ValidatorParts, short_typ};
use crate::store::{StoreChange, StoreChanges};

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
        let rules = RouteRules::compile(&settings.rules, settings.default)?.path_case(settings.path_case);
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

    /// The `realm` of the gate's `WWW-Authenticate` challenges.
    pub fn realm(&self) -> &str {
        &self.shared.realm
    }

    /// Reads every issuer's keys once, so the first tokens do not wait for
    /// them; failures are logged and retried on demand. Needs a Tokio
    /// runtime (reqwest).
    pub async fn prefetch_keys(&self) {
        for issuer in self.shared.validator.issuers() {
            issuer.keys.read(issuer.keys.generation()).await;
        }
    }

    /// Follows the announcements of the store that holds the revocation
    /// list and the in-process keys: a revoked `jti` is asked about again on
    /// its token's next use, a key change lets in-process keys be read again
    /// at once, [`StoreChange::Everything`] does both for every token. Ends
    /// with the announcements, or when the gate is dropped. Needs a Tokio
    /// runtime.
    pub fn spawn_follow(&self, mut changes: StoreChanges) -> tokio::task::JoinHandle<()> {
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            while let Some(batch) = changes.next_batch().await {
                let Some(shared) = shared.upgrade() else { return };
                let marked = shared.validator.apply(&batch);
                if marked > 0 {
                    tracing::debug!(tokens = marked, "revocations announced by the store; asking again");
                }
                if batch.iter().any(|c| matches!(c, StoreChange::SigningKeys | StoreChange::Everything)) {
                    for issuer in shared.validator.issuers().iter().filter(|i| i.keys.in_process()) {
                        issuer.keys.forget_reads();
                    }
                }
            }
        })
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

impl Shared {
    /// Logs a refusal: the rule, the reason, the token's client and `jti`
    /// at most, never the token.
    fn refuse(&self, rule: &str, error: &GateError, identity: Option<&Identity>) {
        crate::ops::trace::record_gate(rule, Some(error));
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

    /// The rule deciding `req`, judged on its canonical path, which then
    /// becomes the request's path: the upstream gets the path the rules
    /// judged.
    fn find<'r, B>(&'r self, req: &mut Request<B>) -> Result<&'r CompiledRule, GateError> {
        let refused = |e: PathError| GateError::InvalidRequest(format!("{e}"));
        if let Some(path) = canonical_path(req.uri().path()).map_err(refused)? {
            set_path(req, &path)?;
        }
        self.rules.find(req.method(), req.uri().path()).map_err(refused)
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
            Access::Public => {
                crate::ops::trace::record_gate(rule.label(), None);
                if let Some(token) = &rule.upstream_token {
                    req.extensions_mut().insert(token.clone());
                }
                return Decision::Pass;
            }
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
        crate::ops::trace::record_gate(rule.label(), None);
        req.extensions_mut().insert(identity);
        if let Some(token) = &rule.upstream_token {
            req.extensions_mut().insert(token.clone());
        }
        Ok(())
    }

    /// The async step: form body, verification, revocation answer.
    async fn authorize<B: ReplayBody>(self: Arc<Self>, mut req: Request<B>) -> Result<Request<B>, GateError> {
        let rule = self.find(&mut req)?;
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

/// Replaces the path of `req`'s URI, keeping its query.
fn set_path<B>(req: &mut Request<B>, path: &str) -> Result<(), GateError> {
    let bad = |_| GateError::InvalidRequest("the canonical path is not a valid URI".into());
    let mut parts = req.uri().clone().into_parts();
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    parts.path_and_query =
        Some(path_and_query.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|e| bad(e.to_string()))?;
    Ok(())
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
