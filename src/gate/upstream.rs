//! `upstream_token` rules: the upstream gets a provider token of the OAuth
//! client role instead of the caller's own `Authorization`.
//!
//! A rule names a client registration and a tag ([`UpstreamToken`]); the
//! tag is fixed (a service account) or a template of the caller's identity
//! ([`TagTemplate`]: `{username}`, `{subject}`, `{client_id}`), so each user's
//! own connected token goes with their requests. The bearer gate puts the
//! rule's [`UpstreamToken`] into a passed request's extensions;
//! [`UpstreamTokenLayer`], between the identity headers and the proxy,
//! removes the caller's `Authorization` (and the rule's header), asks the
//! [`ProviderTokens`] source for the token (the client role's store: one
//! refresh for all concurrent callers, back-off while the provider is down)
//! and sets the header. When the upstream answers 401 and the request body
//! could be kept (none, or a known length up to [`MAX_REPLAY_BODY`]), the
//! token is refreshed once and the request sent once more.
//!
//! A caller without a token gets `403` with JSON
//! `{"error":"needs_connection","connect":"/oauth/start/CLIENT?tag=..."}`,
//! or an HTML page with that link when it asks for `text/html`; a token the
//! provider no longer refreshes gives `needs_reauthorization` likewise.
//! Outcomes are counted in `oauth_sidecar_upstream_token_total` by client
//! and outcome; no token reaches a log line.
//!
//! ```
//! use oauth_sidecar::gate::rules::{Access, RouteRule};
//! use oauth_sidecar::gate::upstream::{TagTemplate, UpstreamToken};
//!
//! let tag = TagTemplate::parse("{username}").unwrap();
//! assert!(!tag.is_fixed());
//! let rule = RouteRule::new("/mail/**", Access::Authenticated).upstream_token(UpstreamToken::new("mail", tag));
//! # drop(rule);
//! assert!(TagTemplate::parse("{email}").is_err());
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use super::error::RefusalBody;
use super::identity::Identity;
use super::token::ReplayBody;
use crate::config::Secret;
use crate::proxy::{ProviderTokenError, ProviderTokens};

/// A request body up to this size (known from its `Content-Length`) is kept,
/// so the request can be sent again after a 401; a larger or streamed body
/// goes through unbuffered, without the retry.
pub const MAX_REPLAY_BODY: u64 = 1 << 20;

/// The metric counting what happened per client: `sent`, `retried`,
/// `needs_connection`, `needs_reauthorization`, `needs_user`, `unavailable`.
pub const METRIC: &str = "oauth_sidecar_upstream_token_total";

/// One piece of a tag template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TagPart {
    Text(Box<str>),
    Username,
    Subject,
    ClientId,
}

/// A tag, fixed or naming fields of the caller's identity in braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    parts: Box<[TagPart]>,
}

impl TagTemplate {
    /// Parses `text`; refuses an empty tag, a field other than `username`,
    /// `subject` and `client_id`, and unbalanced braces.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the tag is empty".into());
        }
        if text.chars().any(char::is_control) {
            return Err("the tag has a control character".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("`{text}`: a `}}` without its `{{`"));
            }
            if open > 0 {
                parts.push(TagPart::Text(rest[..open].into()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("`{text}`: a `{{` without its `}}`"));
            };
            parts.push(match &after[..close] {
                "username" => TagPart::Username,
                "subject" => TagPart::Subject,
                "client_id" => TagPart::ClientId,
                field => {
                    return Err(format!(
                        "`{{{field}}}` is not a field of the caller: expected {{username}}, {{subject}} or {{client_id}}"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TagPart::Text(rest.into()));
        }
        Ok(TagTemplate { parts: parts.into_boxed_slice() })
    }

    /// True when the tag names no field of the caller.
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, TagPart::Text(_)))
    }

    /// The tag for a caller; `None` when it names a field the caller's
    /// identity lacks (a client's own token has no username).
    pub fn render(&self, identity: Option<&Identity>) -> Option<String> {
        let mut out = String::new();
        for part in self.parts.iter() {
            let value = match part {
                TagPart::Text(text) => text,
                TagPart::Username => identity?.username.as_deref()?,
                TagPart::Subject => identity?.subject.as_str(),
                TagPart::ClientId => identity?.client_id.as_deref()?,
            };
            if value.is_empty() {
                return None;
            }
            out.push_str(value);
        }
        Some(out)
    }
}

/// What an `upstream_token` rule sends: the token of (`client`, `tag`) in
/// `header`, after `scheme`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamToken {
    /// The client registration.
    pub client: String,
    /// The token's tag.
    pub tag: TagTemplate,
    /// The header that carries it (`Authorization`).
    pub header: HeaderName,
    /// The word before the token (`Bearer`); empty: the token alone.
    pub scheme: String,
}

impl UpstreamToken {
    /// The token of `client` and `tag` as `Authorization: Bearer`.
    pub fn new(client: impl Into<String>, tag: TagTemplate) -> Self {
        UpstreamToken { client: client.into(), tag, header: AUTHORIZATION, scheme: "Bearer".into() }
    }

    /// The header value carrying `token`, marked sensitive (kept out of
    /// HPACK tables and debug output).
    fn value(&self, token: &Secret) -> Option<HeaderValue> {
        let mut value = if self.scheme.is_empty() {
            HeaderValue::from_str(token.expose())
        } else {
            HeaderValue::from_str(&format!("{} {}", self.scheme, token.expose()))
        }
        .ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Sets the provider token of `upstream_token` rules on the requests they
/// pass (see the module docs); other requests go through untouched.
#[derive(Clone)]
pub struct UpstreamTokenLayer {
    tokens: Option<Arc<dyn ProviderTokens>>,
}

impl std::fmt::Debug for UpstreamTokenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokenLayer").field("tokens", &self.tokens.is_some()).finish()
    }
}

impl UpstreamTokenLayer {
    /// Tokens from `tokens` (the OAuth client role's store, in the sidecar).
    pub fn new(tokens: Arc<dyn ProviderTokens>) -> Self {
        describe();
        UpstreamTokenLayer { tokens: Some(tokens) }
    }

    /// Without a token source: a rule asking for a token gets 503
    /// (`check-config` refuses such a file, so the sidecar never runs one).
    pub fn without_tokens() -> Self {
        UpstreamTokenLayer { tokens: None }
    }
}

fn describe() {
    metrics::describe_counter!(
        METRIC,
        "Requests of upstream_token rules, by client and outcome (sent, retried, needs_connection, needs_reauthorization, needs_user, unavailable)."
    );
}

impl<S> Layer<S> for UpstreamTokenLayer {
    type Service = UpstreamTokens<S>;
    fn layer(&self, inner: S) -> UpstreamTokens<S> {
        UpstreamTokens { inner, tokens: self.tokens.clone() }
    }
}

/// The service [`UpstreamTokenLayer`] builds.
#[derive(Clone)]
pub struct UpstreamTokens<S> {
    inner: S,
    tokens: Option<Arc<dyn ProviderTokens>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for UpstreamTokens<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens").field("inner", &self.inner).finish_non_exhaustive()
    }
}

type Sending<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for UpstreamTokens<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: ReplayBody + Send + 'static,
    ResB: RefusalBody + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Either<S::Future, Sending<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(rule) = req.extensions_mut().remove::<Arc<UpstreamToken>>() else {
            return Either::Left(self.inner.call(req));
        };
        // The ready service goes with the request; this one keeps a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(send(self.tokens.clone(), rule, inner, req)))
    }
}

fn count(client: &str, outcome: &'static str) {
    metrics::counter!(METRIC, "client" => client.to_owned(), "outcome" => outcome).increment(1);
}

/// What is kept of a request to send it again.
struct Again {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Again {
    fn request<B: ReplayBody>(&self) -> Request<B> {
        let mut req = Request::new(B::replay(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

async fn send<S, B, ResB>(
    tokens: Option<Arc<dyn ProviderTokens>>,
    rule: Arc<UpstreamToken>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<ResB>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    B: ReplayBody,
    ResB: RefusalBody,
{
    let client = rule.client.as_str();
    // A browser's page links back here after the connection, when it was a GET.
    let html = wants_html(req.headers()).then(|| {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        get.then(|| req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned())
    });
    let identity = req.extensions().get::<Arc<Identity>>().cloned();
    let Some(tag) = rule.tag.render(identity.as_deref()) else {
        count(client, "needs_user");
        let message = "This route sends a per-user provider token, and the caller's token names no such user";
        return Ok(refusal(StatusCode::FORBIDDEN, "needs_user", message, None, html.is_some()));
    };
    let Some(tokens) = tokens else {
        count(client, "unavailable");
        return Ok(unavailable("No OAuth client role is running"));
    };
    let token = match tokens.token(client, &tag).await {
        Ok(token) => token,
        Err(e) => return Ok(token_refusal(&e, client, &tag, html.as_ref())),
    };
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove(&rule.header);
    // Kept for a second send when it can be: no body, or a short one of known length.
    let keep = !parts.headers.contains_key(UPGRADE)
        && (body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= MAX_REPLAY_BODY));
    let (body, again) = if keep {
        let bytes = match http_body_util::Limited::new(body, MAX_REPLAY_BODY as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let message = "The request body could not be read";
                return Ok(refusal(StatusCode::BAD_REQUEST, "invalid_request", message, None, false));
            }
        };
        let again = Again {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: bytes.clone(),
        };
        (B::replay(bytes), Some(again))
    } else {
        (body, None)
    };
    let Some(value) = rule.value(&token) else {
        count(client, "unavailable");
        return Ok(unavailable("The provider's token cannot be sent in a header"));
    };
    parts.headers.insert(rule.header.clone(), value);
    let res = inner.call(Request::from_parts(parts, body)).await?;
    let Some(again) = again.filter(|_| res.status() == StatusCode::UNAUTHORIZED) else {
        count(client, "sent");
        return Ok(res);
    };
    let fresh = match tokens.token_rejected(client, &tag, token.expose()).await {
        Ok(fresh) if fresh.expose() != token.expose() => fresh,
        Ok(_) | Err(ProviderTokenError::Unavailable(_)) => {
            count(client, "sent");
            return Ok(res);
        }
        Err(e) => return Ok(token_refusal(&e, client, &tag, html.as_ref())),
    };
    drop(res);
    tracing::info!(
        client,
        tag,
        "the upstream refused the provider token (401); sending again once with a fresh one"
    );
    let Some(value) = rule.value(&fresh) else {
        count(client, "unavailable");
        return Ok(unavailable("The provider's token cannot be sent in a header"));
    };
    let mut req: Request<B> = again.request();
    req.headers_mut().insert(rule.header.clone(), value);
    let ready = inner.ready().await?;
    let res = ready.call(req).await?;
    count(client, "retried");
    Ok(res)
}

/// True when the caller asks for a page (a browser navigating) rather than JSON.
fn wants_html(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"))
}

/// `/oauth/start/CLIENT?tag=TAG`: where the caller connects the token.
pub fn connect_link(client: &str, tag: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("/oauth/start/{}?tag={}", encode(client), encode(tag))
}

/// The refusal when no token can be had; `html` is `None` for a program,
/// else for a browser, with the path to come back to after connecting (a GET).
fn token_refusal<B: RefusalBody>(
    e: &ProviderTokenError,
    client: &str,
    tag: &str,
    html: Option<&Option<String>>,
) -> Response<B> {
    let link = match html {
        Some(Some(back)) => {
            let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            format!("{}&return_to={back}", connect_link(client, tag))
        }
        _ => connect_link(client, tag),
    };
    let (error, message) = match e {
        ProviderTokenError::NotConnected => {
            ("needs_connection", format!("Connect your {client} account first"))
        }
        ProviderTokenError::NeedsReauthorization => {
            ("needs_reauthorization", format!("Your {client} account must be connected again"))
        }
        ProviderTokenError::Unavailable(reason) => {
            count(client, "unavailable");
            tracing::warn!(client, tag, reason = %reason, "no usable provider token for the upstream");
            return unavailable("The provider token cannot be refreshed now; try again later");
        }
    };
    count(client, error);
    tracing::info!(
        client,
        tag,
        error,
        "no usable provider token for this caller; answering with the connect link"
    );
    refusal(StatusCode::FORBIDDEN, error, &message, Some(&link), html.is_some())
}

fn unavailable<B: RefusalBody>(message: &str) -> Response<B> {
    refusal(StatusCode::SERVICE_UNAVAILABLE, "token_unavailable", message, None, false)
}

/// A refusal as JSON (`error`, `error_description`, `connect`), or as a
/// short page with the link for a browser.
fn refusal<B: RefusalBody>(
    status: StatusCode,
    error: &str,
    message: &str,
    connect: Option<&str>,
    html: bool,
) -> Response<B> {
    let (bytes, content_type) = if html {
        let link = connect.map_or(String::new(), |href| {
            format!("<p><a href=\"{}\">Connect the account</a>, then try again.</p>", escape(href))
        });
        let page = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
             <body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem\">\
             <h1>{title}</h1><p>{}.</p>{link}</body></html>\n",
            escape(message),
            title = if connect.is_some() { "Connect your account" } else { "Not available" },
        );
        (page.into_bytes(), "text/html; charset=utf-8")
    } else {
        let mut body = serde_json::json!({ "error": error, "error_description": message });
        if let Some(href) = connect {
            body["connect"] = href.into();
        }
        (serde_json::to_vec(&body).unwrap_or_default(), "application/json")
    };
    let mut res = Response::new(B::from_bytes(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(username: Option<&str>) -> Identity {
        Identity::new(
            "https://issuer".into(),
            "sub-1".into(),
            Some("farm".into()),
            ["a".to_owned()],
            username.map(str::to_owned),
            None,
            0,
        )
        .unwrap()
    }

    #[test]
    fn a_template_names_the_callers_fields() {
        let t = TagTemplate::parse("user:{username}@{client_id}/{subject}").unwrap();
        assert!(!t.is_fixed());
        assert_eq!(t.render(Some(&identity(Some("alice")))).as_deref(), Some("user:alice@farm/sub-1"));
        assert_eq!(t.render(Some(&identity(None))), None, "no username, no tag");
        assert_eq!(t.render(None), None);
        let fixed = TagTemplate::parse("reports@example.org").unwrap();
        assert!(fixed.is_fixed());
        assert_eq!(fixed.render(None).as_deref(), Some("reports@example.org"));
        for bad in ["", "{email}", "{username", "a}b", "{}"] {
            assert!(TagTemplate::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TagTemplate::parse("{mail}").unwrap_err().contains("{username}, {subject} or {client_id}"));
    }

    #[test]
    fn the_connect_link_encodes_client_and_tag() {
        assert_eq!(connect_link("mail", "a b&c"), "/oauth/start/mail?tag=a+b%26c");
    }
}
