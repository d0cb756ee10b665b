//! What a verified token says about its bearer ([`Identity`]), and
//! [`IdentityHeadersLayer`], which tells the upstream app in plain headers.
//!
//! The layer first removes every identity header the client sent, on every
//! request and in every spelling an upstream may fold into the same name
//! (`X-Auth_Subject` too: a client must never be able to claim an identity
//! by sending `X-Auth-Subject` itself), then, when the bearer gate put an [`Identity`]
//! into the request's extensions, sets them from it. It can also remove the
//! `Authorization` header, for upstreams that should never see tokens.
//!
//! ```
//! use oauth_sidecar::gate::{IdentityHeadersLayer, IdentitySettings};
//! use tower::ServiceBuilder;
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityHeadersLayer::new(IdentitySettings { forward_authorization: false, ..Default::default() }))
//!     .service_fn(|req: http::Request<()>| async move {
//!         assert!(req.headers().get("x-auth-subject").is_none());
//!         assert!(req.headers().get("authorization").is_none());
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! # drop(service);
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tower::{Layer, Service};

/// The bearer of a verified token, as the gate passes it on (in the
/// request's extensions, as `Arc<Identity>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`): the user, or the client acting for itself.
    pub subject: String,
    /// The client the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<String>,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// The user's name, when the token acts for a user.
    pub username: Option<String>,
    /// The token's id (`jti`).
    pub jti: Option<String>,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
    scopes: Box<[Box<str>]>,
    headers: Values,
}

/// The header values, built once per verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Values {
    subject: HeaderValue,
    client: Option<HeaderValue>,
    scopes: HeaderValue,
    username: Option<HeaderValue>,
}

fn header_value(what: &str, s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("the token's {what} cannot be passed on in a header"))
}

impl Identity {
    /// An identity; refused when a value cannot be sent in a header
    /// (control characters).
    pub fn new(
        issuer: String,
        subject: String,
        client_id: Option<String>,
        scopes: impl IntoIterator<Item = String>,
        username: Option<String>,
        jti: Option<String>,
        expires_at: i64,
    ) -> Result<Self, String> {
        let mut list: Vec<Box<str>> =
            scopes.into_iter().filter(|s| !s.is_empty()).map(String::into_boxed_str).collect();
        list.sort();
        list.dedup();
        let scope = list.iter().map(|s| &**s).collect::<Vec<_>>().join(" ");
        let headers = Values {
            subject: header_value("subject", &subject)?,
            client: client_id.as_deref().map(|c| header_value("client_id", c)).transpose()?,
            scopes: header_value("scope", &scope)?,
            username: username.as_deref().map(|u| header_value("username", u)).transpose()?,
        };
        Ok(Identity {
            issuer,
            subject,
            client_id,
            scope,
            username,
            jti,
            expires_at,
            scopes: list.into_boxed_slice(),
            headers,
        })
    }

    /// True when the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// The scopes, sorted.
    pub(crate) fn sorted_scopes(&self) -> &[Box<str>] {
        &self.scopes
    }
}

/// The names of the identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaderNames {
    /// The subject; default `X-Auth-Subject`.
    pub subject: HeaderName,
    /// The client id; default `X-Auth-Client`.
    pub client: HeaderName,
    /// The scopes, space-separated; default `X-Auth-Scopes`.
    pub scopes: HeaderName,
    /// The username; default `X-Auth-Username`.
    pub username: HeaderName,
}

impl Default for IdentityHeaderNames {
    fn default() -> Self {
        IdentityHeaderNames {
            subject: HeaderName::from_static("x-auth-subject"),
            client: HeaderName::from_static("x-auth-client"),
            scopes: HeaderName::from_static("x-auth-scopes"),
            username: HeaderName::from_static("x-auth-username"),
        }
    }
}

impl IdentityHeaderNames {
    /// True when `name` is one of the identity headers in any spelling an
    /// upstream may read as it: case aside (header names arrive in lower
    /// case), `_` and `-` are the same (CGI, Rack and some WSGI servers
    /// fold `X-Auth_Subject` into `HTTP_X_AUTH_SUBJECT`).
    pub fn spells(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        [&self.subject, &self.client, &self.scopes, &self.username]
            .into_iter()
            .any(|own| folded_eq(own.as_str().as_bytes(), name))
    }
}

/// Header names equal after folding `_` into `-` (both already lower case).
fn folded_eq(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

/// What [`IdentityHeadersLayer`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// The header names.
    pub names: IdentityHeaderNames,
    /// Pass the client's `Authorization` header on (true, the default) or
    /// remove it.
    pub forward_authorization: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings { names: IdentityHeaderNames::default(), forward_authorization: true }
    }
}

impl IdentitySettings {
    /// Removes the client's hop-by-hop headers and every header its
    /// `Connection` names, client-sent identity headers (and `Authorization`
    /// when not forwarded), then sets them from `identity`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, identity: Option<&Identity>) {
        // Before any header is set here: a `Connection` naming one must
        // not make the proxy remove it.
        crate::proxy::headers::strip_client_hops(headers);
        // Most requests carry none: one pass over their names, comparing
        // bytes, is cheaper than a lookup per identity header.
        if headers.keys().any(|k| self.names.spells(k)) {
            let spoofed: Vec<HeaderName> = headers.keys().filter(|k| self.names.spells(k)).cloned().collect();
            for name in spoofed {
                headers.remove(name);
            }
        }
        if !self.forward_authorization {
            headers.remove(AUTHORIZATION);
        }
        let Some(identity) = identity else { return };
        let names = &self.names;
        let values = &identity.headers;
        headers.insert(names.subject.clone(), values.subject.clone());
        headers.insert(names.scopes.clone(), values.scopes.clone());
        if let Some(client) = &values.client {
            headers.insert(names.client.clone(), client.clone());
        }
        if let Some(username) = &values.username {
            headers.insert(names.username.clone(), username.clone());
        }
    }
}

/// Removes client-sent identity headers from every request and sets them
/// from the gate's [`Identity`] (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct IdentityHeadersLayer {
    settings: Arc<IdentitySettings>,
}

impl IdentityHeadersLayer {
    /// A layer with these settings.
    pub fn new(settings: IdentitySettings) -> Self {
        IdentityHeadersLayer { settings: Arc::new(settings) }
    }

    /// The header names and what is forwarded.
    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }
}

impl<S> Layer<S> for IdentityHeadersLayer {
    type Service = IdentityHeaders<S>;
    fn layer(&self, inner: S) -> IdentityHeaders<S> {
        IdentityHeaders { inner, settings: self.settings.clone() }
    }
}

/// The service [`IdentityHeadersLayer`] builds.
#[derive(Debug, Clone)]
pub struct IdentityHeaders<S> {
    inner: S,
    settings: Arc<IdentitySettings>,
}

impl<S, B> Service<Request<B>> for IdentityHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        let identity = req.extensions().get::<Arc<Identity>>().cloned();
        self.settings.apply(req.headers_mut(), identity.as_deref());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_identity_header_is_removed() {
        let settings = IdentitySettings::default();
        let mut headers = HeaderMap::new();
        for name in ["x-auth_subject", "x_auth_client", "X-AUTH-SCOPES", "x_auth_username", "x-kept"] {
            headers
                .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("admin"));
        }
        settings.apply(&mut headers, None);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
        let names = IdentityHeaderNames::default();
        assert!(!names.spells(&HeaderName::from_static("x-auth-subjects")));
        assert!(!names.spells(&HeaderName::from_static("x-auth.subject")));
    }
}
