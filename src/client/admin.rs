//! What the `provider`, `client` and `token` commands do; the CLI (`crate::cli`) only
//! parses arguments and prints the lines returned here. No line shows a
//! token or a secret, except `token inspect`, whose purpose that is.

use std::sync::Arc;

use serde_json::{Value, json};

use super::ClientError;
use super::protocol::Owner;
use super::provider::Provider;
use super::tokens::{NewToken, STATUS_REAUTH, Tokens};
use crate::clock::now;
use crate::config::Secret;
use crate::config::client::{redirect_url_is_safe, redirect_url_warning};

/// `provider show NAME`: the provider of that name and its options, scopes included.
pub fn provider_show<'a>(providers: &'a [Provider], name: &str) -> Result<&'a Provider, ClientError> {
    providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ClientError::NotFound(format!("no provider `{name}`")))
}

/// `client redirect-url`: the URL, and a warning when providers will refuse it.
pub fn redirect_url(loaded: &crate::config::Loaded) -> Result<(String, Option<String>), ClientError> {
    let url = loaded
        .redirect_url()
        .ok_or_else(|| ClientError::Usage("the configuration has no `client:` section".into()))?;
    let safe = url.parse().is_ok_and(|u| redirect_url_is_safe(&u));
    Ok((url.clone(), (!safe).then(|| redirect_url_warning(&url))))
}

/// A provider token as `token list` shows it: no token, no secret.
#[derive(Debug)]
pub struct TokenSummary {
    /// The token's id, for `token inspect|refresh|delete ID`.
    pub id: i64,
    /// The client it was issued to.
    pub client: String,
    /// Its tag.
    pub tag: String,
    /// The grant that got it.
    pub grant: String,
    /// The owner's e-mail or id at the provider, when known.
    pub owner: Option<String>,
    /// When the access token expires (Unix time), when known.
    pub expires_at: Option<i64>,
    /// `ok`, or what went wrong with its last refresh.
    pub status: String,
}

/// `token list`: every provider token, without tokens or secrets.
pub async fn token_list(store: &dyn crate::store::ClientStore) -> Result<Vec<TokenSummary>, ClientError> {
    Ok(store
        .provider_tokens()
        .await?
        .into_iter()
        .map(|t| {
            let status = if t.status == STATUS_REAUTH {
                format!("NEEDS RE-AUTHORIZATION: {}", t.last_error.as_deref().unwrap_or_default())
            } else if let Some(e) = &t.last_error {
                format!("ok (last refresh failed: {e})")
            } else {
                "ok".into()
            };
            TokenSummary {
                id: t.id,
                owner: t.owner_email.or(t.owner_id),
                client: t.client,
                tag: t.tag,
                grant: t.grant_type,
                expires_at: t.expires_at,
                status,
            }
        })
        .collect())
}

/// Decodes a JWT's header and claims without checking anything.
fn decode_jwt(token: &str) -> Option<(Value, Value)> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (h, c, _) = (parts.next()?, parts.next()?, parts.next()?);
    let dec = |p: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    Some((dec(h)?, dec(c)?))
}

/// `token inspect ID`: the raw tokens and response, and a JWT's decoded
/// header and claims, marked unverified.
pub async fn token_inspect(
    tokens: &Tokens,
    store: &dyn crate::store::ClientStore,
    id: i64,
) -> Result<Vec<String>, ClientError> {
    let t = store.provider_token(id).await?.ok_or_else(|| ClientError::NotFound(format!("no token {id}")))?;
    Ok(vec![serde_json::to_string_pretty(&inspect(tokens, &t)?).unwrap_or_default()])
}

/// A stored token opened: its fields, the raw tokens and response, and a
/// JWT's decoded header and claims, marked unverified (for `token
/// inspect` and the admin pages' Inspect).
pub fn inspect(tokens: &Tokens, t: &crate::store::ProviderTokenRecord) -> Result<Value, ClientError> {
    let (access, refresh, raw) = tokens.open(t)?;
    let mut doc = json!({
        "id": t.id,
        "client": t.client,
        "tag": t.tag,
        "grant_type": t.grant_type,
        "scopes": t.scopes,
        "token_type": t.token_type,
        "expires_at": t.expires_at,
        "owner": { "id": t.owner_id, "name": t.owner_name, "email": t.owner_email },
        "status": t.status,
        "last_error": t.last_error,
        "access_token": access.expose(),
        "refresh_token": refresh.as_ref().map(Secret::expose),
        "raw_response": raw,
    });
    if let Some((header, claims)) = decode_jwt(access.expose()) {
        doc["access_token_jwt"] = json!({ "verified": false, "header": header, "claims": claims });
    }
    Ok(doc)
}

/// `token delete ID`: revokes at the provider when it has an endpoint, then
/// deletes. Returns what was done.
pub async fn token_delete(
    tokens: &Tokens,
    store: &dyn crate::store::ClientStore,
    id: i64,
) -> Result<Vec<String>, ClientError> {
    let t = store.provider_token(id).await?.ok_or_else(|| ClientError::NotFound(format!("no token {id}")))?;
    delete(tokens, store, &t).await
}

/// Deletes a stored token after revoking it at the provider when it can;
/// returns what was done.
pub async fn delete(
    tokens: &Tokens,
    store: &dyn crate::store::ClientStore,
    t: &crate::store::ProviderTokenRecord,
) -> Result<Vec<String>, ClientError> {
    let id = t.id;
    let mut out = Vec::new();
    match tokens.registry().get(&t.client).await? {
        Some(reg) => {
            let (access, refresh, _) = tokens.open(t)?;
            let ep = tokens.http().endpoints(&reg.provider, reg.tenant.as_deref()).await;
            let revoked = match ep {
                Ok(ep) => {
                    let (token, is_refresh) = match &refresh {
                        Some(r) => (r.expose(), true),
                        None => (access.expose(), false),
                    };
                    tokens.http().revoke(&ep, &reg.creds, token, is_refresh).await
                }
                Err(e) => Err(e),
            };
            match revoked {
                Ok(true) => out.push(format!("revoked token {id} at the provider")),
                Ok(false) => out.push(
                    "the provider has no revocation endpoint; the token stays valid there until it expires"
                        .into(),
                ),
                Err(e) => out
                    .push(format!("warning: revocation at the provider failed ({e}); deleting here anyway")),
            }
        }
        None => {
            out.push(format!("client `{}` is no longer registered; not revoked at the provider", t.client))
        }
    }
    store.delete_provider_token(id).await?;
    tokens.forget(&t.client, &t.tag);
    out.push(format!("deleted token {id}"));
    Ok(out)
}

/// The grant for `token fetch`.
#[derive(Debug, Clone)]
pub enum FetchGrant {
    /// `client_credentials`.
    ClientCredentials,
    /// `password`, for this user.
    Password {
        /// The resource owner.
        username: String,
        /// Their password.
        password: Secret,
    },
}

/// `token fetch`: gets a token by `client_credentials` or `password` and stores it under `tag`.
pub async fn token_fetch(
    tokens: &Arc<Tokens>,
    client: &str,
    grant: FetchGrant,
    tag: Option<String>,
    scopes: Option<Vec<String>>,
) -> Result<Vec<String>, ClientError> {
    let reg = tokens
        .registry()
        .get(client)
        .await?
        .ok_or_else(|| ClientError::NotFound(format!("no client `{client}`")))?;
    let ep = tokens.http().endpoints(&reg.provider, reg.tenant.as_deref()).await?;
    let scopes =
        scopes.unwrap_or_else(|| reg.scopes.iter().filter(|s| s.as_str() != "openid").cloned().collect());
    let (got, grant_type, owner, default_tag) = match &grant {
        FetchGrant::ClientCredentials => (
            tokens.http().client_credentials(&ep, &reg.creds, &scopes).await?,
            "client_credentials",
            Owner::default(),
            "default".to_owned(),
        ),
        FetchGrant::Password { username, password } => (
            tokens.http().password(&ep, &reg.creds, username, password, &scopes).await?,
            "password",
            Owner { id: Some(username.clone()), ..Owner::default() },
            username.clone(),
        ),
    };
    let tag = tag.unwrap_or(default_tag);
    let id = tokens
        .save(NewToken {
            client: &reg.name,
            tag: &tag,
            grant_type,
            asked: &scopes,
            grant: &got,
            owner: &owner,
        })
        .await?;
    Ok(vec![format!("stored token {id} for client {} with tag {tag}", reg.name)])
}

/// `token refresh ID`: refreshes now.
pub async fn token_refresh(
    tokens: &Tokens,
    store: &dyn crate::store::ClientStore,
    id: i64,
) -> Result<Vec<String>, ClientError> {
    let t = store.provider_token(id).await?.ok_or_else(|| ClientError::NotFound(format!("no token {id}")))?;
    let live = tokens.refresh_now(&t.client, &t.tag).await?;
    let expiry = live
        .expires_at
        .map_or_else(|| "no expiry given".to_owned(), |e| format!("expires in {}s", e - now()));
    Ok(vec![format!("refreshed token {id}; {expiry}")])
}
