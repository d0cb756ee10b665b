//! The OAuth client role: `{base}/api/providers` (what CiviCRM's "Register
//! Client" tab shows), `{base}/api/clients` (registrations at providers)
//! and their provider tokens: list (no secrets), fetch by client
//! credentials or password, inspect (raw tokens and unverified JWT claims,
//! with `manage oauth client secrets`), delete and refresh. Each answers
//! 404 when the client role is off.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Body, Caller, reply};
use crate::admin::{Site, records};
use crate::client::admin::{self as ops, FetchGrant};
use crate::client::provider::Provider;
use crate::client::registry::Registration;
use crate::client::tokens::Tokens;
use crate::config::Secret;
use crate::store::{MANAGE_SECRETS, ProviderTokenRecord};

fn client_role(site: &Site) -> Result<&Arc<Tokens>, ApiError> {
    site.tokens.as_ref().ok_or_else(ApiError::no_client_role)
}

fn provider_row(p: &Provider, clients: usize) -> Value {
    json!({ "name": p.name, "title": p.title, "source": p.source, "scopes": p.scopes, "clients": clients })
}

fn client_row(r: &Registration) -> Value {
    let (client_credentials, password) = records::other_grants(&r.provider);
    json!({
        "name": r.name, "label": r.label, "provider": r.provider.name, "client_id": r.creds.client_id,
        "tenant": r.tenant, "scopes": r.scopes, "source": r.source,
        "start_url": format!("/oauth/start/{}", r.name),
        "grants": { "client_credentials": client_credentials, "password": password },
    })
}

fn token_row(t: &ProviderTokenRecord, now: i64) -> Value {
    json!({
        "id": t.id, "client": t.client, "tag": t.tag, "grant_type": t.grant_type, "scopes": t.scopes,
        "token_type": t.token_type, "expires_at": t.expires_at,
        "owner": { "id": t.owner_id, "name": t.owner_name, "email": t.owner_email },
        "status": records::token_status(t, now), "last_error": t.last_error,
        "created_at": t.created_at, "updated_at": t.updated_at,
    })
}

/// `GET {base}/api/providers`.
pub(crate) async fn providers(_caller: Caller, State(site): State<Arc<Site>>) -> Result<Response, ApiError> {
    let tokens = client_role(&site)?;
    let clients = tokens.registry().list().await?;
    let providers = tokens.registry().providers();
    let rows = providers
        .iter()
        .map(|p| provider_row(p, clients.iter().filter(|c| c.provider.name == p.name).count()));
    Ok(reply(StatusCode::OK, rows.collect()))
}

/// `GET {base}/api/providers/{name}`: with the Redirect URL to register at
/// the provider (and the warning when providers will refuse it).
pub(crate) async fn provider(
    _caller: Caller,
    State(site): State<Arc<Site>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tokens = client_role(&site)?;
    let p = tokens
        .registry()
        .provider(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no provider `{name}`")))?;
    let clients: Vec<_> =
        tokens.registry().list().await?.into_iter().filter(|c| c.provider.name == p.name).collect();
    let (redirect_url, warning) = site.redirect.clone().unwrap_or_default();
    let (client_credentials, password) = records::other_grants(&p);
    let mut body = provider_row(&p, clients.len());
    body["tenant"] = json!(p.tenant);
    body["redirect_url"] = json!(redirect_url);
    body["redirect_url_warning"] = json!(warning);
    body["grants"] = json!({ "client_credentials": client_credentials, "password": password });
    body["clients"] = clients.iter().map(client_row).collect();
    Ok(reply(StatusCode::OK, body))
}

/// `GET {base}/api/clients`.
pub(crate) async fn clients(_caller: Caller, State(site): State<Arc<Site>>) -> Result<Response, ApiError> {
    let all = client_role(&site)?.registry().list().await?;
    Ok(reply(StatusCode::OK, all.iter().map(client_row).collect()))
}

/// `POST {base}/api/clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClient {
    name: Option<String>,
    provider: String,
    client_id: String,
    client_secret: Option<String>,
    tenant: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    label: String,
}

/// `POST {base}/api/clients`: registers the credentials a provider issued;
/// the secret is stored encrypted under the token key, never answered.
pub(crate) async fn create_client(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Body(body): Body<NewClient>,
) -> Result<Response, ApiError> {
    let tokens = client_role(&site)?;
    if body.client_id.trim().is_empty() {
        return Err(ApiError::BadRequest("`client_id` is the Client ID the provider gave you".into()));
    }
    let name = body.name.unwrap_or_else(|| body.provider.clone());
    let secret = body.client_secret.map(Secret::new);
    let registry = tokens.registry();
    registry
        .create(&name, &body.provider, &body.client_id, secret.as_ref(), body.tenant, body.scopes, body.label)
        .await?;
    tracing::info!(admin_token = %caller, client = %name, provider = %body.provider, "client registered");
    let created = registry.get(&name).await?.ok_or_else(|| ApiError::server(&"a new client is gone"))?;
    Ok(reply(StatusCode::CREATED, client_row(&created)))
}

async fn registration(tokens: &Tokens, name: &str) -> Result<Registration, ApiError> {
    tokens.registry().get(name).await?.ok_or_else(|| ApiError::NotFound(format!("no client `{name}`")))
}

/// `GET {base}/api/clients/{name}`.
pub(crate) async fn client(
    _caller: Caller,
    State(site): State<Arc<Site>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(reply(StatusCode::OK, client_row(&registration(client_role(&site)?, &name).await?)))
}

/// `DELETE {base}/api/clients/{name}`: the registration and its tokens.
pub(crate) async fn delete_client(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    client_role(&site)?.registry().delete(&name).await?;
    tracing::info!(admin_token = %caller, client = %name, "client deleted");
    Ok(reply(StatusCode::OK, json!({ "deleted": name })))
}

/// `GET {base}/api/clients/{name}/tokens`: no secrets.
pub(crate) async fn tokens(
    _caller: Caller,
    State(site): State<Arc<Site>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let reg = registration(client_role(&site)?, &name).await?;
    let now = crate::clock::now();
    let stored = site.store.provider_tokens().await?;
    Ok(reply(
        StatusCode::OK,
        stored.iter().filter(|t| t.client == reg.name).map(|t| token_row(t, now)).collect(),
    ))
}

/// `POST {base}/api/clients/{name}/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fetch {
    grant: String,
    tag: Option<String>,
    scopes: Option<Vec<String>>,
    username: Option<String>,
    password: Option<String>,
}

/// `POST {base}/api/clients/{name}/tokens`: a token by client credentials
/// or a resource owner's password, stored under `tag` (default `default`,
/// or the username).
pub(crate) async fn fetch_token(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(name): Path<String>,
    Body(body): Body<Fetch>,
) -> Result<Response, ApiError> {
    let tokens = client_role(&site)?;
    let (grant, default_tag) = match (body.grant.as_str(), body.username, body.password) {
        ("client_credentials", None, None) => (FetchGrant::ClientCredentials, "default".to_owned()),
        ("password", Some(username), Some(password)) if !username.is_empty() => {
            (FetchGrant::Password { username: username.clone(), password: Secret::new(password) }, username)
        }
        ("password", _, _) => {
            return Err(ApiError::BadRequest("the password grant needs `username` and `password`".into()));
        }
        ("client_credentials", _, _) => {
            return Err(ApiError::BadRequest(
                "the client_credentials grant takes no username or password".into(),
            ));
        }
        (other, _, _) => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a grant here: use client_credentials or password"
            )));
        }
    };
    let tag = body.tag.unwrap_or(default_tag);
    ops::token_fetch(tokens, &name, grant, Some(tag.clone()), body.scopes).await?;
    tracing::info!(admin_token = %caller, client = %name, tag = %tag, "provider token fetched");
    let stored = site.store.provider_token_by_tag(&name, &tag).await?;
    let stored = stored.ok_or_else(|| ApiError::server(&"a fetched provider token is gone"))?;
    Ok(reply(StatusCode::CREATED, token_row(&stored, crate::clock::now())))
}

/// The client role's token store and the provider token with the id in a
/// path (a number, else 404).
async fn stored_token<'a>(
    site: &'a Site,
    id: &str,
) -> Result<(&'a Arc<Tokens>, ProviderTokenRecord), ApiError> {
    let tokens = client_role(site)?;
    let missing = || ApiError::NotFound(format!("no token {id}"));
    let id: i64 = id.parse().map_err(|_| missing())?;
    Ok((tokens, site.store.provider_token(id).await?.ok_or_else(missing)?))
}

/// `GET {base}/api/tokens/{id}`: the raw tokens and response, and the
/// access token's JWT header and claims (unverified); needs `manage oauth
/// client secrets`.
pub(crate) async fn inspect_token(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(MANAGE_SECRETS)?;
    let (tokens, t) = stored_token(&site, &id).await?;
    let doc = ops::inspect(tokens, &t)?;
    tracing::info!(admin_token = %caller, client = %t.client, token = t.id, "provider token inspected");
    Ok(reply(StatusCode::OK, doc))
}

/// `DELETE {base}/api/tokens/{id}`: revoked at the provider when it can
/// be; the answer's `notes` say what was done.
pub(crate) async fn delete_token(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (tokens, t) = stored_token(&site, &id).await?;
    let notes = ops::delete(tokens, site.store.as_ref(), &t).await?;
    tracing::info!(admin_token = %caller, client = %t.client, token = t.id, "provider token deleted");
    Ok(reply(StatusCode::OK, json!({ "deleted": t.id, "notes": notes })))
}

/// `POST {base}/api/tokens/{id}/refresh`: refreshes now (client
/// credentials are asked again when there is no refresh token).
pub(crate) async fn refresh_token(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (tokens, t) = stored_token(&site, &id).await?;
    ops::token_refresh(tokens, site.store.as_ref(), t.id).await?;
    tracing::info!(admin_token = %caller, client = %t.client, token = t.id, "provider token refreshed");
    let now = crate::clock::now();
    let t = site.store.provider_token_by_tag(&t.client, &t.tag).await?.unwrap_or(t);
    Ok(reply(StatusCode::OK, token_row(&t, now)))
}
