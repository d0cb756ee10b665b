//! Providers and their clients (CiviCRM's OAuth page): the provider list;
//! per provider the "Register Client" tab (Redirect URL with its warning,
//! the scopes to copy, Client ID and Secret); per client the tokens table
//! with "Add (Auth Code)", client-credentials and password grants where
//! the provider allows them, "Inspect" (with `manage oauth client
//! secrets` only) and "Delete".

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::value;
use crate::admin::auth::{Posted, Viewer, forbidden, see_other};
use crate::admin::{Site, records};
use crate::client::ClientError;
use crate::client::admin::{self as ops, FetchGrant};
use crate::client::tokens::Tokens;
use crate::config::Secret;
use crate::store::{MANAGE_SECRETS, ProviderTokenRecord};

/// The page saying the client role is off.
fn no_client(site: &Site, viewer: &Viewer) -> Response {
    let ctx = minijinja::context! {
        message => "The OAuth client is not configured: add a `client:` section (with its token key) \
                    to the configuration file to register clients and keep provider tokens.",
    };
    site.templates.page(viewer, "message.html", "Providers", "providers", ctx)
}

/// What a client-role failure shows.
fn failed(site: &Site, viewer: &Viewer, e: ClientError) -> Response {
    match e {
        ClientError::NotFound(m) => site.templates.error(StatusCode::NOT_FOUND, "Not found", &m),
        ClientError::Usage(m) => {
            let ctx = minijinja::context! { message => m };
            site.templates.page_with_status(
                viewer,
                StatusCode::BAD_REQUEST,
                "message.html",
                "Refused",
                "providers",
                ctx,
            )
        }
        ClientError::Store(e) => site.templates.failure(&e),
        other => {
            let ctx = minijinja::context! { message => other.to_string() };
            site.templates.page_with_status(
                viewer,
                StatusCode::BAD_GATEWAY,
                "message.html",
                "Provider error",
                "providers",
                ctx,
            )
        }
    }
}

/// `GET {base}/providers`.
pub(crate) async fn list(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let clients = match tokens.registry().list().await {
        Ok(c) => c,
        Err(e) => return failed(&site, &viewer, e),
    };
    let rows: Vec<_> = tokens
        .registry()
        .providers()
        .iter()
        .map(|p| {
            let count = clients.iter().filter(|c| c.provider.name == p.name).count();
            json!({ "name": p.name, "title": p.title, "source": p.source, "clients": count })
        })
        .collect();
    site.templates.page(
        &viewer,
        "providers.html",
        "Providers",
        "providers",
        minijinja::context! { providers => value(rows) },
    )
}

async fn provider_page(
    site: &Site,
    viewer: &Viewer,
    tokens: &Tokens,
    name: &str,
    status: StatusCode,
    form: Value,
    error: Option<String>,
) -> Response {
    let Some(p) = tokens.registry().provider(name) else {
        return site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such provider.");
    };
    let clients = match tokens.registry().list().await {
        Ok(c) => c,
        Err(e) => return failed(site, viewer, e),
    };
    let clients: Vec<_> = clients
        .iter()
        .filter(|c| c.provider.name == p.name)
        .map(|c| json!({ "name": c.name, "label": c.label, "client_id": c.creds.client_id, "source": c.source }))
        .collect();
    let (redirect_url, warning) = site.redirect.clone().unwrap_or_default();
    let ctx = minijinja::context! {
        provider => value(json!({ "name": p.name, "title": p.title, "scopes": p.scopes.join(" "), "tenant": p.tenant })),
        redirect_url, warning, clients => value(clients), form => value(form), error,
    };
    let title = format!("{} ({})", p.title, p.name);
    site.templates.page_with_status(viewer, status, "provider.html", &title, "providers", ctx)
}

/// `GET {base}/providers/{provider}`: the "Register Client" tab and the
/// provider's clients.
pub(crate) async fn show(
    State(site): State<Arc<Site>>,
    Path(provider): Path<String>,
    viewer: Viewer,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let blank = json!({ "name": provider, "label": "", "client_id": "", "tenant": "" });
    provider_page(&site, &viewer, tokens, &provider, StatusCode::OK, blank, None).await
}

/// `POST {base}/providers/{provider}`: registers a client; the secret is
/// stored encrypted under the token key.
pub(crate) async fn register(
    State(site): State<Arc<Site>>,
    Path(provider): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let name = form.text("name");
    let name = if name.is_empty() { provider.clone() } else { name };
    let shown = json!({
        "name": name, "label": form.text("label"), "client_id": form.text("client_id"), "tenant": form.text("tenant"),
    });
    let client_id = form.text("client_id");
    if client_id.is_empty() {
        let e = Some("Enter the Client ID the provider gave you.".to_owned());
        return provider_page(&site, &viewer, tokens, &provider, StatusCode::BAD_REQUEST, shown, e).await;
    }
    let secret = form.get("client_secret").map(|s| Secret::new(s.to_owned()));
    let tenant = Some(form.text("tenant")).filter(|t| !t.is_empty());
    let created = tokens
        .registry()
        .create(&name, &provider, &client_id, secret.as_ref(), tenant, None, form.text("label"))
        .await;
    match created {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, client = %name, provider = %provider, "client registered");
            see_other(&format!("{}/clients/{name}", site.base))
        }
        Err(ClientError::Usage(m)) => {
            provider_page(&site, &viewer, tokens, &provider, StatusCode::BAD_REQUEST, shown, Some(m)).await
        }
        Err(e) => failed(&site, &viewer, e),
    }
}

fn token_row(t: &ProviderTokenRecord, now: i64) -> Value {
    json!({
        "id": t.id,
        "tag": t.tag,
        "grant_type": t.grant_type,
        "owner": t.owner_email.clone().or(t.owner_name.clone()).or(t.owner_id.clone()).unwrap_or_default(),
        "scopes": t.scopes.join(" "),
        "expires": t.expires_at.map(|e| crate::admin::web::when(e, now)),
        "status": records::token_status(t, now),
        "last_error": t.last_error,
    })
}

/// `GET {base}/clients/{client}`: the client and its tokens.
pub(crate) async fn client(
    State(site): State<Arc<Site>>,
    Path(client): Path<String>,
    viewer: Viewer,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let reg = match tokens.registry().get(&client).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such client.");
        }
        Err(e) => return failed(&site, &viewer, e),
    };
    let stored = match site.store.provider_tokens().await {
        Ok(t) => t,
        Err(e) => return site.templates.failure(&e),
    };
    let now = crate::clock::now();
    let rows: Vec<_> = stored.iter().filter(|t| t.client == reg.name).map(|t| token_row(t, now)).collect();
    let (client_credentials, password) = records::other_grants(&reg.provider);
    let start_path: String = url::form_urlencoded::byte_serialize(reg.name.as_bytes()).collect();
    let ctx = minijinja::context! {
        client => value(json!({
            "name": reg.name, "label": reg.label, "client_id": reg.creds.client_id,
            "from_file": reg.source == "config",
            "provider": reg.provider.name, "provider_title": reg.provider.title, "scopes": reg.scopes.join(" "),
        })),
        tokens => value(rows),
        routes => value(site.token_routes.load().iter().filter(|r| r.client == reg.name).collect::<Vec<_>>()),
        start_url => format!("/oauth/start/{start_path}"),
        return_to => format!("{}/clients/{}", site.base, reg.name),
        client_credentials, password,
    };
    // "Add (Auth Code)" is a form whose GET shows /oauth/start's
    // confirmation page, on this site: the page's CSP names no other origin.
    site.templates.page(&viewer, "client.html", &format!("Client {}", reg.name), "providers", ctx)
}

/// `POST {base}/clients/{client}/delete`: the registration and its tokens.
pub(crate) async fn delete_client(
    State(site): State<Arc<Site>>,
    Path(client): Path<String>,
    Posted { viewer, .. }: Posted,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    match tokens.registry().delete(&client).await {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, client = %client, "client deleted");
            see_other(&format!("{}/providers", site.base))
        }
        Err(e) => failed(&site, &viewer, e),
    }
}

/// `POST {base}/clients/{client}/fetch`: a token by client credentials or
/// by a resource owner's password.
pub(crate) async fn fetch(
    State(site): State<Arc<Site>>,
    Path(client): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let grant = match form.get("grant") {
        Some("client_credentials") => FetchGrant::ClientCredentials,
        Some("password") => match (form.get("username"), form.get("password")) {
            (Some(u), Some(p)) => {
                FetchGrant::Password { username: u.to_owned(), password: Secret::new(p.to_owned()) }
            }
            _ => {
                return failed(&site, &viewer, ClientError::Usage("Enter the username and password.".into()));
            }
        },
        _ => return failed(&site, &viewer, ClientError::Usage("Choose a grant.".into())),
    };
    let tag = Some(form.text("tag")).filter(|t| !t.is_empty());
    match ops::token_fetch(tokens, &client, grant, tag, None).await {
        Ok(_) => {
            tracing::info!(admin = %viewer.user.username, client = %client, "provider token fetched");
            see_other(&format!("{}/clients/{client}", site.base))
        }
        Err(e) => failed(&site, &viewer, e),
    }
}

/// The stored token `id` of `client`; else the 404 or 500 page.
async fn client_token(site: &Site, client: &str, id: i64) -> Result<ProviderTokenRecord, Response> {
    match site.store.provider_token(id).await {
        Ok(Some(t)) if t.client == client => Ok(t),
        Ok(_) => Err(site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such token.")),
        Err(e) => Err(site.templates.failure(&e)),
    }
}

/// `GET {base}/clients/{client}/tokens/{id}`: the raw tokens and the
/// access token's claims (unverified), for `manage oauth client secrets`.
pub(crate) async fn inspect(
    State(site): State<Arc<Site>>,
    Path((client, id)): Path<(String, i64)>,
    headers: HeaderMap,
    viewer: Viewer,
) -> Response {
    if !viewer.may(MANAGE_SECRETS) {
        return forbidden(&site, &headers, &viewer.user, MANAGE_SECRETS);
    }
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let t = match client_token(&site, &client, id).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    let doc = match ops::inspect(tokens, &t) {
        Ok(doc) => doc,
        Err(e) => return failed(&site, &viewer, e),
    };
    tracing::info!(admin = %viewer.user.username, client = %client, token = id, "provider token inspected");
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let ctx = minijinja::context! {
        client, id,
        access_token => doc["access_token"].as_str().unwrap_or_default().to_owned(),
        refresh_token => doc["refresh_token"].as_str().map(str::to_owned),
        claims => doc.get("access_token_jwt").map(|j| pretty(&j["claims"])),
        header => doc.get("access_token_jwt").map(|j| pretty(&j["header"])),
        response => pretty(&doc["raw_response"]),
    };
    site.templates.page(&viewer, "token.html", &format!("Token {id}"), "providers", ctx)
}

/// `POST {base}/clients/{client}/tokens/{id}/delete`: revokes the token at
/// the provider when it can, and deletes it.
pub(crate) async fn delete_token(
    State(site): State<Arc<Site>>,
    Path((client, id)): Path<(String, i64)>,
    Posted { viewer, .. }: Posted,
) -> Response {
    let Some(tokens) = site.tokens.as_ref() else { return no_client(&site, &viewer) };
    let t = match client_token(&site, &client, id).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    match ops::delete(tokens, site.store.as_ref(), &t).await {
        Ok(_) => {
            tracing::info!(admin = %viewer.user.username, client = %client, token = id, "provider token deleted");
            see_other(&format!("{}/clients/{client}", site.base))
        }
        Err(e) => failed(&site, &viewer, e),
    }
}
