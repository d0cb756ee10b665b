//! The authorization code flow toward a provider, for a signed-in admin.
//!
//! `GET /oauth/start/{client}` (`tag`, `scope`, `return_to` optional) makes
//! a random state (256 bits), a PKCE S256 verifier and an OpenID nonce,
//! stores them for `client.state_ttl` (default 10 minutes) bound to this
//! browser by the `oauth_sidecar_client` cookie (`HttpOnly`, `SameSite=Lax`,
//! limited to the return path), and redirects to the provider.
//!
//! `GET {return_path}` takes the state once, and refuses it when unknown,
//! used, expired or started in another browser; shows the provider's
//! `error=` as a page; exchanges the code; checks the ID token (signature
//! by the provider's JWKS, `iss`, `aud`, `exp`, `nonce`); reads the resource
//! owner (userinfo, else the ID token's claims); stores the token and shows
//! a landing page, or redirects to `return_to`. Every refusal stores nothing.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use oauth2::PkceCodeChallenge;

use super::Inner;
use super::protocol::Owner;
use super::tokens::NewToken;
use crate::clock::now;
use crate::proxy::ConnectionInfo;
use crate::store::{ClientStateRecord, token_hash};
use crate::web::cookie::{cookie, set_cookie};
use crate::web::origin::public_address;
use crate::web::secrets::{is_token, random_token};
use crate::web::signin::LoginForm;

/// The cookie that binds a started authorization to its browser.
pub const BROWSER_COOKIE: &str = "oauth_sidecar_client";

fn params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn param<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A `return_to` that stays on this site: a path, not `//host` or `/\host`.
fn local_path(v: &str) -> bool {
    v.starts_with('/') && !v.starts_with("//") && !v.starts_with("/\\") && !v.chars().any(|c| c.is_control())
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
    // The sign-in's post ends, through this page's redirect, at the
    // provider: the sign-in page's CSP must allow its origin.
    let reg = inner.tokens.registry().get(&client).await;
    let form_target = match &reg {
        Ok(Some(reg)) => inner.tokens.authorize_target(reg).await,
        _ => None,
    };
    let form = LoginForm { action: &action, label: &label, form_target: form_target.as_deref() };
    if method == Method::POST {
        let conn = conn.map(|Extension(c)| c);
        return inner.signin.post_form(&headers, conn.as_ref(), &body, &form).await;
    }
    let user = match inner.signin.current_user(&headers).await {
        Ok(Some(user)) => user,
        Ok(None) => return inner.signin.login_page(&headers, &form, "", None, StatusCode::OK),
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    if !user.may(crate::store::ADMINISTER_OAUTH) {
        tracing::warn!(username = %user.username, client = %client, "a user who is not an admin tried to start an authorization");
        return pages.error(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an administrator can connect a provider account.",
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
    let q = params(query.as_deref());
    let return_to = param(&q, "return_to");
    if return_to.is_some_and(|r| !local_path(r)) {
        return pages.error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "return_to must be a path on this site.",
        );
    }
    let tag = param(&q, "tag");
    if tag.is_some_and(|t| t.len() > 200 || t.chars().any(char::is_control)) {
        return pages.error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The tag is too long or has control characters.",
        );
    }
    let scopes: Vec<String> = match param(&q, "scope") {
        Some(s) => s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
        None => reg.scopes.clone(),
    };
    let ep = match inner.tokens.http().endpoints(&reg.provider, reg.tenant.as_deref()).await {
        Ok(ep) => ep,
        Err(e) => {
            tracing::warn!(client = %client, error = %e, "cannot start an authorization");
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
        &scopes,
        &reg.provider.auth_params,
        &state,
        challenge,
        &nonce,
    ) {
        Ok(url) => url,
        Err(e) => return pages.error(StatusCode::BAD_GATEWAY, "Provider misconfigured", &e.to_string()),
    };
    let (browser, new_cookie) = match cookie(&headers, BROWSER_COOKIE).filter(|v| is_token(v)) {
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
        tag: tag.map(str::to_owned),
        scopes,
        return_to: return_to.map(str::to_owned),
        expires_at: now().saturating_add(inner.state_ttl),
    };
    if let Err(e) = inner.store.add_client_state(&record).await {
        return server_error(&inner, &e.to_string());
    }
    tracing::info!(client = %reg.name, username = %user.username, "authorization started; redirecting to the provider");
    let mut res = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(url.as_str()) {
        Ok(v) => res.headers_mut().insert(LOCATION, v),
        Err(_) => {
            return pages.error(
                StatusCode::BAD_GATEWAY,
                "Provider misconfigured",
                "The authorization URL is not valid.",
            );
        }
    };
    res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if new_cookie {
        let cookie = set_cookie(&inner.return_path, BROWSER_COOKIE, &browser, None, "Lax", inner.secure);
        res.headers_mut().append(SET_COOKIE, cookie);
    }
    res
}

fn server_error(inner: &Inner, e: &str) -> Response {
    tracing::error!(error = %e, "the OAuth client failed");
    inner.signin.pages().error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "The server could not handle the request. Try again later.",
    )
}

/// `GET {return_path}`: the provider's redirect back.
pub(crate) async fn finish(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pages = inner.signin.pages();
    let refuse = |status: StatusCode, title: &str, message: &str| {
        tracing::warn!(reason = %message, "an OAuth return was refused");
        pages.error(status, title, message)
    };
    let q = params(query.as_deref());
    let Some(state) = param(&q, "state") else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid return", "The provider's answer carries no state.");
    };
    let record = match inner.store.take_client_state(&token_hash(state), now()).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Unknown or used state",
                "This authorization is unknown or was already completed. Start again.",
            );
        }
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    if record.expires_at <= now() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Authorization expired",
            "This authorization took too long and expired. Start again.",
        );
    }
    let same_browser = cookie(&headers, BROWSER_COOKIE).is_some_and(|v| token_hash(v) == record.browser_hash);
    if !same_browser {
        // The cookie is kept per host name: a start at another address of
        // this site (127.0.0.1 for localhost) looks like another browser.
        let start = url::Url::parse(&inner.redirect_url)
            .map(|u| format!("{}/oauth/start/{}", u.origin().ascii_serialization(), record.client));
        let message = format!(
            "This browser has no record of starting this authorization: it was started in another browser, \
             or at another address of this site. Start again in this browser at {}.",
            start.as_deref().unwrap_or("/oauth/start")
        );
        return refuse(StatusCode::BAD_REQUEST, "Authorization not started here", &message);
    }
    if let Some(error) = param(&q, "error") {
        let description = param(&q, "error_description").unwrap_or_default();
        tracing::info!(client = %record.client, error, "the provider refused the authorization");
        let message = if error == "access_denied" {
            format!("Access was denied at the provider. Nothing was stored. {description}")
        } else {
            format!("The provider answered `{error}`. Nothing was stored. {description}")
        };
        return pages.error(StatusCode::BAD_REQUEST, "Authorization refused", message.trim_end());
    }
    let Some(code) = param(&q, "code") else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid return", "The provider's answer carries no code.");
    };
    let reg = match inner.tokens.registry().get(&record.client).await {
        Ok(Some(reg)) => reg,
        Ok(None) => {
            return refuse(StatusCode::NOT_FOUND, "Unknown client", "The client was removed meanwhile.");
        }
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    let http = inner.tokens.http();
    let failed = |title: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(client = %reg.name, error = %e, "{title}");
        pages.error(StatusCode::BAD_GATEWAY, title, &format!("{e}. Nothing was stored."))
    };
    let ep = match http.endpoints(&reg.provider, reg.tenant.as_deref()).await {
        Ok(ep) => ep,
        Err(e) => return failed("Provider unavailable", &e),
    };
    if let Err(e) = ep.check_response_iss(param(&q, "iss")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Authorization response refused",
            &format!("{e}. Nothing was stored."),
        );
    }
    let verifier =
        match inner.tokens.cipher().open_text(&format!("state:{}", record.state_hash), &record.verifier) {
            Ok(v) => v,
            Err(e) => return server_error(&inner, &e.to_string()),
        };
    let grant = match http.exchange_code(&ep, &reg.creds, &inner.redirect_url, code, verifier).await {
        Ok(g) => g,
        Err(e) => return failed("The code exchange failed", &e),
    };
    let mut owner = Owner::default();
    if let Some(id_token) = &grant.id_token {
        match http.verify_id_token(&ep, &reg.creds, id_token, &record.nonce).await {
            Ok((from_id, _)) => owner = from_id,
            Err(e) => return failed("The ID token was refused", &e),
        }
    } else if record.scopes.iter().any(|s| s == "openid") {
        return failed("The ID token was refused", &"the provider sent no ID token for the openid scope");
    }
    if ep.userinfo.is_some() {
        match http.owner(&ep, &grant.access_token).await {
            Ok(found) => {
                owner = Owner {
                    id: found.id.or(owner.id),
                    name: found.name.or(owner.name),
                    email: found.email.or(owner.email),
                }
            }
            Err(e) => {
                tracing::info!(client = %reg.name, error = %e, "no resource owner from userinfo; using the ID token's claims")
            }
        }
    }
    let tag = record
        .tag
        .clone()
        .or_else(|| owner.email.clone())
        .or_else(|| owner.id.clone())
        .unwrap_or_else(|| "default".to_owned());
    let id = match inner
        .tokens
        .save(NewToken {
            client: &reg.name,
            tag: &tag,
            grant_type: "authorization_code",
            asked: &record.scopes,
            grant: &grant,
            owner: &owner,
        })
        .await
    {
        Ok(id) => id,
        Err(e) => return server_error(&inner, &e.to_string()),
    };
    tracing::info!(client = %reg.name, tag = %tag, token_id = id, owner = ?owner.id, "provider token stored");
    if let Some(to) = &record.return_to {
        let mut res = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            res.headers_mut().insert(LOCATION, v);
        }
        return res;
    }
    let who = owner.email.or(owner.name).or(owner.id).unwrap_or_else(|| "the account".into());
    let label = if reg.label.is_empty() { &reg.name } else { &reg.label };
    let message = format!(
        "{label} is connected for {who} with tag \"{tag}\" (client {}, provider {}). \
         The app behind this sidecar can now use the token through the egress routes of this client and tag.",
        reg.name, reg.provider.title
    );
    let client_path: String = url::form_urlencoded::byte_serialize(reg.name.as_bytes()).collect();
    let again = format!("/oauth/start/{client_path}");
    let mut links = Vec::new();
    let manage = inner.admin_path.as_ref().map(|admin| format!("{admin}/clients/{client_path}"));
    if let Some(manage) = &manage {
        links.push(("Back to this client's tokens", manage.as_str()));
    }
    links.push(("Connect another account", again.as_str()));
    pages.message(StatusCode::OK, "Connected", &message, &links)
}
