//! The token endpoint over real sockets with the real binary, driven by the
//! `oauth2` crate as a standard client would, tokens checked against the
//! published JWKS with `jsonwebtoken`.

mod common;

use std::collections::HashSet;

use common::{Sidecar, oauth_http as http};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth_sidecar::server::jwt::AccessClaims;
use oauth_sidecar::store::{ServerStore, SignInStore, SqliteStore, StoreBase};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  consumers:
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: reporter
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer, farm_manager]
      limit_user_access: true
      grant_types: [password, refresh_token]
    - client_id: limited
      secret: limited-secret-0123456789
      scopes: [farm_viewer, farm_manager]
      limit_requested_access: true
      grant_types: [password, refresh_token]
    - client_id: farm
      confidential: false
      third_party: false
      redirect_uris: [http://127.0.0.1/authorized]
      scopes: [farm_manager]
      grant_types: [authorization_code, refresh_token]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer]
    - username: alice
      password: alice-password
      roles: [farm_viewer, farm_manager]
"#;

type Client = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;
type TokenError = RequestTokenError<reqwest::Error, oauth2::basic::BasicErrorResponse>;

fn client(sidecar: &Sidecar, id: &str, secret: Option<&str>) -> Client {
    let mut c = BasicClient::new(ClientId::new(id.into()))
        .set_token_uri(TokenUrl::new(sidecar.url("/oauth/token")).expect("token url"));
    if let Some(secret) = secret {
        c = c.set_client_secret(ClientSecret::new(secret.into()));
    }
    c
}

fn error_code(e: &TokenError) -> BasicErrorResponseType {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

async fn get_json(sidecar: &Sidecar, path: &str) -> Value {
    common::client().get(sidecar.url(path)).send().await.unwrap().json().await.unwrap()
}

/// Verifies an access token against the published JWKS, as a resource server would.
async fn verify(sidecar: &Sidecar, token: &str) -> AccessClaims {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
    );
    let meta = get_json(sidecar, "/.well-known/oauth-authorization-server").await;
    let issuer = meta["issuer"].as_str().unwrap();
    let jwks: JwkSet = serde_json::from_value(get_json(sidecar, "/.well-known/jwks.json").await).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid in JWKS");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<AccessClaims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the access token verifies against the JWKS")
        .claims
}

fn scopes(s: &str) -> HashSet<&str> {
    s.split(' ').collect()
}

#[tokio::test]
async fn client_credentials_issues_a_jwt_acting_as_the_consumers_user() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "reporting", Some("reporting-secret-0123456789"));
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let c = c.clone().set_auth_type(auth);
        let token = c.exchange_client_credentials().request_async(&http).await.expect("token");
        let claims = verify(&sidecar, token.access_token().secret()).await;
        assert_eq!(claims.sub, "reporter");
        assert_eq!(claims.client_id, "reporting");
        assert_eq!(scopes(&claims.scope), scopes("authenticated farm_viewer"));
        assert!(claims.exp > claims.iat && claims.exp - claims.iat == 3600);
        assert!(!claims.jti.is_empty());
        assert!(token.refresh_token().is_none());
        assert_eq!(token.expires_in().unwrap().as_secs(), 3600);
    }
}

#[tokio::test]
async fn token_responses_and_errors_are_not_stored() {
    let sidecar = Sidecar::start(SERVER);
    let form = "grant_type=client_credentials";
    let ok = common::client()
        .post(sidecar.url("/oauth/token"))
        .basic_auth("reporting", Some("reporting-secret-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let wrong = common::client()
        .post(sidecar.url("/oauth/token"))
        .basic_auth("reporting", Some("not-the-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["cache-control"], "no-store");
    assert!(wrong.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn wrong_secret_and_unknown_client_are_invalid_client() {
    let sidecar = Sidecar::start(SERVER);
    for c in [
        client(&sidecar, "reporting", Some("reporting-secret-wrong")),
        client(&sidecar, "reporting", None),
        client(&sidecar, "nobody", Some("reporting-secret-0123456789")),
    ] {
        let err = c.exchange_client_credentials().request_async(&http).await.unwrap_err();
        assert_eq!(error_code(&err), BasicErrorResponseType::InvalidClient);
    }
}

#[tokio::test]
async fn client_credentials_by_a_public_client_is_unauthorized() {
    let sidecar = Sidecar::start(SERVER);
    let err =
        client(&sidecar, "farm", None).exchange_client_credentials().request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::UnauthorizedClient);
}

#[tokio::test]
async fn unknown_scope_is_invalid_scope() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "reporting", Some("reporting-secret-0123456789"));
    let err = c
        .exchange_client_credentials()
        .add_scope(Scope::new("farm_viewer".into()))
        .add_scope(Scope::new("farm_owner".into()))
        .request_async(&http)
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidScope);
    // OpenID Connect scopes are not roles but are accepted.
    c.exchange_client_credentials()
        .add_scope(Scope::new("openid".into()))
        .request_async(&http)
        .await
        .expect("openid is a known scope");
}

#[tokio::test]
async fn password_grant_with_refresh_rotation() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "legacy", Some("legacy-secret-0123456789"));
    let user = ResourceOwnerUsername::new("alice".into());
    let token = c
        .exchange_password(&user, &ResourceOwnerPassword::new("alice-password".into()))
        .request_async(&http)
        .await
        .expect("password grant");
    let claims = verify(&sidecar, token.access_token().secret()).await;
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.client_id, "legacy");
    assert_eq!(scopes(&claims.scope), scopes("authenticated farm_manager farm_viewer"));
    assert!(claims.auth_time.is_some());

    let first = token.refresh_token().expect("a refresh token").clone();
    let refreshed = c.exchange_refresh_token(&first).request_async(&http).await.expect("refresh");
    let second = refreshed.refresh_token().expect("a rotated refresh token").clone();
    assert_ne!(first.secret(), second.secret());
    let claims = verify(&sidecar, refreshed.access_token().secret()).await;
    assert_eq!(claims.sub, "alice");
    assert_eq!(scopes(&claims.scope), scopes("authenticated farm_manager farm_viewer"));

    // Narrowing is allowed, for this access token only.
    let narrowed = c
        .exchange_refresh_token(&second)
        .add_scope(Scope::new("farm_viewer".into()))
        .request_async(&http)
        .await
        .expect("narrowed refresh");
    assert_eq!(verify(&sidecar, narrowed.access_token().secret()).await.scope, "farm_viewer");
    let third = narrowed.refresh_token().unwrap().clone();
    let wide_again = c.exchange_refresh_token(&third).request_async(&http).await.expect("refresh");
    let claims = verify(&sidecar, wide_again.access_token().secret()).await;
    assert_eq!(scopes(&claims.scope), scopes("authenticated farm_manager farm_viewer"));
}

#[tokio::test]
async fn refresh_token_reuse_revokes_family() {
    // Without the grace window (on by default), any reuse revokes at once.
    let sidecar = Sidecar::start(&format!("{SERVER}  refresh_reuse_grace: 0s\n"));
    let c = client(&sidecar, "legacy", Some("legacy-secret-0123456789"));
    let token = c
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-password".into()),
        )
        .request_async(&http)
        .await
        .unwrap();
    let first = token.refresh_token().unwrap().clone();
    let successor = c.exchange_refresh_token(&first).request_async(&http).await.unwrap();
    let successor = successor.refresh_token().unwrap().clone();

    let reuse = c.exchange_refresh_token(&first).request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&reuse), BasicErrorResponseType::InvalidGrant);
    let revoked = c.exchange_refresh_token(&successor).request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&revoked), BasicErrorResponseType::InvalidGrant, "the family is revoked");

    let unknown = c
        .exchange_refresh_token(&RefreshToken::new("made-up".into()))
        .request_async(&http)
        .await
        .unwrap_err();
    assert_eq!(error_code(&unknown), BasicErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn refresh_cannot_widen_scope_or_be_used_by_another_client() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "limited", Some("limited-secret-0123456789"));
    let token = c
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-password".into()),
        )
        .add_scope(Scope::new("farm_viewer".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(token.scopes().unwrap().len(), 2, "limit_requested_access: authenticated farm_viewer");
    let rt = token.refresh_token().unwrap().clone();
    let widened =
        c.exchange_refresh_token(&rt).add_scope(Scope::new("farm_manager".into())).request_async(&http).await;
    assert_eq!(error_code(&widened.unwrap_err()), BasicErrorResponseType::InvalidScope);

    let refreshed = c
        .exchange_refresh_token(&rt)
        .add_scope(Scope::new("farm_viewer".into()))
        .request_async(&http)
        .await
        .expect("the refused widening left the token usable");
    let next = refreshed.refresh_token().unwrap().clone();

    let other = client(&sidecar, "farm", None);
    let err = other.exchange_refresh_token(&next).request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let last =
        c.exchange_refresh_token(&next).request_async(&http).await.expect("still usable by its own client");
    let claims = verify(&sidecar, last.access_token().secret()).await;
    assert_eq!(
        scopes(&claims.scope),
        scopes("authenticated farm_viewer"),
        "the refresh token kept its scope"
    );
}

#[tokio::test]
async fn password_grant_refused_when_not_in_grant_types_or_wrong_password() {
    let sidecar = Sidecar::start(SERVER);
    let alice = ResourceOwnerUsername::new("alice".into());
    let password = ResourceOwnerPassword::new("alice-password".into());
    for c in
        [client(&sidecar, "farm", None), client(&sidecar, "reporting", Some("reporting-secret-0123456789"))]
    {
        let err = c.exchange_password(&alice, &password).request_async(&http).await.unwrap_err();
        assert_eq!(error_code(&err), BasicErrorResponseType::UnauthorizedClient);
    }
    let legacy = client(&sidecar, "legacy", Some("legacy-secret-0123456789"));
    for (user, pass) in [("alice", "wrong"), ("nobody", "alice-password")] {
        let err = legacy
            .exchange_password(
                &ResourceOwnerUsername::new(user.into()),
                &ResourceOwnerPassword::new(pass.into()),
            )
            .request_async(&http)
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "{user}");
    }
}

#[tokio::test]
async fn disabled_user_refused() {
    let sidecar = Sidecar::start(SERVER);
    let legacy = client(&sidecar, "legacy", Some("legacy-secret-0123456789"));
    let alice = ResourceOwnerUsername::new("alice".into());
    let password = ResourceOwnerPassword::new("alice-password".into());
    let token = legacy.exchange_password(&alice, &password).request_async(&http).await.unwrap();
    let rt = token.refresh_token().unwrap().clone();

    // Disable both users through the store the running sidecar uses.
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    for name in ["alice", "reporter"] {
        let mut user = store.user(name).await.unwrap().unwrap();
        user.disabled = true;
        store.put_user(&user).await.unwrap();
    }
    store.close().await;

    let err = legacy.exchange_password(&alice, &password).request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let err = legacy.exchange_refresh_token(&rt).request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let reporting = client(&sidecar, "reporting", Some("reporting-secret-0123456789"));
    let err = reporting.exchange_client_credentials().request_async(&http).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the acting user is disabled");
}

#[tokio::test]
async fn metadata_lists_what_is_implemented() {
    let sidecar = Sidecar::start(SERVER);
    let meta = get_json(&sidecar, "/.well-known/oauth-authorization-server").await;
    let issuer = meta["issuer"].as_str().unwrap();
    assert!(!issuer.ends_with('/'));
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(meta["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["authorization_code", "client_credentials", "password", "refresh_token"])
    );
    assert_eq!(get_json(&sidecar, "/.well-known/openid-configuration").await, meta);
    let jwks = get_json(&sidecar, "/.well-known/jwks.json").await;
    let algs: HashSet<&str> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, HashSet::from(["EdDSA", "RS256"]));
}
