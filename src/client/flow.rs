//! The authorization code flow toward a provider, for a signed-in admin:
//! its start, `/oauth/start/{client}`, is the `start` module's; its end is here.
//!
//! `GET {return_path}` takes the state once, and refuses it when unknown,
//! used, expired or started in another browser; shows the provider's
//! `error=` as a page; exchanges the code; checks the ID token (signature
//! by the provider's JWKS, `iss`, `aud`, `exp`, `nonce`); reads the resource
//! owner (userinfo, else the ID token's claims); stores the token and shows
//! a landing page, or redirects to `return_to`. Every refusal stores nothing.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::Inner;
use super::protocol::Owner;
use super::tokens::NewToken;
use crate::clock::now;
use crate::store::token_hash;
use crate::web::cookie::cookie;

/// The cookie that binds a started authorization to its browser.
pub const BROWSER_COOKIE: &str = "oauth_sidecar_client";

pub(super) fn params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub(super) fn param<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A `return_to` that stays on this site: a path, not `//host` or `/\host`.
pub(super) fn local_path(v: &str) -> bool {
    v.starts_with('/') && !v.starts_with("//") && !v.starts_with("/\\") && !v.chars().any(|c| c.is_control())
}

pub(super) fn server_error(inner: &Inner, e: &str) -> Response {
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
