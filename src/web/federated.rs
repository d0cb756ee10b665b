//! Sign-in through outside OpenID providers (`server.login.providers`):
//! the authorization code flow with PKCE, `state` and `nonce`, the ID token
//! checked by `openidconnect` (signature by the provider's JWKS, `iss`,
//! `aud`, `exp`, `nonce`) and the RFC 9207 `iss` of the response.
//!
//! - **Start** (`{base}/start?provider=NAME&next=PATH`): a state is stored
//!   (one use, for `server.login.state_ttl`) with the PKCE verifier, the
//!   nonce, the session kind and where to go afterwards, bound to the
//!   browser by the `oauth_sidecar_login` cookie (`SameSite=Lax`, so the
//!   return from the provider carries it); the browser goes to the provider.
//! - **Return** (`{base}/return`): reachable by anyone, so the state is
//!   the defence: unknown, used, expired, from another browser or another
//!   sign-in, each is refused with a page saying so, and nothing is stored.
//!   Then the code is exchanged, the ID token verified, `allow` checked.
//!
//! The provider's discovery document and keys are fetched once an hour
//! per issuer (the issuers come from the file, never from a request), and
//! after a failure not again for ten seconds, so a visitor cannot make us
//! fetch more than that. No code, token or ID token is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::provider_http::{Answer, Discovered, caller};
use crate::config::login::{LoginConfig, LoginProviderConfig};
use crate::config::types::HttpUrl;

/// A provider's discovery document with its keys, and when it was fetched.
struct Fetched {
    metadata: Discovered,
    fetched: Instant,
}

/// How long a discovery document (and its keys) is used.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long after a failed fetch an issuer is not asked again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Keys younger than this are not fetched again for an unknown key.
const KEYS_FRESH: Duration = Duration::from_secs(60);

/// What a started sign-in keeps until the return (stored as JSON).
#[derive(Serialize, Deserialize)]
pub(crate) struct Started {
    /// The `server.login.providers` entry's name.
    pub(crate) provider: String,
    /// The PKCE verifier.
    verifier: String,
    /// The OpenID nonce.
    nonce: String,
    /// The session kind the sign-in is for (`oauth`, `admin`).
    pub(crate) kind: String,
    /// Where the browser goes once signed in (a path of ours).
    pub(crate) next: String,
}

/// A refused return: the status and the page's title and message.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The page's status.
    pub(crate) status: http::StatusCode,
    /// The page's title.
    pub(crate) title: &'static str,
    /// What happened, for the person.
    pub(crate) message: String,
}

pub(crate) fn refusal(status: http::StatusCode, title: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, title, message: message.into() }
}

/// A verified sign-in at a provider: the entry and the ID token's claims.
pub(crate) struct Verified<'a> {
    /// The provider entry.
    pub(crate) provider: &'a LoginProviderConfig,
    /// The ID token's `sub`.
    pub(crate) subject: String,
    /// Every claim of the verified ID token.
    pub(crate) claims: Map<String, Value>,
}

/// The providers of one sign-in (one session kind), their discovery cache
/// and the paths of its start and return.
pub(crate) struct Federation {
    providers: Vec<LoginProviderConfig>,
    pub(crate) password: bool,
    http: reqwest::Client,
    discovered: moka::future::Cache<String, Arc<Fetched>>,
    failed: Mutex<HashMap<String, Instant>>,
    /// `server.login.state_ttl` in seconds.
    pub(crate) state_ttl: i64,
    /// The start and return paths live under this (`/oauth/login`).
    base: String,
    /// The return URL registered at the providers.
    redirect_url: String,
}

impl Federation {
    /// The providers of `login` for a sign-in whose start and return are
    /// under `base` (a path such as `/oauth/login`); `None` without providers.
    pub(crate) fn new(login: &LoginConfig, public_url: &HttpUrl, base: &str) -> Result<Option<Self>, String> {
        if login.providers.is_empty() {
            return Ok(None);
        }
        let http = http_client()?;
        Ok(Some(Federation {
            providers: login.providers.clone(),
            password: login.password.value,
            http,
            discovered: moka::future::Cache::builder()
                .max_capacity(login.providers.len() as u64 + 1)
                .time_to_live(DISCOVERY_TTL)
                .build(),
            failed: Mutex::new(HashMap::new()),
            state_ttl: i64::try_from(login.state_ttl.0.as_secs()).unwrap_or(600),
            base: base.to_owned(),
            redirect_url: format!("{}{base}/return", public_url.base()),
        }))
    }

    /// The start path (`{base}/start`).
    pub(crate) fn start_path(&self) -> String {
        format!("{}/start", self.base)
    }

    /// The return path (`{base}/return`).
    pub(crate) fn return_path(&self) -> String {
        format!("{}/return", self.base)
    }

    /// Each provider's button: its label and the start URL that comes back to `next`.
    pub(crate) fn buttons(&self, next: &str) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| {
                let label = if p.label.is_empty() {
                    format!("Sign in with {}", p.name.value)
                } else {
                    p.label.clone()
                };
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("provider", &p.name.value)
                    .append_pair("next", next)
                    .finish();
                (label, format!("{}?{query}", self.start_path()))
            })
            .collect()
    }

    /// The provider entry named `name`.
    pub(crate) fn provider(&self, name: &str) -> Option<&LoginProviderConfig> {
        self.providers.iter().find(|p| p.name.value == name)
    }

    fn call(&self) -> impl Fn(HttpRequest) -> Answer + '_ {
        caller(&self.http)
    }

    /// The provider's discovery document and keys, from the cache when
    /// fresh; `renew` drops a cached copy older than [`KEYS_FRESH`] first.
    async fn discover(&self, provider: &LoginProviderConfig, renew: bool) -> Result<Arc<Fetched>, String> {
        let issuer = provider.resolved_issuer.clone();
        if renew && self.discovered.get(&issuer).await.is_some_and(|d| d.fetched.elapsed() > KEYS_FRESH) {
            self.discovered.invalidate(&issuer).await;
        }
        if let Some(found) = self.discovered.get(&issuer).await {
            return Ok(found);
        }
        let recently_failed = self
            .failed
            .lock()
            .map(|f| f.get(&issuer).is_some_and(|at| at.elapsed() < RETRY_AFTER))
            .unwrap_or(false);
        if recently_failed {
            return Err("its discovery document could not be read a moment ago".to_owned());
        }
        let fetched = self
            .discovered
            .try_get_with(issuer.clone(), async {
                let url = IssuerUrl::new(issuer.clone()).map_err(|e| e.to_string())?;
                let metadata = Discovered::discover_async(url, &self.call())
                    .await
                    .map_err(|e| crate::outbound::error_chain(&e))?;
                Ok::<_, String>(Arc::new(Fetched { metadata, fetched: Instant::now() }))
            })
            .await
            .map_err(|e| (*e).clone());
        if fetched.is_err()
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.insert(issuer, Instant::now());
        }
        fetched
    }

    fn client(&self, provider: &LoginProviderConfig, d: &Fetched) -> Result<OidcClient, String> {
        let secret = provider.client_secret.as_ref().map(|s| ClientSecret::new(s.value.expose().to_owned()));
        let redirect = RedirectUrl::new(self.redirect_url.clone()).map_err(|e| e.to_string())?;
        let mut client = CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(provider.client_id.value.clone()),
            secret,
        )
        .set_redirect_uri(redirect);
        let methods = d.metadata.token_endpoint_auth_methods_supported();
        let basic = methods.is_none_or(|m| m.contains(&CoreClientAuthMethod::ClientSecretBasic));
        if !basic && methods.is_some_and(|m| m.contains(&CoreClientAuthMethod::ClientSecretPost)) {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }

    /// The provider's authorization URL for a new sign-in, and what to keep
    /// for the return: the state (to hash and store) and the [`Started`].
    pub(crate) async fn authorization(
        &self,
        provider: &LoginProviderConfig,
        kind: &str,
        next: &str,
    ) -> Result<(url::Url, String, Started), Refusal> {
        let d = self.discover(provider, false).await.map_err(|e| unreachable(provider, &e))?;
        let client = self.client(provider, &d).map_err(|e| unreachable(provider, &e))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let scopes: Vec<&str> = if provider.scopes.is_empty() {
            vec!["email", "profile"]
        } else {
            provider.scopes.iter().map(String::as_str).filter(|s| *s != "openid").collect()
        };
        for scope in scopes {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let (url, state, nonce) = request.url();
        let started = Started {
            provider: provider.name.value.clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            kind: kind.to_owned(),
            next: next.to_owned(),
        };
        Ok((url, state.secret().clone(), started))
    }

    /// The return's code exchanged and its ID token verified, for the
    /// sign-in `started` (its state already checked): RFC 9207 `iss`, the
    /// token endpoint, the ID token's signature, `iss`, `aud`, `exp` and `nonce`.
    pub(crate) async fn verify(
        &self,
        started: &Started,
        code: Option<&str>,
        iss: Option<&str>,
    ) -> Result<Verified<'_>, Refusal> {
        use http::StatusCode;
        let Some(provider) = self.provider(&started.provider) else {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The provider of this sign-in is no longer configured. Start again.",
            ));
        };
        let d = self.discover(provider, false).await.map_err(|e| unreachable(provider, &e))?;
        let issuer = d.metadata.issuer().as_str();
        let announced =
            d.metadata.additional_metadata().authorization_response_iss_parameter_supported == Some(true);
        match iss {
            Some(iss) if iss != issuer => {
                tracing::warn!(provider = %provider.name.value, iss, "federated sign-in refused: the response names another issuer");
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    format!(
                        "The answer came from another issuer (`{iss}`) than {}'s. Start again.",
                        provider.name.value
                    ),
                ));
            }
            None if announced => {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    "The provider's answer has no `iss`, which it announced it sends. Start again.",
                ));
            }
            _ => {}
        }
        let Some(code) = code else {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The provider's answer has no code.",
            ));
        };
        let client = self.client(provider, &d).map_err(|e| unreachable(provider, &e))?;
        let exchanged = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| unreachable(provider, &e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(started.verifier.clone()))
            .request_async(&self.call())
            .await;
        let response = match exchanged {
            Ok(response) => response,
            Err(e) => {
                let why = token_error(&e);
                tracing::warn!(provider = %provider.name.value, error = %why, "federated sign-in: the code exchange failed");
                return Err(refusal(
                    StatusCode::BAD_GATEWAY,
                    "Sign-in failed",
                    format!("{} did not complete the sign-in: {why}. Start again.", provider.name.value),
                ));
            }
        };
        let Some(id_token) = response.id_token() else {
            return Err(refusal(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                format!("{} sent no ID token.", provider.name.value),
            ));
        };
        let nonce = Nonce::new(started.nonce.clone());
        let subject = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.subject().to_string(),
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                // The provider may have rotated its keys: read them again, once.
                let d = self.discover(provider, true).await.map_err(|e| unreachable(provider, &e))?;
                let client = self.client(provider, &d).map_err(|e| unreachable(provider, &e))?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map(|c| c.subject().to_string())
                    .map_err(|e| bad_token(provider, &e.to_string()))?
            }
            Err(e) => return Err(bad_token(provider, &e.to_string())),
        };
        // The signature covers the payload: its other claims (groups, roles) are read from it.
        let claims = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .ok_or_else(|| bad_token(provider, "its payload is not a JSON object"))?;
        Ok(Verified { provider, subject, claims })
    }
}

type OidcClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn unreachable(provider: &LoginProviderConfig, why: &str) -> Refusal {
    tracing::warn!(provider = %provider.name.value, error = %why, "federated sign-in: the provider could not be used");
    refusal(
        http::StatusCode::BAD_GATEWAY,
        "Provider unavailable",
        format!("{} cannot be reached right now. Try again later.", provider.name.value),
    )
}

fn bad_token(provider: &LoginProviderConfig, why: &str) -> Refusal {
    tracing::warn!(provider = %provider.name.value, error = %why, "federated sign-in refused: the ID token failed a check");
    refusal(
        http::StatusCode::BAD_REQUEST,
        "Sign-in failed",
        format!(
            "The ID token from {} failed a check ({why}). Nothing was stored. Start again.",
            provider.name.value
        ),
    )
}

/// A token endpoint error in words: the provider's `error` code, or the
/// transport's message (never a code or token).
fn token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            format!("the provider answered `{}`", r.error())
        }
        other => crate::outbound::error_chain(other),
    }
}

/// The HTTP client for providers: rustls with the platform's trust store,
/// no redirects (an OAuth endpoint answers itself), a 10 s timeout.
fn http_client() -> Result<reqwest::Client, String> {
    crate::outbound::client_builder()?
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the provider HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;

    use super::*;
    use crate::config::types::At;

    /// A provider on loopback that counts its discovery requests; `healthy`
    /// says whether it answers them.
    async fn provider(healthy: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let (count, base) = (hits.clone(), issuer.clone());
        let discovery = move || {
            count.fetch_add(1, Ordering::SeqCst);
            let doc = serde_json::json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/auth"),
                "token_endpoint": format!("{base}/token"),
                "jwks_uri": format!("{base}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            async move {
                if healthy {
                    (http::StatusCode::OK, axum::Json(doc))
                } else {
                    (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(serde_json::json!({})))
                }
            }
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(|| async { axum::Json(serde_json::json!({ "keys": [] })) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (issuer, hits)
    }

    fn federation(issuer: &str) -> Federation {
        let login = LoginConfig {
            providers: vec![LoginProviderConfig {
                name: At::default_value("corp".into()),
                client_id: At::default_value("sidecar".into()),
                resolved_issuer: issuer.to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let public: HttpUrl = "http://127.0.0.1:8080".parse().unwrap();
        Federation::new(&login, &public, "/oauth/login").unwrap().unwrap()
    }

    #[tokio::test]
    async fn discovery_is_fetched_once_for_many_sign_ins() {
        let (issuer, hits) = provider(true).await;
        let f = federation(&issuer);
        let corp = f.provider("corp").unwrap();
        for _ in 0..5 {
            let (url, state, started) = f.authorization(corp, "oauth", "/oauth/authorize").await.unwrap();
            assert!(url.as_str().starts_with(&format!("{issuer}/auth?")), "{url}");
            let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let has = |k: &str, v: &str| query.iter().any(|(a, b)| a == k && b == v);
            assert!(
                has("state", &state) && has("nonce", &started.nonce) && has("code_challenge_method", "S256")
            );
            assert!(has("redirect_uri", "http://127.0.0.1:8080/oauth/login/return"));
            assert!(has("scope", "openid email profile"), "{url}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failing_provider_is_not_asked_again_at_once() {
        let (issuer, hits) = provider(false).await;
        let f = federation(&issuer);
        let corp = f.provider("corp").unwrap();
        for _ in 0..5 {
            let refused = f.authorization(corp, "oauth", "/oauth/authorize").await.err().unwrap();
            assert_eq!(refused.status, http::StatusCode::BAD_GATEWAY);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch within the retry pause");
    }
}
