//! CORS per consumer: browser origins are allowed when a consumer lists
//! them in `allowed_origins` (farmOS), never with `*`.
//!
//! [`ConsumerCorsLayer`] stands in front of the bearer gate:
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   is answered here and never goes further: `204` with the exact origin,
//!   the allowed methods and headers, `Access-Control-Max-Age` and `Vary`
//!   when some consumer lists the origin (a preflight carries no token, so
//!   any consumer will do), else `403` without CORS headers.
//! - A request from a `null` or malformed origin is refused (`403`).
//! - Any other request goes on. Its answer gets CORS headers when some
//!   consumer lists its origin, unless the gate refused it because the
//!   token's own consumer does not (the gate checks that, knowing the
//!   token; see [`super::OriginCheck`]). So with a token, the token's
//!   consumer decides; without one (a public route), any consumer.
//! - Requests without `Origin`, or from the public URL's own origin, pass
//!   untouched.
//!
//! [`ClientCorsLayer`] does the same for the token endpoint, where there is
//! no bearer token but a `client_id` (in the Basic header or the form body):
//! that consumer's `allowed_origins` decide, and a request from an origin it
//! does not list is refused before the endpoint sees it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::{OriginRefused, RefusalBody};
use super::origin::{Origin, OriginIndex, RequestOrigin};

/// Largest token-endpoint body read for its `client_id`.
const MAX_CLIENT_BODY: usize = 64 << 10;

/// What the CORS answers say, as plain data.
#[derive(Debug, Clone)]
pub struct CorsSettings {
    /// `Access-Control-Allow-Methods` of a preflight answer.
    pub allow_methods: Vec<Method>,
    /// `Access-Control-Allow-Headers` of a preflight answer.
    pub allow_headers: Vec<HeaderName>,
    /// `Access-Control-Expose-Headers` of other answers.
    pub expose_headers: Vec<HeaderName>,
    /// `Access-Control-Max-Age`.
    pub max_age: Duration,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// The public URL's origin: requests from it are same-origin.
    pub same_origin: Option<Origin>,
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            allow_methods: vec![
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ],
            allow_headers: vec![
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("x-requested-with"),
            ],
            expose_headers: vec![header::WWW_AUTHENTICATE],
            max_age: Duration::from_secs(600),
            allow_credentials: false,
            same_origin: None,
        }
    }
}

/// A setting combination CORS does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// `*` in a header list: with credentials it is not a wildcard, and the
    /// gate always names what it allows.
    #[error("`*` is not allowed in {0}: name the headers")]
    Wildcard(&'static str),
    /// No method allowed.
    #[error("allow_methods is empty")]
    NoMethods,
}

/// The header values, joined once.
#[derive(Debug)]
struct Prepared {
    index: OriginIndex,
    same_origin: Option<Origin>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    allow_credentials: bool,
}

fn join<T: AsRef<str>>(items: &[T]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    let text = items.iter().map(|i| i.as_ref()).collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&text).ok()
}

impl Prepared {
    fn new(index: OriginIndex, settings: CorsSettings) -> Result<Self, CorsError> {
        if settings.allow_methods.is_empty() {
            return Err(CorsError::NoMethods);
        }
        if settings.allow_headers.iter().any(|h| h.as_str() == "*") {
            return Err(CorsError::Wildcard("allow_headers"));
        }
        if settings.expose_headers.iter().any(|h| h.as_str() == "*") {
            return Err(CorsError::Wildcard("expose_headers"));
        }
        let methods: Vec<&str> = settings.allow_methods.iter().map(Method::as_str).collect();
        Ok(Prepared {
            index,
            same_origin: settings.same_origin,
            allow_methods: join(&methods).unwrap_or(HeaderValue::from_static("GET")),
            allow_headers: join(&settings.allow_headers),
            expose_headers: join(&settings.expose_headers),
            max_age: HeaderValue::from(settings.max_age.as_secs()),
            allow_credentials: settings.allow_credentials,
        })
    }

    fn preflight<B: RefusalBody>(&self, origin: Option<&HeaderValue>) -> Response<B> {
        let mut res = Response::new(B::from_bytes(Bytes::new()));
        *res.status_mut() = if origin.is_some() { StatusCode::NO_CONTENT } else { StatusCode::FORBIDDEN };
        let headers = res.headers_mut();
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
        let Some(origin) = origin else { return res };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        if let Some(h) = &self.allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.allow_credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        res
    }

    fn decorate<B>(&self, res: &mut Response<B>, origin: Option<HeaderValue>) {
        let refused = res.extensions().get::<OriginRefused>().is_some();
        let headers = res.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin.filter(|_| !refused) else { return };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(h) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, h.clone());
        }
        if self.allow_credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn origin_refusal<B: RefusalBody>() -> Response<B> {
    let body =
        br#"{"error":"access_denied","error_description":"requests from this origin are not allowed"}"#;
    let mut res = Response::new(B::from_bytes(Bytes::from_static(body)));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    res
}

/// CORS with the consumers' `allowed_origins` (see the module docs).
///
/// ```
/// use oauth_sidecar::gate::{ConsumerCorsLayer, CorsSettings, OriginIndex};
///
/// let index = OriginIndex::from_consumers([("farm", vec!["http://localhost:3000".to_owned()])]);
/// let cors = ConsumerCorsLayer::new(index, CorsSettings::default()).unwrap();
/// # drop(cors);
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerCorsLayer {
    prepared: Arc<Prepared>,
}

impl ConsumerCorsLayer {
    /// A layer over `index`; refuses setting combinations CORS does not allow.
    pub fn new(index: OriginIndex, settings: CorsSettings) -> Result<Self, CorsError> {
        Ok(ConsumerCorsLayer { prepared: Arc::new(Prepared::new(index, settings)?) })
    }
}

impl<S> Layer<S> for ConsumerCorsLayer {
    type Service = ConsumerCors<S>;
    fn layer(&self, inner: S) -> ConsumerCors<S> {
        ConsumerCors { inner, prepared: self.prepared.clone() }
    }
}

/// The service [`ConsumerCorsLayer`] builds.
#[derive(Debug, Clone)]
pub struct ConsumerCors<S> {
    inner: S,
    prepared: Arc<Prepared>,
}

impl<S, B, ResB> Service<Request<B>> for ConsumerCors<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: RefusalBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = CorsFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let p = &*self.prepared;
        if !req.headers().contains_key(header::ORIGIN) {
            return CorsFuture { state: CorsState::Plain { fut: self.inner.call(req) } };
        }
        let state = match RequestOrigin::of(req.headers(), p.same_origin.as_ref()) {
            RequestOrigin::SameOrNone => {
                CorsState::Cross { fut: self.inner.call(req), origin: None, prepared: self.prepared.clone() }
            }
            RequestOrigin::Bad => {
                tracing::info!("refused: null or malformed Origin");
                let res = if is_preflight(&req) { p.preflight(None) } else { origin_refusal() };
                CorsState::Done { res: Some(res) }
            }
            RequestOrigin::Cross(origin) => {
                let allowed = p.index.allows_any(&origin);
                let value = req.headers().get(header::ORIGIN).cloned();
                if is_preflight(&req) {
                    if !allowed {
                        tracing::info!(origin = %origin, "preflight refused: no consumer allows this origin");
                    }
                    CorsState::Done { res: Some(p.preflight(value.as_ref().filter(|_| allowed))) }
                } else {
                    let origin = value.filter(|_| allowed);
                    CorsState::Cross { fut: self.inner.call(req), origin, prepared: self.prepared.clone() }
                }
            }
        };
        CorsFuture { state }
    }
}

pin_project! {
    /// Response future of [`ConsumerCors`].
    pub struct CorsFuture<F, B> {
        #[pin]
        state: CorsState<F, B>,
    }
}

pin_project! {
    #[project = CorsStateProj]
    enum CorsState<F, B> {
        Plain { #[pin] fut: F },
        Cross { #[pin] fut: F, origin: Option<HeaderValue>, prepared: Arc<Prepared> },
        Done { res: Option<Response<B>> },
    }
}

impl<F, B, E> Future for CorsFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            CorsStateProj::Plain { fut } => fut.poll(cx),
            CorsStateProj::Cross { fut, origin, prepared } => {
                let mut res = ready!(fut.poll(cx))?;
                prepared.decorate(&mut res, origin.take());
                Poll::Ready(Ok(res))
            }
            CorsStateProj::Done { res } => {
                Poll::Ready(Ok(res.take().expect("CorsFuture polled after completion")))
            }
        }
    }
}

/// CORS for endpoints that name their client in the request (the token
/// endpoint): the `client_id` of the Basic header or form body picks the
/// consumer whose `allowed_origins` decide. Only `paths` are handled; other
/// requests pass untouched.
#[derive(Debug, Clone)]
pub struct ClientCorsLayer {
    prepared: Arc<Prepared>,
    paths: Arc<[String]>,
}

impl ClientCorsLayer {
    /// A layer for `paths` (such as `/oauth/token`) over `index`.
    pub fn new(index: OriginIndex, settings: CorsSettings, paths: Vec<String>) -> Result<Self, CorsError> {
        Ok(ClientCorsLayer { prepared: Arc::new(Prepared::new(index, settings)?), paths: paths.into() })
    }
}

impl<S> Layer<S> for ClientCorsLayer {
    type Service = ClientCors<S>;
    fn layer(&self, inner: S) -> ClientCors<S> {
        ClientCors { inner, prepared: self.prepared.clone(), paths: self.paths.clone() }
    }
}

/// The service [`ClientCorsLayer`] builds, over axum bodies.
#[derive(Debug, Clone)]
pub struct ClientCors<S> {
    inner: S,
    prepared: Arc<Prepared>,
    paths: Arc<[String]>,
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for ClientCors<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> BoxResponse {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.paths.iter().any(|p| p == req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        let prepared = self.prepared.clone();
        Box::pin(async move {
            let origin = match RequestOrigin::of(req.headers(), prepared.same_origin.as_ref()) {
                RequestOrigin::SameOrNone => return inner.call(req).await,
                RequestOrigin::Bad => {
                    tracing::info!("token endpoint: refused a null or malformed Origin");
                    let res = if is_preflight(&req) { prepared.preflight(None) } else { origin_refusal() };
                    return Ok(res);
                }
                RequestOrigin::Cross(origin) => origin,
            };
            let value = req.headers().get(header::ORIGIN).cloned();
            if is_preflight(&req) {
                let allowed = prepared.index.allows_any(&origin);
                return Ok(prepared.preflight(value.as_ref().filter(|_| allowed)));
            }
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_CLIENT_BODY).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    let mut res = Response::new(Body::from("the request body is too large\n"));
                    *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                    return Ok(res);
                }
            };
            let client_id = basic_client_id(&parts.headers).or_else(|| form_client_id(&bytes));
            let req = Request::from_parts(parts, Body::from(bytes));
            match client_id {
                Some(id) if prepared.index.allows(&id, &origin) => {
                    let mut res = inner.call(req).await?;
                    prepared.decorate(&mut res, value);
                    Ok(res)
                }
                Some(id) => {
                    tracing::info!(client_id = %id, origin = %origin, "token endpoint: the client does not allow this origin");
                    let body = br#"{"error":"unauthorized_client","error_description":"this client may not be used from this origin"}"#;
                    let mut res = origin_refusal::<Body>();
                    *res.body_mut() = Body::from(Bytes::from_static(body));
                    Ok(res)
                }
                // The endpoint refuses a request naming no client itself.
                None => {
                    let mut res = inner.call(req).await?;
                    prepared.decorate(&mut res, None);
                    Ok(res)
                }
            }
        })
    }
}

/// The client id of `Authorization: Basic` (RFC 6749 section 2.3.1).
fn basic_client_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, _) = text.split_once(':')?;
    percent_decode(id)
}

/// The `client_id` of a form body.
fn form_client_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (percent_decode(name)? == "client_id").then(|| percent_decode(value)).flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_id_comes_from_basic_or_the_form() {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode("my%20app:s")).parse().unwrap());
        assert_eq!(basic_client_id(&h).as_deref(), Some("my app"));
        assert_eq!(form_client_id(b"grant_type=password&client_id=farm").as_deref(), Some("farm"));
        assert_eq!(form_client_id(b"grant_type=password"), None);
    }

    #[test]
    fn wildcards_are_refused_when_built() {
        let settings =
            CorsSettings { allow_headers: vec![HeaderName::from_static("*")], ..CorsSettings::default() };
        assert_eq!(
            Prepared::new(OriginIndex::default(), settings).unwrap_err(),
            CorsError::Wildcard("allow_headers")
        );
    }
}
