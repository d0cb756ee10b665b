//! The OAuth2 and OpenID Connect exchanges with providers, through the
//! `oauth2` and `openidconnect` crates over our reqwest (rustls, web PKI
//! roots plus `client.extra_ca_file`, no redirects followed).
//!
//! Nothing here logs a token or a secret: errors carry the provider's
//! `error` code and description, or the transport's message.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, RevocationUrl, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{IssuerUrl, JsonWebKeySetUrl, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::provider::Provider;
use crate::config::Secret;

/// Why a call to a provider failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider or client is missing something (an endpoint, an issuer).
    #[error("{0}")]
    Config(String),
    /// The provider could not be reached, or timed out.
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    /// The provider answered with an OAuth error.
    #[error("the provider refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The RFC 6749 `error` code, e.g. `invalid_grant`.
        error: String,
        /// Its `error_description`.
        description: Option<String>,
    },
    /// The provider's answer is not acceptable (unparsable, bad ID token).
    #[error("{0}")]
    Invalid(String),
}

impl ProviderError {
    /// True for `invalid_grant`: the grant is gone, only a new authorization helps.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, ProviderError::Refused { error, .. } if error == "invalid_grant")
    }
}

/// Extra fields of a token response: the ID token and everything else, kept
/// for the raw response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraFields {
    /// The OpenID ID token, when the provider sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Any other field.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}
impl ExtraTokenFields for ExtraFields {}

type Response = StandardTokenResponse<ExtraFields, BasicTokenType>;
type OClient = oauth2::Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// A client with a token endpoint and maybe a revocation endpoint.
type TokenClient = oauth2::Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointMaybeSet,
    oauth2::EndpointSet,
>;

/// What a grant returned.
#[derive(Clone)]
pub struct Grant {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Unix time of expiry, if the provider said.
    pub expires_at: Option<i64>,
    /// Granted scopes, when the provider said (else those asked for).
    pub scopes: Option<Vec<String>>,
    /// The ID token, unverified.
    pub id_token: Option<String>,
    /// The whole response, as JSON.
    pub raw: Value,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who authorized a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// A stable id (`sub`, Graph `id`).
    pub id: Option<String>,
    /// A display name.
    pub name: Option<String>,
    /// The mailbox (`email`, Graph `mail`).
    pub email: Option<String>,
}

/// A provider's endpoints for one client, tenant filled in.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Authorization endpoint.
    pub authorize: Option<String>,
    /// Token endpoint.
    pub token: Option<String>,
    /// Revocation endpoint.
    pub revoke: Option<String>,
    /// Userinfo or profile endpoint.
    pub userinfo: Option<String>,
    /// JWKS of the ID token signer.
    pub jwks: Option<String>,
    /// The issuer, for ID tokens.
    pub issuer: Option<String>,
    /// Whether `iss` is checked exactly.
    pub check_issuer: bool,
    /// Client authentication by form fields instead of HTTP Basic.
    pub post_auth: bool,
    /// The provider announced `authorization_response_iss_parameter_supported`
    /// (RFC 9207): its authorization responses must carry `iss`.
    pub response_iss: bool,
}

impl Endpoints {
    /// RFC 9207 (the mix-up defence of RFC 9700 section 4.4): checks the
    /// `iss` parameter of an authorization response. When the provider
    /// announced that it sends one, it must be there; when it is there, it
    /// must be the provider's issuer (compared as strings, section 2.4),
    /// unless the provider's issuer varies by tenant (`check_issuer` off).
    /// A response from another authorization server is refused before its
    /// code reaches this provider's token endpoint.
    pub fn check_response_iss(&self, iss: Option<&str>) -> Result<(), ProviderError> {
        match (iss, self.issuer.as_deref()) {
            (Some(iss), Some(expected)) if self.check_issuer && iss != expected => {
                Err(ProviderError::Invalid(format!(
                    "the authorization response names issuer `{iss}`, not this provider's (`{expected}`)"
                )))
            }
            (None, Some(_)) if self.response_iss => Err(ProviderError::Invalid(
                "the authorization response carries no `iss`, which this provider announced it sends".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// The credentials a client registration holds.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The client ID.
    pub client_id: String,
    /// The client secret, if confidential.
    pub client_secret: Option<Secret>,
}

use crate::web::provider_http::Discovered;

/// The HTTP client for providers.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    discovered: moka::future::Cache<String, Arc<Endpoints>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

/// A rustls client configuration trusting the web PKI roots and the
/// certificates in `extra_ca` (PEM).
pub fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read client.extra_ca_file {}: {e}", path.display()))?;
        for cert in certs {
            roots.add(cert).map_err(|e| format!("client.extra_ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

type BoxedResponse<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'a>>;

impl Http {
    /// A client with `timeout` per call, trusting the web PKI and `extra_ca`.
    pub fn new(timeout: Duration, extra_ca: Option<&Path>) -> Result<Self, String> {
        let tls = tls_config(extra_ca)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the provider HTTP client: {e}"))?;
        let discovered = moka::future::Cache::builder().time_to_live(Duration::from_secs(3600)).build();
        Ok(Http { client, discovered })
    }

    /// Sends one request to a provider (a `provider call` span with traces
    /// on, see [`crate::web::provider_http::caller`]).
    fn exchange(&self) -> impl Fn(HttpRequest) -> BoxedResponse<'static> + '_ {
        crate::web::provider_http::caller(&self.client)
    }

    /// The endpoints of `provider` for a client with `tenant`; discovery is
    /// done once an hour per issuer.
    pub async fn endpoints(
        &self,
        provider: &Provider,
        tenant: Option<&str>,
    ) -> Result<Arc<Endpoints>, ProviderError> {
        let fill = |u: &Option<String>| u.as_deref().map(|u| Provider::with_tenant(u, tenant));
        let mut ep = Endpoints {
            authorize: fill(&provider.authorize_url),
            token: fill(&provider.token_url),
            revoke: fill(&provider.revoke_url),
            userinfo: fill(&provider.userinfo_url),
            jwks: fill(&provider.jwks_url),
            issuer: fill(&provider.issuer),
            check_issuer: provider.checks_issuer(tenant),
            post_auth: provider.name == "ms-exchange",
            response_iss: false,
        };
        if !provider.discovery {
            return Ok(Arc::new(ep));
        }
        let Some(issuer) = ep.issuer.clone() else {
            return Err(ProviderError::Config(format!(
                "provider {} uses discovery but has no issuer: set `issuer` in client.providers",
                provider.name
            )));
        };
        let found = self
            .discovered
            .try_get_with(issuer.clone(), async {
                let url = IssuerUrl::new(issuer.clone())
                    .map_err(|e| ProviderError::Config(format!("issuer {issuer}: {e}")))?;
                let meta = Discovered::discover_async(url, &self.exchange()).await.map_err(|e| {
                    ProviderError::Unreachable(format!("OpenID discovery at {issuer} failed: {e}"))
                })?;
                Ok::<_, ProviderError>(Arc::new(Endpoints {
                    authorize: Some(meta.authorization_endpoint().to_string()),
                    token: meta.token_endpoint().map(|u| u.to_string()),
                    revoke: meta.additional_metadata().revocation_endpoint.clone(),
                    userinfo: meta.userinfo_endpoint().map(|u| u.to_string()),
                    jwks: Some(meta.jwks_uri().to_string()),
                    issuer: Some(meta.issuer().to_string()),
                    check_issuer: true,
                    post_auth: false,
                    response_iss: meta
                        .additional_metadata()
                        .authorization_response_iss_parameter_supported
                        .unwrap_or(false),
                }))
            })
            .await
            .map_err(|e| (*e).clone())?;
        ep.authorize = ep.authorize.or_else(|| found.authorize.clone());
        ep.token = ep.token.or_else(|| found.token.clone());
        ep.revoke = ep.revoke.or_else(|| found.revoke.clone());
        ep.userinfo = ep.userinfo.or_else(|| found.userinfo.clone());
        ep.jwks = ep.jwks.or_else(|| found.jwks.clone());
        ep.issuer = found.issuer.clone();
        ep.response_iss = found.response_iss;
        Ok(Arc::new(ep))
    }

    /// The authorization URL with state, PKCE S256 challenge, nonce, scopes
    /// and the provider's extra parameters.
    #[allow(clippy::too_many_arguments)] // each is one parameter of the request
    pub fn authorize_url(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        redirect_url: &str,
        scopes: &[String],
        extra: &std::collections::BTreeMap<String, String>,
        state: &str,
        challenge: PkceCodeChallenge,
        nonce: &str,
    ) -> Result<url::Url, ProviderError> {
        let auth = ep
            .authorize
            .as_deref()
            .ok_or_else(|| ProviderError::Config("the provider has no authorization endpoint".into()))?;
        let client = OClient::new(ClientId::new(creds.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(auth.to_owned())
                    .map_err(|e| ProviderError::Config(format!("authorize URL: {e}")))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(redirect_url.to_owned())
                    .map_err(|e| ProviderError::Config(format!("redirect URL: {e}")))?,
            );
        let state = state.to_owned();
        let mut req = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge);
        if scopes.iter().any(|s| s == "openid") {
            req = req.add_extra_param("nonce", nonce.to_owned());
        }
        for (k, v) in extra {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        Ok(req.url().0)
    }

    fn token_client(&self, ep: &Endpoints, creds: &Credentials) -> Result<TokenClient, ProviderError> {
        let token = ep
            .token
            .as_deref()
            .ok_or_else(|| ProviderError::Config("the provider has no token endpoint".into()))?;
        let mut client = OClient::new(ClientId::new(creds.client_id.clone()))
            .set_token_uri(
                TokenUrl::new(token.to_owned())
                    .map_err(|e| ProviderError::Config(format!("token URL: {e}")))?,
            )
            .set_revocation_url_option(ep.revoke.as_ref().and_then(|u| RevocationUrl::new(u.clone()).ok()));
        if let Some(secret) = &creds.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        if ep.post_auth {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }

    /// Exchanges an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        redirect_url: &str,
        code: &str,
        verifier: String,
    ) -> Result<Grant, ProviderError> {
        let client = self.token_client(ep, creds)?;
        let redirect = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|e| ProviderError::Config(format!("redirect URL: {e}")))?;
        let res = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .request_async(&self.exchange())
            .await;
        grant(res)
    }

    /// Uses a refresh token.
    pub async fn refresh(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        refresh_token: &str,
    ) -> Result<Grant, ProviderError> {
        let client = self.token_client(ep, creds)?;
        let token = RefreshToken::new(refresh_token.to_owned());
        grant(client.exchange_refresh_token(&token).request_async(&self.exchange()).await)
    }

    /// The client credentials grant.
    pub async fn client_credentials(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        scopes: &[String],
    ) -> Result<Grant, ProviderError> {
        let client = self.token_client(ep, creds)?;
        let res = client
            .exchange_client_credentials()
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .request_async(&self.exchange())
            .await;
        grant(res)
    }

    /// The resource owner password grant (legacy providers only).
    pub async fn password(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        username: &str,
        password: &Secret,
        scopes: &[String],
    ) -> Result<Grant, ProviderError> {
        let client = self.token_client(ep, creds)?;
        let user = ResourceOwnerUsername::new(username.to_owned());
        let pass = ResourceOwnerPassword::new(password.expose().to_owned());
        let res = client
            .exchange_password(&user, &pass)
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .request_async(&self.exchange())
            .await;
        grant(res)
    }

    /// Revokes a token at the provider (RFC 7009); `Ok(false)` when the
    /// provider has no revocation endpoint.
    pub async fn revoke(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        token: &str,
        refresh: bool,
    ) -> Result<bool, ProviderError> {
        if ep.revoke.is_none() {
            return Ok(false);
        }
        let url = ep.revoke.as_deref().unwrap_or_default();
        if url.starts_with("http://") {
            return self.revoke_plain_http(url, ep, creds, token, refresh).await;
        }
        let client = self.token_client(ep, creds)?;
        let token = if refresh {
            StandardRevocableToken::RefreshToken(RefreshToken::new(token.to_owned()))
        } else {
            StandardRevocableToken::AccessToken(oauth2::AccessToken::new(token.to_owned()))
        };
        let req = client.revoke_token(token).map_err(|e| ProviderError::Config(e.to_string()))?;
        req.request_async(&self.exchange()).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => ProviderError::Refused {
                error: r.error().to_string(),
                description: r.error_description().cloned(),
            },
            RequestTokenError::Request(e) => ProviderError::Unreachable(e.to_string()),
            other => ProviderError::Invalid(format!("the revocation answer is not valid: {other}")),
        })?;
        Ok(true)
    }

    /// RFC 7009 over plain http, which the `oauth2` crate refuses: allowed
    /// only on a loopback host (the `demo` provider on this machine).
    async fn revoke_plain_http(
        &self,
        url: &str,
        ep: &Endpoints,
        creds: &Credentials,
        token: &str,
        refresh: bool,
    ) -> Result<bool, ProviderError> {
        let parsed =
            url::Url::parse(url).map_err(|e| ProviderError::Config(format!("revocation URL: {e}")))?;
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !loopback {
            return Err(ProviderError::Config(format!("the revocation endpoint {url} must be https")));
        }
        let hint = if refresh { "refresh_token" } else { "access_token" };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut req = self.client.post(url);
        match &creds.client_secret {
            Some(secret) if !ep.post_auth => req = req.basic_auth(&creds.client_id, Some(secret.expose())),
            Some(secret) => {
                form.push(("client_id", &creds.client_id));
                form.push(("client_secret", secret.expose()));
            }
            None => form.push(("client_id", &creds.client_id)),
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let res = req
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(transport_message(&e)))?;
        if res.status().is_success() {
            Ok(true)
        } else {
            Err(ProviderError::Invalid(format!("the revocation endpoint answered {}", res.status())))
        }
    }

    /// Verifies an ID token: signature by the provider's JWKS, `iss`, `aud`
    /// (this client), `exp` and `nonce`. Returns its claims as an owner and as JSON.
    pub async fn verify_id_token(
        &self,
        ep: &Endpoints,
        creds: &Credentials,
        id_token: &str,
        nonce: &str,
    ) -> Result<(Owner, Value), ProviderError> {
        let jwks_url = ep
            .jwks
            .as_deref()
            .ok_or_else(|| ProviderError::Config("the provider has no JWKS URL to check ID tokens".into()))?;
        let issuer = ep
            .issuer
            .as_deref()
            .ok_or_else(|| ProviderError::Config("the provider has no issuer to check ID tokens".into()))?;
        let jwks_url = JsonWebKeySetUrl::new(jwks_url.to_owned())
            .map_err(|e| ProviderError::Config(format!("JWKS URL: {e}")))?;
        let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &self.exchange()).await.map_err(|e| {
            ProviderError::Unreachable(format!("cannot fetch the provider's signing keys: {e}"))
        })?;
        let issuer =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| ProviderError::Config(format!("issuer: {e}")))?;
        let client_id = ClientId::new(creds.client_id.clone());
        let verifier = match &creds.client_secret {
            Some(secret) => CoreIdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.expose().to_owned()),
                issuer,
                jwks,
            ),
            None => CoreIdTokenVerifier::new_public_client(client_id, issuer, jwks),
        }
        .require_issuer_match(ep.check_issuer);
        let token: CoreIdToken = id_token
            .parse()
            .map_err(|e| ProviderError::Invalid(format!("the ID token is not a JWT: {e}")))?;
        let claims = token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| ProviderError::Invalid(format!("the ID token is not valid: {e}")))?;
        let owner = Owner {
            id: Some(claims.subject().to_string()),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            email: claims.email().map(|e| e.to_string()),
        };
        let json = serde_json::to_value(claims).unwrap_or(Value::Null);
        Ok((owner, json))
    }

    /// Reads the resource owner from the userinfo (or profile) endpoint.
    pub async fn owner(&self, ep: &Endpoints, access_token: &str) -> Result<Owner, ProviderError> {
        let url =
            ep.userinfo.as_deref().ok_or_else(|| ProviderError::Config("no userinfo endpoint".into()))?;
        let res = self
            .client
            .get(url)
            .bearer_auth(access_token)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(ProviderError::Invalid(format!("the userinfo endpoint answered {}", res.status())));
        }
        let v: Value =
            res.json().await.map_err(|e| ProviderError::Invalid(format!("userinfo is not JSON: {e}")))?;
        Ok(owner_from_json(&v))
    }
}

/// The owner's fields from OpenID userinfo (`sub`, `name`, `email`) or a
/// Graph profile (`id`, `displayName`, `mail`, `userPrincipalName`).
pub fn owner_from_json(v: &Value) -> Owner {
    let first =
        |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str)).map(str::to_owned);
    Owner {
        id: first(&["sub", "id"]),
        name: first(&["name", "displayName", "preferred_username"]),
        email: first(&["email", "mail", "userPrincipalName"]),
    }
}

fn grant(
    res: Result<Response, RequestTokenError<reqwest::Error, BasicErrorResponse>>,
) -> Result<Grant, ProviderError> {
    let res = res.map_err(|e| match e {
        RequestTokenError::ServerResponse(r) => ProviderError::Refused {
            error: r.error().to_string(),
            description: r.error_description().cloned(),
        },
        RequestTokenError::Request(e) => ProviderError::Unreachable(transport_message(&e)),
        RequestTokenError::Parse(e, _) => {
            ProviderError::Invalid(format!("the token response is not valid: {e}"))
        }
        RequestTokenError::Other(m) => {
            ProviderError::Invalid(format!("the token response is not valid: {m}"))
        }
    })?;
    let now = crate::clock::now();
    let expires_at =
        res.expires_in().map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    let raw = serde_json::to_value(&res).unwrap_or(Value::Null);
    Ok(Grant {
        access_token: res.access_token().secret().clone(),
        refresh_token: res.refresh_token().map(|t| t.secret().clone()),
        token_type: match res.token_type() {
            BasicTokenType::Bearer => "Bearer".to_owned(),
            BasicTokenType::Mac => "MAC".to_owned(),
            BasicTokenType::Extension(s) => s.clone(),
        },
        expires_at,
        scopes: res.scopes().map(|s| s.iter().map(|x| x.to_string()).collect()),
        id_token: res.extra_fields().id_token.clone(),
        raw,
    })
}

/// A transport error's message with its causes (reqwest's top line alone
/// says only "error sending request").
fn transport_message(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
