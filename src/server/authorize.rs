//! `GET|POST /oauth/authorize`: the front channel of the authorization code
//! grant (RFC 6749 section 4.1, PKCE per RFC 7636, RFC 9700 throughout).
//!
//! 1. `client_id` and `redirect_uri` are checked first. Until both are valid
//!    every error is an HTML page, never a redirect, so the endpoint cannot
//!    be used as an open redirector. `redirect_uri` may be left out when the
//!    consumer has exactly one.
//! 2. Then `response_type=code`, the consumer's right to the grant, PKCE
//!    (`S256` only, required for public consumers), `scope`, `prompt`; an
//!    error here goes back to the client as `error` on the redirect URI
//!    (section 4.1.2.1), with `state` and `iss` (RFC 9207).
//! 3. Without a login session the sign-in page is shown; it posts back to
//!    the same URL (the request stays in the query string). Third-party
//!    consumers, or `prompt=consent`, then get the consent page; first-party
//!    ones skip it. `prompt=none` answers `login_required` or
//!    `consent_required` instead of showing a page.
//! 4. The code (256 random bits, stored as its SHA-256, single use, at most
//!    `server.code_ttl`) goes back on the redirect URI with `state` and `iss`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::Inner;
use super::consent;
use super::consumer::redirect_uri_matches;
use super::error::OAuthError;
use super::policy::Roles;
use super::token::{join, requested_scopes};
use crate::clock;
use crate::proxy::ConnectionInfo;
use crate::store::{AuthCodeRecord, ConsumerRecord, StoreError, UserRecord, token_hash};
use crate::web::csrf::CSRF_FIELD;
use crate::web::secrets::{is_token, random_token};
use crate::web::signin::{LoginForm, SignedIn};

/// Form or query parameters, in order, with empty values dropped (RFC 6749
/// section 3.1: a parameter without a value counts as absent).
pub(super) struct Params(Vec<(String, String)>);

/// A parameter sent more than once (section 3.1 forbids it).
pub(super) struct Repeated(pub(super) &'static str);

impl Params {
    pub(super) fn parse(input: &[u8]) -> Self {
        Params(
            url::form_urlencoded::parse(input)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`, if sent once; an error if sent more than once.
    pub(super) fn one(&self, name: &'static str) -> Result<Option<&str>, Repeated> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() { Err(Repeated(name)) } else { Ok(first) }
    }

    /// Every value of `name`, in order.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What `prompt` asked for (OpenID Connect Core section 3.1.2.1).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Prompt {
    pub(super) none: bool,
    pub(super) login: bool,
    pub(super) consent: bool,
}

/// A validated authorization request.
pub(super) struct AuthRequest {
    pub(super) consumer: ConsumerRecord,
    pub(super) redirect_uri: String,
    pub(super) state: Option<String>,
    pub(super) requested: Roles,
    pub(super) code_challenge: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) prompt: Prompt,
    /// The URL the pages' forms post to: this request's own.
    pub(super) action: String,
    /// The origin a form post may be redirected to, for the page's CSP.
    pub(super) form_target: Option<String>,
}

/// A refusal once the redirect URI is known: goes back to the client.
pub(super) struct Refusal {
    error: &'static str,
    description: String,
}

/// A [`Refusal`] with `error` and its description.
pub(super) fn refuse(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { error, description: description.into() }
}

/// The endpoint, for GET (the client's redirect) and POST (our own forms).
pub(crate) async fn authorize(
    State(server): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(query.as_deref().unwrap_or_default().as_bytes());
    let (consumer, redirect_uri) = match identify(&server, &params).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let status = if method == Method::POST { StatusCode::SEE_OTHER } else { StatusCode::FOUND };
    let state = params.one("state").ok().flatten().map(str::to_owned);
    let request = match validate(&server, consumer, redirect_uri, state, &params, &uri) {
        Ok(request) => request,
        Err((redirect_uri, state, refusal)) => {
            return redirect(&server, status, &redirect_uri, state.as_deref(), Err(refusal), None);
        }
    };
    let conn = conn.map(|Extension(c)| c);
    let outcome = if method == Method::POST {
        let form = Params::parse(&body);
        if !server.signin.csrf_ok(&headers, form.one(CSRF_FIELD).ok().flatten()) {
            tracing::warn!(client_id = %request.consumer.client_id, "a sign-in or consent form came without a valid CSRF token");
            return server.signin.pages().error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form expired or was not sent from this site. Go back to the application and start again.",
            );
        }
        match form.one("step") {
            Ok(Some("login")) => login_step(&server, &request, &headers, conn.as_ref(), &form).await,
            Ok(Some("consent")) => consent::decide(&server, &request, &headers, &form).await,
            _ => {
                return server.signin.pages().error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "The form is not one of this server's.",
                );
            }
        }
    } else {
        match server.signin.current_session(&headers).await {
            Ok(Some((user, auth_time))) if !request.prompt.login => {
                consent::proceed(&server, &request, &headers, &user, auth_time, None).await
            }
            Ok(_) if request.prompt.none => {
                Ok(Step::Refuse(refuse("login_required", "the user is not signed in")))
            }
            Ok(_) => Ok(login_page(&server, &request, &headers, "", None, StatusCode::OK)),
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(Step::Page(page)) => page,
        Ok(Step::Refuse(refusal)) => {
            redirect(&server, status, &request.redirect_uri, request.state.as_deref(), Err(refusal), None)
        }
        Ok(Step::Code { code, cookie }) => {
            redirect(&server, status, &request.redirect_uri, request.state.as_deref(), Ok(&code), cookie)
        }
        Err(e) => {
            tracing::error!(error = %e, "the authorization endpoint failed");
            server.signin.pages().error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The server could not handle the request. Try again later.",
            )
        }
    }
}

/// Where a request goes next.
pub(super) enum Step {
    /// Show a page (sign-in or consent).
    Page(Response),
    /// Send an error back to the client.
    Refuse(Refusal),
    /// Send the code back to the client, setting the session cookie when
    /// the user just signed in.
    Code { code: String, cookie: Option<HeaderValue> },
}

/// Step 1: the consumer and the redirect URI, or an error page.
async fn identify(server: &Inner, params: &Params) -> Result<(ConsumerRecord, String), Response> {
    let page =
        |message: &str| server.signin.pages().error(StatusCode::BAD_REQUEST, "Invalid request", message);
    let client_id = match params.one("client_id") {
        Ok(Some(id)) => id,
        Ok(None) => return Err(page("The request does not name a client (client_id is missing).")),
        Err(_) => return Err(page("The request names more than one client.")),
    };
    let consumer = match server.store.consumer(client_id).await {
        Ok(Some(consumer)) => consumer,
        Ok(None) => return Err(page("The client is unknown to this server.")),
        Err(e) => {
            tracing::error!(error = %e, "the authorization endpoint failed");
            return Err(server.signin.pages().error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The server could not handle the request. Try again later.",
            ));
        }
    };
    let redirect_uri = match params.one("redirect_uri") {
        Ok(Some(uri)) if consumer.redirect_uris.iter().any(|r| redirect_uri_matches(r, uri)) => {
            uri.to_owned()
        }
        Ok(Some(_)) => return Err(page("The redirect URI is not registered for this client.")),
        Ok(None) => match consumer.redirect_uris.as_slice() {
            [only] => only.clone(),
            [] => return Err(page("The client has no redirect URI registered.")),
            _ => return Err(page("The request does not say where to return (redirect_uri is missing).")),
        },
        Err(_) => return Err(page("The request names more than one redirect URI.")),
    };
    if url::Url::parse(&redirect_uri).is_err() {
        return Err(page("The client's redirect URI is not a valid URL."));
    }
    Ok((consumer, redirect_uri))
}

/// Step 2: the rest of the request; errors go back to the client.
fn validate(
    server: &Inner,
    consumer: ConsumerRecord,
    redirect_uri: String,
    state: Option<String>,
    params: &Params,
    uri: &Uri,
) -> Result<AuthRequest, (String, Option<String>, Refusal)> {
    let checked = (|| {
        let one = |name: &'static str| {
            params
                .one(name)
                .map_err(|Repeated(n)| refuse("invalid_request", format!("`{n}` was sent more than once")))
        };
        one("state")?;
        match one("response_type")? {
            Some("code") => {}
            Some(other) => {
                return Err(refuse(
                    "unsupported_response_type",
                    format!("response_type `{other}` is not supported; use `code`"),
                ));
            }
            None => return Err(refuse("invalid_request", "the `response_type` parameter is missing")),
        }
        if !consumer.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(refuse("unauthorized_client", "the client may not use the authorization_code grant"));
        }
        if one("request")?.is_some() {
            return Err(refuse("request_not_supported", "request objects are not supported"));
        }
        if one("request_uri")?.is_some() {
            return Err(refuse("request_uri_not_supported", "request_uri is not supported"));
        }
        if one("response_mode")?.is_some_and(|m| m != "query") {
            return Err(refuse("invalid_request", "only response_mode `query` is supported"));
        }
        let code_challenge = match (one("code_challenge")?, one("code_challenge_method")?) {
            (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge is not an S256 challenge (43 base64url characters)",
                ));
            }
            (_, Some("plain")) | (Some(_), None) => {
                return Err(refuse(
                    "invalid_request",
                    "PKCE method `plain` is not allowed; use code_challenge_method=S256",
                ));
            }
            (_, Some(other)) => {
                return Err(refuse(
                    "invalid_request",
                    format!("unknown code_challenge_method `{other}`; use S256"),
                ));
            }
            (None, None) => None,
        };
        if code_challenge.is_none() && server.requires_pkce(&consumer) {
            return Err(refuse(
                "invalid_request",
                "this client must use PKCE (code_challenge with method S256)",
            ));
        }
        let requested = requested_scopes(server, one("scope")?).map_err(|e| match e {
            OAuthError::InvalidScope(d) => refuse("invalid_scope", d),
            other => refuse("invalid_request", other.to_string()),
        })?;
        let mut prompt = Prompt::default();
        for value in one("prompt")?.unwrap_or_default().split(' ') {
            match value {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                _ => {}
            }
        }
        if prompt.none && (prompt.login || prompt.consent) {
            return Err(refuse("invalid_request", "prompt=none cannot be combined with other values"));
        }
        let nonce = one("nonce")?.map(str::to_owned);
        Ok((requested, code_challenge, nonce, prompt))
    })();
    match checked {
        Ok((requested, code_challenge, nonce, prompt)) => {
            let action = match uri.query() {
                Some(q) => format!("{}?{q}", uri.path()),
                None => uri.path().to_owned(),
            };
            let form_target = crate::web::pages::form_target(&redirect_uri);
            Ok(AuthRequest {
                consumer,
                redirect_uri,
                state,
                requested,
                code_challenge,
                nonce,
                prompt,
                action,
                form_target,
            })
        }
        Err(refusal) => Err((redirect_uri, state, refusal)),
    }
}

/// An S256 `code_challenge`: a base64url SHA-256, 43 characters.
fn is_s256_challenge(c: &str) -> bool {
    is_token(c)
}

/// The sign-in page, posting back to the request's own URL.
pub(super) fn login_page(
    server: &Inner,
    request: &AuthRequest,
    headers: &HeaderMap,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Step {
    Step::Page(server.signin.login_page(headers, &login_form(request), username, error, status))
}

/// What the sign-in page says and where it posts, for `request`.
fn login_form(request: &AuthRequest) -> LoginForm<'_> {
    LoginForm {
        action: &request.action,
        label: label(&request.consumer),
        form_target: request.form_target.as_deref(),
    }
}

/// The consumer's name on the pages: its label, else its client id.
pub(super) fn label(consumer: &ConsumerRecord) -> &str {
    if consumer.label.is_empty() { &consumer.client_id } else { &consumer.label }
}

/// The sign-in form: on to consent or the code once signed in.
async fn login_step(
    server: &Inner,
    request: &AuthRequest,
    headers: &HeaderMap,
    conn: Option<&ConnectionInfo>,
    form: &Params,
) -> Result<Step, StoreError> {
    let field = |name| form.one(name).ok().flatten();
    let form_view = login_form(request);
    match server.signin.sign_in(headers, conn, &form_view, field("username"), field("password")).await? {
        SignedIn::Yes { user, auth_time, cookie } => {
            consent::proceed(server, request, headers, &user, auth_time, Some(cookie)).await
        }
        SignedIn::No(page) => Ok(Step::Page(page)),
    }
}

/// Stores a new code for `granted` and sends it back to the client.
pub(super) async fn issue_code(
    server: &Inner,
    request: &AuthRequest,
    headers: &HeaderMap,
    user: &UserRecord,
    auth_time: i64,
    granted: &Roles,
    cookie: Option<HeaderValue>,
) -> Result<Step, StoreError> {
    let mut scope = granted.clone();
    if request.requested.contains("openid") {
        scope.insert("openid".to_owned());
    }
    let code = random_token();
    let now = clock::now();
    let sid = server.signin.session_ids(headers, cookie.as_ref()).map(|(_, sid)| sid);
    server
        .store
        .add_auth_code(&AuthCodeRecord {
            code_hash: token_hash(&code),
            client_id: request.consumer.client_id.clone(),
            username: user.username.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope: join(&scope),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time,
            expires_at: now.saturating_add(i64::try_from(server.code_ttl).unwrap_or(i64::MAX)),
            sid,
        })
        .await?;
    tracing::info!(username = %user.username, client_id = %request.consumer.client_id, "authorization code issued");
    Ok(Step::Code { code, cookie })
}

/// Sends the browser back to the client with the code or an error.
fn redirect(
    server: &Inner,
    status: StatusCode,
    redirect_uri: &str,
    state: Option<&str>,
    outcome: Result<&str, Refusal>,
    cookie: Option<HeaderValue>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return server.signin.pages().error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The client's redirect URI is not a valid URL.",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        match &outcome {
            Ok(code) => {
                query.append_pair("code", code);
            }
            Err(refusal) => {
                query.append_pair("error", refusal.error);
                query.append_pair("error_description", &refusal.description);
            }
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &server.issuer);
    }
    if let Err(refusal) = &outcome {
        tracing::info!(error = refusal.error, description = %refusal.description, "authorization request refused");
    }
    let mut res = status.into_response();
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            res.headers_mut().insert(LOCATION, location);
        }
        Err(_) => {
            return server.signin.pages().error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The client's redirect URI cannot be used.",
            );
        }
    }
    res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie {
        res.headers_mut().append(SET_COOKIE, cookie);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_drop_empty_values_and_report_repeats() {
        let p = Params::parse(b"a=1&b=&a=2&c=x%20y");
        assert!(p.one("a").is_err());
        assert_eq!(p.one("b").ok().flatten(), None);
        assert_eq!(p.one("c").ok().flatten(), Some("x y"));
        assert_eq!(p.all("a").collect::<Vec<_>>(), ["1", "2"]);
    }
}
