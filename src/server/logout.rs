//! `GET|POST /oauth/logout`: OpenID Connect RP-initiated logout 1.0, the
//! discovery document's `end_session_endpoint`.
//!
//! 1. The request's `client_id`, `id_token_hint`, `post_logout_redirect_uri`
//!    and `state` are checked first. The hint must be an ID token of ours
//!    (signature, `iss`, `typ`; expired for up to `server.session_ttl` is
//!    fine, as the specification asks); its `aud` names the client when
//!    `client_id` is left out, and must be that client when both are sent.
//!    A `post_logout_redirect_uri` needs a known client and must be one of
//!    its `post_logout_redirect_uris`, exactly: otherwise an error page and
//!    no redirect, so the endpoint cannot be used as an open redirector.
//!    A hint that does not verify is not trusted, and counts as no hint.
//! 2. With a valid hint naming the browser's session (its `sid`, or its user
//!    for a hint without one) the session ends at once. Without one, the
//!    user confirms on a page whose form posts back here with a CSRF token
//!    bound to the session, so another site can neither sign a user out
//!    unasked nor skip the question.
//! 3. Ending the session deletes it from the store and queues a back-channel
//!    logout token for every consumer that got an ID token in it
//!    ([`super::backchannel`]); the session cookie is cleared. The browser
//!    then goes to the `post_logout_redirect_uri` with `state`, or sees a
//!    page saying it is signed out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::Inner;
use super::authorize::{Params, Repeated, label};
use super::jwt::{self, Expect, ID_TOKEN_TYP};
use super::oidc::IdClaims;
use crate::store::{ConsumerRecord, StoreError};
use crate::web::csrf::CSRF_FIELD;

/// A checked logout request.
struct LogoutRequest {
    /// The client asking, from `client_id` or the hint's `aud`.
    consumer: Option<ConsumerRecord>,
    /// The registered URI to send the browser to afterwards.
    redirect: Option<String>,
    state: Option<String>,
    /// The hint, when it verified.
    hint: Option<IdClaims>,
}

/// A hidden field of the confirmation form.
#[derive(Serialize)]
struct Field<'a> {
    name: &'static str,
    value: &'a str,
}

/// The values of the confirmation page.
#[derive(Serialize)]
struct ConfirmView<'a> {
    username: &'a str,
    client_label: &'a str,
    action: &'a str,
    csrf_token: &'a str,
    fields: Vec<Field<'a>>,
}

/// The endpoint: the client's request (GET, or a POST of its form), or the
/// confirmation form's POST (`step=confirm`).
pub(crate) async fn logout(
    State(server): State<Arc<Inner>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = if method == Method::POST {
        Params::parse(&body)
    } else {
        Params::parse(query.as_deref().unwrap_or_default().as_bytes())
    };
    let confirmed = method == Method::POST && params.one("step").ok().flatten() == Some("confirm");
    if confirmed && !server.signin.csrf_ok(&headers, params.one(CSRF_FIELD).ok().flatten()) {
        tracing::warn!("a sign-out form came without a valid CSRF token");
        return server.signin.pages().error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form expired or was not sent from this site. Go back to the application and sign out again.",
        );
    }
    let outcome = match check(&server, &params).await {
        Ok(request) => end_or_confirm(&server, &headers, &request, confirmed).await,
        Err(Refused::Bad(message)) => {
            return server.signin.pages().error(StatusCode::BAD_REQUEST, "Invalid request", &message);
        }
        Err(Refused::Store(e)) => Err(e),
    };
    match outcome {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "the logout endpoint failed");
            server.signin.pages().error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The server could not handle the request. Try again later.",
            )
        }
    }
}

/// Why a logout request was not taken.
enum Refused {
    /// The request is wrong: an error page (400) saying this.
    Bad(String),
    /// The store failed.
    Store(StoreError),
}

/// Step 1: the client, the hint and the redirect URI, or why not.
async fn check(server: &Inner, params: &Params) -> Result<LogoutRequest, Refused> {
    let page = |message: &str| Refused::Bad(message.to_owned());
    let one = |name: &'static str| {
        params.one(name).map_err(|Repeated(n)| page(&format!("The request sends `{n}` more than once.")))
    };
    let hint = one("id_token_hint")?.and_then(|token| verify_hint(server, token));
    let client_id = match (one("client_id")?, &hint) {
        (Some(id), Some(h)) if id != h.aud => {
            return Err(page("The id_token_hint was issued to another client than client_id names."));
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(h)) => Some(h.aud.clone()),
        (None, None) => None,
    };
    let consumer = match client_id {
        None => None,
        Some(id) => match server.store.consumer(&id).await {
            Ok(Some(consumer)) => Some(consumer),
            Ok(None) => return Err(page("The client is unknown to this server.")),
            Err(e) => return Err(Refused::Store(e)),
        },
    };
    let redirect = match (one("post_logout_redirect_uri")?, &consumer) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(page(
                "The request names a post_logout_redirect_uri but no client (client_id or a valid id_token_hint).",
            ));
        }
        (Some(uri), Some(c)) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.to_owned()),
        (Some(_), Some(c)) => {
            tracing::info!(client_id = %c.client_id, "logout refused: post_logout_redirect_uri is not registered");
            return Err(page("The post_logout_redirect_uri is not registered for this client."));
        }
    };
    let state = one("state")?.map(str::to_owned);
    Ok(LogoutRequest { consumer, redirect, state, hint })
}

/// The hint's claims, when it is an ID token of ours; the reason is logged
/// when not (never the token).
fn verify_hint(server: &Inner, token: &str) -> Option<IdClaims> {
    let expect = Expect::new(ID_TOKEN_TYP, server.issuer.clone())
        .leeway(u64::try_from(server.session_ttl).unwrap_or(u64::MAX));
    match jwt::verify::<IdClaims>(&server.keys.current(), token, &expect) {
        Ok(claims) => Some(claims),
        Err(e) => {
            tracing::info!(error = %e, "logout: the id_token_hint is not trusted");
            None
        }
    }
}

/// Step 2 and 3: end the session (at once, or once confirmed), or ask.
async fn end_or_confirm(
    server: &Inner,
    headers: &HeaderMap,
    request: &LogoutRequest,
    confirmed: bool,
) -> Result<Response, StoreError> {
    let session = server.signin.current_session(headers).await?;
    let ids = server.signin.session_ids(headers, None);
    let (Some((user, _)), Some((id_hash, sid))) = (session, ids) else {
        // Nothing to end here: the browser is signed out already.
        return Ok(done(server, request, None));
    };
    let hinted = request
        .hint
        .as_ref()
        .is_some_and(|h| h.sub == user.username && h.sid.as_deref().is_none_or(|s| s == sid));
    if !(confirmed || hinted) {
        return Ok(confirm_page(server, headers, request, &user.username));
    }
    server.store.end_session(&id_hash, &sid).await?;
    server.backchannel.wake();
    tracing::info!(
        username = %user.username,
        client_id = request.consumer.as_ref().map_or("", |c| c.client_id.as_str()),
        "signed out (RP-initiated logout)"
    );
    Ok(done(server, request, Some(server.signin.clear_session_cookie())))
}

/// The confirmation page, whose form posts the checked request back here.
fn confirm_page(server: &Inner, headers: &HeaderMap, request: &LogoutRequest, username: &str) -> Response {
    let (csrf_token, new_cookie) = server.signin.csrf_token(headers);
    let mut fields = Vec::new();
    if let Some(c) = &request.consumer {
        fields.push(Field { name: "client_id", value: &c.client_id });
    }
    if let Some(uri) = &request.redirect {
        fields.push(Field { name: "post_logout_redirect_uri", value: uri });
    }
    if let Some(state) = &request.state {
        fields.push(Field { name: "state", value: state });
    }
    let view = ConfirmView {
        username,
        client_label: request.consumer.as_ref().map_or("", label),
        action: "/oauth/logout",
        csrf_token: &csrf_token,
        fields,
    };
    let target = request.redirect.as_deref().and_then(crate::web::pages::form_target);
    let mut page =
        server.signin.pages().render("logout.html", "Sign out?", &view, StatusCode::OK, target.as_deref());
    if let Some(cookie) = new_cookie {
        page.headers_mut().append(SET_COOKIE, cookie);
    }
    page
}

/// Where the browser goes once signed out: the registered URI with
/// `state`, or a page saying so.
fn done(server: &Inner, request: &LogoutRequest, cookie: Option<HeaderValue>) -> Response {
    let location = request.redirect.as_deref().and_then(|uri| {
        let mut url = url::Url::parse(uri).ok()?;
        if let Some(state) = &request.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        HeaderValue::from_str(url.as_str()).ok()
    });
    let mut res = match location {
        Some(location) => {
            let mut res = StatusCode::SEE_OTHER.into_response();
            res.headers_mut().insert(LOCATION, location);
            res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        None => server.signin.pages().message(StatusCode::OK, "Signed out", "You are signed out.", &[]),
    };
    if let Some(cookie) = cookie {
        res.headers_mut().append(SET_COOKIE, cookie);
    }
    res
}
