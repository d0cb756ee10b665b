//! `/oauth/start/{client}`: a signed-in admin connects a provider account.
//!
//! A `GET` (`tag`, `scope`, `return_to` optional) only shows a confirmation
//! page: the client, provider, tag, scopes, and whether the token stored
//! under that tag is replaced. Its button posts back to the same URL with a
//! CSRF token, and only that post goes on to the provider: it makes a
//! random state (256 bits), a PKCE S256 verifier and an OpenID nonce,
//! stores them for `client.state_ttl` (default 10 minutes) bound to this
//! browser by the `oauth_sidecar_client` cookie (`HttpOnly`, `SameSite=Lax`,
//! limited to the return path), and redirects to the provider. So a link
//! or form on another site can no longer replace the token an egress route
//! uses: it gets the page, not the provider. A browser without a session
//! gets the sign-in page first (a post with `step=login`).
//!
//! An admin connects any tag; any other signed-in user only the tag that is
//! their own username (their own account, for `upstream_token` rules with
//! the tag `{username}`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use oauth2::PkceCodeChallenge;
use serde::Serialize;

use super::Inner;
use super::flow::{BROWSER_COOKIE, local_path, param, params, server_error};
use super::registry::Registration;
use crate::clock::now;
use crate::proxy::ConnectionInfo;
use crate::store::{ClientStateRecord, UserRecord, token_hash};
use crate::web::cookie::{cookie, set_cookie};
use crate::web::csrf::CSRF_FIELD;
use crate::web::origin::public_address;
use crate::web::secrets::{is_token, random_token};
use crate::web::signin::LoginForm;

/// What a start asks for, read from its query.
struct Asked {
    tag: Option<String>,
    scopes: Vec<String>,
    return_to: Option<String>,
}

/// The values of `start.html` (see [`crate::web::pages`]).
#[derive(Serialize)]
struct ConfirmView<'a> {
    username: &'a str,
    client: &'a str,
    client_label: &'a str,
    provider: &'a str,
    tag: Option<&'a str>,
    scopes: &'a [String],
    replaces: bool,
    replaces_owner: Option<String>,
    action: &'a str,
    csrf_token: &'a str,
}

/// `GET|POST /oauth/start/{client}`.
#[allow(clippy::too_many_arguments)] // one argument per axum extractor
pub(crate) async fn start(
    State(inner): State<Arc<Inner>>,
    Path(client): Path<String>,
    method: Method,
    uri: Uri,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let pages = inner.signin.pages();
    if let Some(moved) = public_address(&inner.redirect_url, &method, &headers, &uri) {
        return moved;
    }
    let action = match uri.query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_owned(),
    };
    let label = format!("Connect {client} (oauth-sidecar administration)");
    // Both forms of this URL end, through its redirect, at the provider:
    // their pages' CSP must allow its origin.
    let reg = inner.tokens.registry().get(&client).await;
    let form_target = match &reg {
        Ok(Some(reg)) => inner.tokens.authorize_target(reg).await,
        _ => None,
    };
    let form = LoginForm { action: &action, label: &label, form_target: form_target.as_deref() };
    let fields = params(Some(&String::from_utf8_lossy(&body)));
    let confirmed = method == Method::POST && param(&fields, "step") == Some("start");
    if method == Method::POST && !confirmed {
        let conn = conn.map(|Extension(c)| c);
        return inner.signin.post_form(&headers, conn.as_ref(), &body, &form).await;
    }
    let user = match inner.signin.current_user(&headers).await {
        Ok(Some(user)) => user,
        Ok(None) => return inner.signin.login_page(&headers, &form, "", None, StatusCode::OK),
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    // A user who is not an admin may connect their own account: the token
    // tagged with their username, which `upstream_token` rules with the tag
    // `{username}` send with their requests.
    let own = param(&params(query.as_deref()), "tag") == Some(user.username.as_str());
    if !own && !user.may(crate::store::ADMINISTER_OAUTH) {
        tracing::warn!(username = %user.username, client = %client, "a user who is not an admin tried to start an authorization");
        return pages.error(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an administrator can connect a provider account, or one tagged with another user's name.",
        );
    }
    if confirmed && !inner.signin.csrf_ok(&headers, param(&fields, CSRF_FIELD)) {
        tracing::warn!(username = %user.username, client = %client, "an authorization start was refused: CSRF token");
        return pages.error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form expired or was not sent from this site. Open the page again.",
        );
    }
    let reg = match reg {
        Ok(Some(reg)) => reg,
        Ok(None) => {
            return pages.error(
                StatusCode::NOT_FOUND,
                "Unknown client",
                "No OAuth client by that name is registered.",
            );
        }
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    let asked = match asked(&reg, query.as_deref()) {
        Ok(asked) => asked,
        Err(message) => return pages.error(StatusCode::BAD_REQUEST, "Invalid request", message),
    };
    if confirmed {
        redirect(&inner, &headers, &user, &reg, asked).await
    } else {
        confirm(&inner, &headers, &user, &reg, &asked, &action, form.form_target).await
    }
}

/// The start's query, checked: `return_to` a path here, `tag` short and
/// without control characters, `scope` (else the client's scopes).
fn asked(reg: &Registration, query: Option<&str>) -> Result<Asked, &'static str> {
    let q = params(query);
    let return_to = param(&q, "return_to");
    if return_to.is_some_and(|r| !local_path(r)) {
        return Err("return_to must be a path on this site.");
    }
    let tag = param(&q, "tag");
    if tag.is_some_and(|t| t.len() > 200 || t.chars().any(char::is_control)) {
        return Err("The tag is too long or has control characters.");
    }
    let scopes = match param(&q, "scope") {
        Some(s) => s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
        None => reg.scopes.clone(),
    };
    Ok(Asked { tag: tag.map(str::to_owned), scopes, return_to: return_to.map(str::to_owned) })
}

/// The confirmation page of a `GET`.
async fn confirm(
    inner: &Inner,
    headers: &HeaderMap,
    user: &UserRecord,
    reg: &Registration,
    asked: &Asked,
    action: &str,
    form_target: Option<&str>,
) -> Response {
    let stored = match &asked.tag {
        Some(tag) => match inner.store.provider_token_by_tag(&reg.name, tag).await {
            Ok(found) => found,
            Err(e) => return server_error(inner, &e.to_string()),
        },
        None => None,
    };
    let (csrf_token, new_cookie) = inner.signin.csrf_token(headers);
    let view = ConfirmView {
        username: &user.username,
        client: &reg.name,
        client_label: if reg.label.is_empty() { &reg.name } else { &reg.label },
        provider: &reg.provider.title,
        tag: asked.tag.as_deref(),
        scopes: &asked.scopes,
        replaces: stored.is_some(),
        replaces_owner: stored.and_then(|t| t.owner_email.or(t.owner_name).or(t.owner_id)),
        action,
        csrf_token: &csrf_token,
    };
    let mut page =
        inner.signin.pages().render("start.html", "Connect an account", &view, StatusCode::OK, form_target);
    if let Some(cookie) = new_cookie {
        page.headers_mut().append(SET_COOKIE, cookie);
    }
    page
}

/// The confirmed start: the state stored, the redirect to the provider.
async fn redirect(
    inner: &Inner,
    headers: &HeaderMap,
    user: &UserRecord,
    reg: &Registration,
    asked: Asked,
) -> Response {
    let pages = inner.signin.pages();
    let ep = match inner.tokens.http().endpoints(&reg.provider, reg.tenant.as_deref()).await {
        Ok(ep) => ep,
        Err(e) => {
            tracing::warn!(client = %reg.name, error = %e, "cannot start an authorization");
            return pages.error(
                StatusCode::BAD_GATEWAY,
                "Provider unavailable",
                &format!("The provider's settings could not be read: {e}"),
            );
        }
    };
    let state = random_token();
    let nonce = random_token();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = match inner.tokens.http().authorize_url(
        &ep,
        &reg.creds,
        &inner.redirect_url,
        &asked.scopes,
        &reg.provider.auth_params,
        &state,
        challenge,
        &nonce,
    ) {
        Ok(url) => url,
        Err(e) => return pages.error(StatusCode::BAD_GATEWAY, "Provider misconfigured", &e.to_string()),
    };
    let (browser, new_cookie) = match cookie(headers, BROWSER_COOKIE).filter(|v| is_token(v)) {
        Some(v) => (v.to_owned(), false),
        None => (random_token(), true),
    };
    let state_hash = token_hash(&state);
    let record = ClientStateRecord {
        verifier: inner.tokens.cipher().seal(&format!("state:{state_hash}"), verifier.secret().as_bytes()),
        state_hash,
        client: reg.name.clone(),
        browser_hash: token_hash(&browser),
        nonce,
        tag: asked.tag,
        scopes: asked.scopes,
        return_to: asked.return_to,
        expires_at: now().saturating_add(inner.state_ttl),
    };
    if let Err(e) = inner.store.add_client_state(&record).await {
        return server_error(inner, &e.to_string());
    }
    tracing::info!(client = %reg.name, username = %user.username, "authorization started; redirecting to the provider");
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return pages.error(
            StatusCode::BAD_GATEWAY,
            "Provider misconfigured",
            "The authorization URL is not valid.",
        );
    };
    // 303: the browser follows a post's redirect with a GET.
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(LOCATION, location);
    res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if new_cookie {
        let cookie = set_cookie(&inner.return_path, BROWSER_COOKIE, &browser, None, "Lax", inner.secure);
        res.headers_mut().append(SET_COOKIE, cookie);
    }
    res
}
