//! Revocation (RFC 7009), introspection (RFC 7662), userinfo (OpenID Connect),
//! signing keys reloaded while running, and the refresh grace window, over
//! real sockets with the real binary. Tokens are obtained with the `oauth2`
//! crate, the other endpoints are called with reqwest as a client or
//! resource server would.

mod common;

use std::time::{Duration, Instant};

use common::Sidecar;
use oauth_sidecar::store::{ServerStore, SignInStore, SqliteStore, StoreBase};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, RefreshToken,
    RequestTokenError, ResourceOwnerPassword, ResourceOwnerUsername, TokenResponse, TokenUrl,
};
use serde_json::{Value, json};

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
    - client_id: robot
      secret: robot-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: shortlived
      secret: shortlived-secret-0123456789
      user_id: reporter
      access_token_ttl: 3s
      grant_types: [client_credentials]
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer, farm_manager]
      limit_user_access: true
      grant_types: [password, refresh_token]
    - client_id: other
      secret: other-secret-0123456789
      scopes: [farm_viewer]
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

const LEGACY: (&str, &str) = ("legacy", "legacy-secret-0123456789");
const OTHER: (&str, &str) = ("other", "other-secret-0123456789");
const REPORTING: (&str, &str) = ("reporting", "reporting-secret-0123456789");

type Client = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;
type TokenError = RequestTokenError<reqwest::Error, oauth2::basic::BasicErrorResponse>;

/// The `oauth2` crate's async HTTP client, over our reqwest.
async fn http(req: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let client = common::client();
    let (parts, body) = req.into_parts();
    let res =
        client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut out = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    Ok(out.body(res.bytes().await?.to_vec()).expect("response"))
}

fn client(sidecar: &Sidecar, (id, secret): (&str, &str)) -> Client {
    BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(sidecar.url("/oauth/token")).expect("token url"))
}

fn error_code(e: &TokenError) -> BasicErrorResponseType {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

/// Alice's tokens from the password grant of `consumer`.
async fn alice(sidecar: &Sidecar, consumer: (&str, &str)) -> BasicTokenResponse {
    client(sidecar, consumer)
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-password".into()),
        )
        .request_async(&http)
        .await
        .expect("password grant")
}

async fn client_credentials(sidecar: &Sidecar, consumer: (&str, &str)) -> String {
    let token = client(sidecar, consumer).exchange_client_credentials().request_async(&http).await;
    token.expect("client_credentials grant").access_token().secret().clone()
}

async fn refresh(sidecar: &Sidecar, rt: &str) -> Result<BasicTokenResponse, TokenError> {
    client(sidecar, LEGACY).exchange_refresh_token(&RefreshToken::new(rt.into())).request_async(&http).await
}

fn refresh_token(token: &BasicTokenResponse) -> String {
    token.refresh_token().expect("a refresh token").secret().clone()
}

/// POSTs a form to `path` with Basic credentials when given.
async fn post(
    sidecar: &Sidecar,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let mut req = common::client()
        .post(sidecar.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"));
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.expect("request")
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Introspects `token` as the `reporting` consumer, a resource server.
async fn introspect(sidecar: &Sidecar, token: &str) -> Value {
    let res = post(sidecar, "/oauth/introspect", Some(REPORTING), &[("token", token)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.expect("JSON")
}

async fn revoke(sidecar: &Sidecar, consumer: (&str, &str), token: &str) {
    let res = post(sidecar, "/oauth/revoke", Some(consumer), &[("token", token)]).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
}

async fn userinfo(sidecar: &Sidecar, authorization: Option<&str>) -> reqwest::Response {
    let mut req = common::client().get(sidecar.url("/oauth/userinfo"));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    req.send().await.expect("request")
}

fn www_authenticate(res: &reqwest::Response) -> String {
    res.headers()["www-authenticate"].to_str().expect("ASCII").to_owned()
}

/// The claims of a JWT, unverified (the server's answers are under test).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("a JWT header").kid.expect("a kid")
}

// --- revocation ---

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family() {
    let sidecar = Sidecar::start(SERVER);
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let rotated = refresh(&sidecar, &first).await.expect("refresh");
    let current = refresh_token(&rotated);
    assert_eq!(introspect(&sidecar, &current).await["active"], true);

    // client_secret_post this time, with a hint that does not match: both work.
    let res = post(
        &sidecar,
        "/oauth/revoke",
        None,
        &[
            ("token", &current),
            ("token_type_hint", "access_token"),
            ("client_id", LEGACY.0),
            ("client_secret", LEGACY.1),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&sidecar, &current).await, json!({ "active": false }));
    let err = refresh(&sidecar, &current).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the family is revoked");
    let err = refresh(&sidecar, &first).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn revoking_an_access_token_makes_it_inactive_and_refused_by_userinfo() {
    let sidecar = Sidecar::start(SERVER);
    let tokens = alice(&sidecar, LEGACY).await;
    let at = tokens.access_token().secret();
    assert_eq!(introspect(&sidecar, at).await["active"], true);
    assert_eq!(userinfo(&sidecar, Some(&format!("Bearer {at}"))).await.status(), 200);

    revoke(&sidecar, LEGACY, at).await;
    assert_eq!(introspect(&sidecar, at).await, json!({ "active": false }));
    let res = userinfo(&sidecar, Some(&format!("Bearer {at}"))).await;
    assert_eq!(res.status(), 401);
    assert!(www_authenticate(&res).contains("error=\"invalid_token\""));
    // The refresh token of the same grant is another token: still usable.
    refresh(&sidecar, &refresh_token(&tokens)).await.expect("the refresh token is not revoked");
}

#[tokio::test]
async fn revoking_another_clients_token_answers_200_and_changes_nothing() {
    let sidecar = Sidecar::start(SERVER);
    let tokens = alice(&sidecar, LEGACY).await;
    let at = tokens.access_token().secret();
    let rt = refresh_token(&tokens);
    revoke(&sidecar, OTHER, at).await;
    revoke(&sidecar, OTHER, &rt).await;
    assert_eq!(introspect(&sidecar, at).await["active"], true);
    assert_eq!(introspect(&sidecar, &rt).await["active"], true);
    refresh(&sidecar, &rt).await.expect("still usable by its own client");
}

#[tokio::test]
async fn revocation_refusals_and_unknown_tokens() {
    let sidecar = Sidecar::start(SERVER);
    for unknown in ["made-up", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        revoke(&sidecar, LEGACY, unknown).await;
    }
    let res = post(&sidecar, "/oauth/revoke", Some(LEGACY), &[]).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    let res = post(&sidecar, "/oauth/revoke", Some((LEGACY.0, "wrong-secret")), &[("token", "x")]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    let res = post(&sidecar, "/oauth/revoke", None, &[("token", "x")]).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client", "no client authentication");
}

// --- introspection ---

#[tokio::test]
async fn introspection_requires_a_confidential_client() {
    let sidecar = Sidecar::start(SERVER);
    let at = client_credentials(&sidecar, REPORTING).await;
    let refusals = [
        post(&sidecar, "/oauth/introspect", None, &[("token", &at)]).await,
        post(&sidecar, "/oauth/introspect", Some((REPORTING.0, "wrong-secret")), &[("token", &at)]).await,
        post(
            &sidecar,
            "/oauth/introspect",
            None,
            &[("token", &at), ("client_id", "reporting"), ("client_secret", "wrong")],
        )
        .await,
        post(&sidecar, "/oauth/introspect", None, &[("token", &at), ("client_id", "nobody")]).await,
        // A public client only names itself: it cannot authenticate.
        post(&sidecar, "/oauth/introspect", None, &[("token", &at), ("client_id", "farm")]).await,
    ];
    for res in refusals {
        assert_eq!(res.status(), 401);
        assert!(www_authenticate(&res).starts_with("Basic"));
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(body.get("active").is_none(), "nothing about the token: {body}");
    }
}

#[tokio::test]
async fn introspection_of_an_access_token_lists_its_claims() {
    let sidecar = Sidecar::start(SERVER);
    let at = client_credentials(&sidecar, REPORTING).await;
    let c = claims(&at);
    // Any confidential consumer may introspect, here `legacy` a token of `reporting`.
    let res = post(&sidecar, "/oauth/introspect", Some(LEGACY), &[("token", &at)]).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        answer,
        json!({
            "active": true,
            "scope": c["scope"],
            "client_id": "reporting",
            "username": "reporter",
            "sub": "reporter",
            "aud": c["aud"],
            "iss": c["iss"],
            "exp": c["exp"],
            "iat": c["iat"],
            "jti": c["jti"],
            "token_type": "Bearer",
        })
    );

    let robot = client_credentials(&sidecar, ("robot", "robot-secret-0123456789")).await;
    let answer = introspect(&sidecar, &robot).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], "robot");
    assert!(answer.get("username").is_none(), "a token acting for no user has no username");
}

#[tokio::test]
async fn introspection_of_refresh_tokens() {
    let sidecar = Sidecar::start(SERVER);
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let answer = introspect(&sidecar, &first).await;
    let exp = answer["exp"].as_i64().expect("exp");
    assert_eq!(
        answer,
        json!({
            "active": true,
            "scope": "authenticated farm_manager farm_viewer",
            "client_id": "legacy",
            "username": "alice",
            "exp": exp,
            "token_type": "refresh_token",
        })
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now + 14 * 86_400 - exp).abs() < 60, "the refresh token lifetime");
    let next = refresh_token(&refresh(&sidecar, &first).await.unwrap());
    assert_eq!(introspect(&sidecar, &first).await, json!({ "active": false }), "rotated");
    assert_eq!(introspect(&sidecar, &next).await["active"], true);
}

#[tokio::test]
async fn unknown_malformed_forged_or_expired_tokens_are_inactive() {
    let sidecar = Sidecar::start(SERVER);
    let at = client_credentials(&sidecar, REPORTING).await;
    let (head, rest) = at.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut forged_claims = claims(&at);
    forged_claims["scope"] = "farm_manager".into();
    use base64::Engine;
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
    let forged = format!("{head}.{forged_payload}.{signature}");
    for token in ["made-up", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", forged.as_str()] {
        assert_eq!(introspect(&sidecar, token).await, json!({ "active": false }), "{token}");
    }
    let res = post(&sidecar, "/oauth/introspect", Some(REPORTING), &[]).await;
    assert_eq!(res.status(), 400, "no token");

    // Times are whole seconds: a 3 s token has at least 2 s left when issued.
    let short = client_credentials(&sidecar, ("shortlived", "shortlived-secret-0123456789")).await;
    assert_eq!(introspect(&sidecar, &short).await["active"], true);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(introspect(&sidecar, &short).await, json!({ "active": false }), "expired");
}

// --- userinfo ---

#[tokio::test]
async fn userinfo_answers_the_users_current_roles() {
    let sidecar = Sidecar::start(SERVER);
    let at = alice(&sidecar, LEGACY).await.access_token().secret().clone();
    let bearer = format!("Bearer {at}");
    let res = userinfo(&sidecar, Some(&bearer)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "sub": "alice", "preferred_username": "alice", "roles": ["farm_viewer", "farm_manager"] })
    );
    let posted = common::client().post(sidecar.url("/oauth/userinfo")).header("authorization", &bearer);
    assert_eq!(posted.send().await.unwrap().json::<Value>().await.unwrap(), body, "POST works as GET");

    // Roles as they are now, not as they were when the token was issued.
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    let mut user = store.user("alice").await.unwrap().unwrap();
    user.roles = vec!["farm_viewer".into()];
    store.put_user(&user).await.unwrap();
    let body: Value = userinfo(&sidecar, Some(&bearer)).await.json().await.unwrap();
    assert_eq!(body["roles"], json!(["farm_viewer"]));

    user.disabled = true;
    store.put_user(&user).await.unwrap();
    store.close().await;
    let res = userinfo(&sidecar, Some(&bearer)).await;
    assert_eq!(res.status(), 401);
    assert!(www_authenticate(&res).contains("error=\"invalid_token\""), "a disabled user");
}

#[tokio::test]
async fn userinfo_refusals_follow_rfc6750() {
    let sidecar = Sidecar::start(SERVER);
    for header in [None, Some("Basic cmVwb3J0aW5nOng=")] {
        let res = userinfo(&sidecar, header).await;
        assert_eq!(res.status(), 401, "{header:?}");
        assert_eq!(www_authenticate(&res), "Bearer realm=\"oauth\"", "no error code without a token");
    }
    let res = userinfo(&sidecar, Some("Bearer two words")).await;
    assert_eq!(res.status(), 400);
    assert!(www_authenticate(&res).contains("error=\"invalid_request\""));

    let robot = client_credentials(&sidecar, ("robot", "robot-secret-0123456789")).await;
    let expired = client_credentials(&sidecar, ("shortlived", "shortlived-secret-0123456789")).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    for token in ["made-up", "a.b.c", robot.as_str(), expired.as_str()] {
        let res = userinfo(&sidecar, Some(&format!("Bearer {token}"))).await;
        assert_eq!(res.status(), 401, "{token}");
        let challenge = www_authenticate(&res);
        assert!(challenge.starts_with("Bearer realm=\"oauth\", error=\"invalid_token\""), "{challenge}");
    }
    // A token that acts for a user works, so the refusals above are about the tokens.
    let reporter = client_credentials(&sidecar, REPORTING).await;
    let body: Value = userinfo(&sidecar, Some(&format!("Bearer {reporter}"))).await.json().await.unwrap();
    assert_eq!(body["sub"], "reporter");
}

// --- metadata ---

#[tokio::test]
async fn metadata_lists_revocation_introspection_and_userinfo() {
    let sidecar = Sidecar::start(SERVER);
    let meta: Value = common::client()
        .get(sidecar.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = meta["issuer"].as_str().unwrap();
    assert_eq!(meta["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
    assert_eq!(meta["introspection_endpoint"], format!("{issuer}/oauth/introspect"));
    assert_eq!(meta["userinfo_endpoint"], format!("{issuer}/oauth/userinfo"));
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

// --- signing keys reloaded while running ---

/// Runs `oauth-sidecar keys rotate` on the running sidecar's configuration.
fn rotate_with_cli(sidecar: &Sidecar) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(["keys", "rotate", "--config"])
        .arg(sidecar.dir.path().join("sidecar.yaml"))
        .output()
        .expect("run oauth-sidecar keys rotate");
    assert!(out.status.success(), "keys rotate failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
}

#[tokio::test]
async fn a_key_rotated_by_the_cli_signs_without_a_restart_and_old_tokens_still_verify() {
    let sidecar = Sidecar::start(&format!("{SERVER}  keys_reload_interval: 1s\n"));
    let old = client_credentials(&sidecar, REPORTING).await;
    let old_kid = kid(&old);

    let new_kid = rotate_with_cli(&sidecar);
    assert_ne!(new_kid, old_kid);
    let deadline = Instant::now() + Duration::from_secs(15);
    let jwks = loop {
        let jwks: Value = common::client()
            .get(sidecar.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if jwks.to_string().contains(&new_kid) {
            break jwks;
        }
        assert!(Instant::now() < deadline, "the rotated key was not loaded: {jwks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{jwks}");
    sidecar.wait_for_log(&["signing keys reloaded"]);

    let new = client_credentials(&sidecar, REPORTING).await;
    assert_eq!(kid(&new), new_kid, "new tokens are signed with the rotated key");
    assert_eq!(introspect(&sidecar, &old).await["active"], true, "the old token still verifies");
    assert_eq!(introspect(&sidecar, &new).await["active"], true);
    let body: Value = userinfo(&sidecar, Some(&format!("Bearer {old}"))).await.json().await.unwrap();
    assert_eq!(body["sub"], "reporter");
}

// --- refresh grace window ---

fn with_grace(grace: &str) -> String {
    format!("{SERVER}  refresh_reuse_grace: {grace}\n")
}

fn same_pair(a: &BasicTokenResponse, b: &BasicTokenResponse) -> bool {
    a.access_token().secret() == b.access_token().secret() && refresh_token(a) == refresh_token(b)
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_identical_pair() {
    let sidecar = Sidecar::start(&with_grace("5s"));
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let pair = refresh(&sidecar, &first).await.expect("refresh");
    let retry = refresh(&sidecar, &first).await.expect("a retry within the window");
    assert!(same_pair(&pair, &retry), "the same access and refresh token");
    assert_eq!(retry.scopes(), pair.scopes());
    assert!(retry.expires_in().unwrap() <= pair.expires_in().unwrap());
    sidecar.wait_for_log(&["retried within the grace window"]);

    // The family lives on: the pair works, and once it is used, the old
    // token is a reuse that revokes the family.
    let next = refresh(&sidecar, &refresh_token(&pair)).await.expect("the pair is usable");
    let err = refresh(&sidecar, &first).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let err = refresh(&sidecar, &refresh_token(&next)).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the family is revoked");
}

#[tokio::test]
async fn a_retry_by_another_client_within_the_grace_window_revokes_the_family() {
    let sidecar = Sidecar::start(&with_grace("5s"));
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let pair = refresh(&sidecar, &first).await.expect("refresh");
    let err = client(&sidecar, OTHER)
        .exchange_refresh_token(&RefreshToken::new(first.clone()))
        .request_async(&http)
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let err = refresh(&sidecar, &refresh_token(&pair)).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the family is revoked");
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_family() {
    let sidecar = Sidecar::start(&with_grace("1s"));
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let pair = refresh(&sidecar, &first).await.expect("refresh");
    // The window is whole seconds rounded up: at most 2 s here.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let err = refresh(&sidecar, &first).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let err = refresh(&sidecar, &refresh_token(&pair)).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the family is revoked");
}

#[tokio::test]
async fn without_a_grace_window_a_retry_revokes_the_family() {
    let sidecar = Sidecar::start(&with_grace("0s"));
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let pair = refresh(&sidecar, &first).await.expect("refresh");
    let err = refresh(&sidecar, &first).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let err = refresh(&sidecar, &refresh_token(&pair)).await.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant, "the family is revoked");
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_rotate_once_and_share_the_pair() {
    let sidecar = Sidecar::start(&with_grace("5s"));
    let first = refresh_token(&alice(&sidecar, LEGACY).await);
    let sidecar = std::sync::Arc::new(sidecar);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (sidecar, first) = (sidecar.clone(), first.clone());
            tokio::spawn(async move { refresh(&sidecar, &first).await.expect("every request succeeds") })
        })
        .collect();
    let mut pairs = Vec::new();
    for task in tasks {
        pairs.push(task.await.unwrap());
    }
    assert!(pairs.iter().all(|p| same_pair(p, &pairs[0])), "one rotation, one pair for all");
    refresh(&sidecar, &refresh_token(&pairs[0])).await.expect("the pair is usable");
}
