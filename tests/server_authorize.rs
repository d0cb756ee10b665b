//! The authorization code grant over real sockets with the real binary: the
//! sign-in and consent pages driven by HTTP form posts as a browser would,
//! the `oauth2` crate as the client (and `openidconnect` for ID tokens), and
//! every refusal of the front channel and of the code exchange.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::browser::{Browser, query};
use common::{Sidecar, oauth_http as http};
use oauth_sidecar::server::jwt::AccessClaims;
use oauth_sidecar::store::{GateStore, ServerStore, SignInStore, SqliteStore};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::header::LOCATION;
use serde_json::Value;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  login_attempts: 3
  login_attempts_per_address: 5
  consumers:
    - client_id: farm
      label: Farm app
      confidential: false
      third_party: false
      redirect_uris: [http://127.0.0.1/authorized, http://app.example/cb]
      scopes: [farm_manager]
      grant_types: [authorization_code, refresh_token]
    - client_id: partner
      label: Partner & Co
      secret: partner-secret-0123456789
      redirect_uris: [https://partner.example/cb]
      scopes: [farm_viewer, farm_manager]
      limit_requested_access: true
      grant_types: [authorization_code]
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: alice
      redirect_uris: [https://reporting.example/cb]
      scopes: [farm_viewer]
      grant_types: [client_credentials]
  users:
    - username: alice
      password: alice-password
      roles: [farm_viewer, farm_manager]
    - username: bob
      password: bob-password
      roles: [farm_viewer]
"#;

const FARM_REDIRECT: &str = "http://127.0.0.1/authorized";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(sidecar: &Sidecar, id: &str, secret: Option<&str>, redirect: &str) -> Client {
    let mut c = BasicClient::new(ClientId::new(id.into()))
        .set_auth_uri(AuthUrl::new(sidecar.url("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(sidecar.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    if let Some(secret) = secret {
        c = c.set_client_secret(ClientSecret::new(secret.into()));
    }
    c
}

/// Runs the front channel for `farm` with PKCE as alice; returns the code,
/// its verifier and the browser (signed in).
async fn farm_code(sidecar: &Sidecar) -> (String, PkceCodeVerifier, Browser) {
    let c = client(sidecar, "farm", None, FARM_REDIRECT);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = c
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("farm_manager".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    let back = browser.sign_in(sidecar, &login, "alice", "alice-password").await;
    assert_eq!(back.status, 303, "{}", back.body);
    let params = query(&back.location());
    assert_eq!(params["state"], *state.secret());
    (params["code"].clone(), verifier, browser)
}

fn error_code(
    e: &RequestTokenError<reqwest::Error, oauth2::basic::BasicErrorResponse>,
) -> BasicErrorResponseType {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

/// The error code of a code exchange that must fail.
async fn exchange_error(
    c: &Client,
    code: String,
    verifier: Option<PkceCodeVerifier>,
) -> BasicErrorResponseType {
    let mut request = c.exchange_code(AuthorizationCode::new(code));
    if let Some(verifier) = verifier {
        request = request.set_pkce_verifier(verifier);
    }
    error_code(&request.request_async(&http).await.expect_err("the exchange must fail"))
}

/// An authorization URL of `c` with a PKCE challenge nobody will verify.
fn pkce_url(c: &Client) -> url::Url {
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    c.authorize_url(CsrfToken::new_random).set_pkce_challenge(challenge).url().0
}

async fn discovery(sidecar: &Sidecar) -> Value {
    let res = common::client().get(sidecar.url("/.well-known/openid-configuration")).send().await.unwrap();
    res.json().await.unwrap()
}

fn claims_of(token: &str) -> AccessClaims {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn scopes(s: &str) -> HashSet<&str> {
    s.split(' ').collect()
}

#[tokio::test]
async fn authorization_code_with_pkce_signs_in_and_issues_tokens() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = c
        .authorize_url(|| CsrfToken::new("state with spaces & symbols/?=".into()))
        .add_scope(Scope::new("farm_manager".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("Farm app"), "{}", login.body);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self' http://127.0.0.1"), "{csp}");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["cache-control"], "no-store");

    let back = browser.sign_in(&sidecar, &login, "alice", "alice-password").await;
    assert_eq!(back.status, 303, "{}", back.body);
    let session =
        back.set_cookies().into_iter().find(|c| c.starts_with("oauth_sidecar_session=")).expect("a session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/oauth/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "the public URL is http: {session}");
    let location = back.location();
    assert!(location.as_str().starts_with(FARM_REDIRECT), "{location}");
    let params = query(&location);
    assert_eq!(params["state"], *state.secret(), "state comes back untouched");
    let meta = discovery(&sidecar).await;
    assert_eq!(params["iss"], meta["issuer"].as_str().unwrap(), "RFC 9207");

    let token = c
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code exchange");
    let claims = claims_of(token.access_token().secret());
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.client_id, "farm");
    assert_eq!(scopes(&claims.scope), scopes("authenticated farm_manager"));
    assert!(claims.auth_time.is_some());
    let refresh = token.refresh_token().expect("farm may refresh");
    let refreshed = c.exchange_refresh_token(refresh).request_async(&http).await.expect("refresh");
    assert_eq!(claims_of(refreshed.access_token().secret()).sub, "alice");

    // Signed in: the next authorization needs no page at all.
    let url = pkce_url(&c);
    let again = browser.get(url.as_str()).await;
    assert_eq!(again.status, 302, "{}", again.body);
    assert!(query(&again.location()).contains_key("code"));
}

#[tokio::test]
async fn third_party_consumers_show_consent_where_scopes_can_be_unticked() {
    let sidecar = Sidecar::start(SERVER);
    let redirect = "https://partner.example/cb";
    let c = client(&sidecar, "partner", Some("partner-secret-0123456789"), redirect);
    let (url, _) = c
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("farm_viewer".into()))
        .add_scope(Scope::new("farm_manager".into()))
        .url();
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    assert!(login.body.contains("Partner &amp; Co"), "labels are escaped: {}", login.body);
    let consent = browser.sign_in(&sidecar, &login, "alice", "alice-password").await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    for text in
        ["Viewer", "Read farm records", "Manager", "Create and edit farm records", "type=\"checkbox\""]
    {
        assert!(consent.body.contains(text), "{text} on {}", consent.body);
    }
    let csp = consent.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://partner.example"), "{csp}");
    let csrf = consent.input("csrf_token");
    let action = consent.form_action();
    let fields =
        [("csrf_token", csrf.as_str()), ("step", "consent"), ("scope", "farm_viewer"), ("decision", "allow")];
    let back = browser.post(&sidecar, &action, &fields).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let code = query(&back.location())["code"].clone();
    let token = c.exchange_code(AuthorizationCode::new(code)).request_async(&http).await.expect("exchange");
    let claims = claims_of(token.access_token().secret());
    assert_eq!(scopes(&claims.scope), scopes("authenticated farm_viewer"), "farm_manager was unticked");
    assert!(token.refresh_token().is_none(), "partner may not refresh");

    // A forged form cannot add what was not requested, and Deny says so.
    let (url, state) =
        c.authorize_url(CsrfToken::new_random).add_scope(Scope::new("farm_viewer".into())).url();
    let consent = browser.get(url.as_str()).await;
    let csrf = consent.input("csrf_token");
    let action = consent.form_action();
    let forged = [
        ("csrf_token", csrf.as_str()),
        ("step", "consent"),
        ("scope", "farm_viewer"),
        ("scope", "farm_manager"),
        ("decision", "allow"),
    ];
    let back = browser.post(&sidecar, &action, &forged).await;
    let code = query(&back.location())["code"].clone();
    let token = c.exchange_code(AuthorizationCode::new(code)).request_async(&http).await.unwrap();
    assert_eq!(scopes(&claims_of(token.access_token().secret()).scope), scopes("authenticated farm_viewer"));
    let denied = browser
        .post(&sidecar, &action, &[("csrf_token", &csrf), ("step", "consent"), ("decision", "deny")])
        .await;
    let params = query(&denied.location());
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], *state.secret());
}

#[tokio::test]
async fn client_and_redirect_errors_are_pages_never_redirects() {
    let sidecar = Sidecar::start(SERVER);
    let mut browser = Browser::new();
    let cases = [
        "/oauth/authorize?response_type=code&client_id=farm&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        "/oauth/authorize?response_type=code&client_id=farm&redirect_uri=http%3A%2F%2F127.0.0.1%2Fauthorized%2Fx",
        "/oauth/authorize?response_type=code&client_id=farm",
        "/oauth/authorize?response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        "/oauth/authorize?response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        "/oauth/authorize?client_id=farm&client_id=partner&redirect_uri=https%3A%2F%2Fpartner.example%2Fcb",
    ];
    for path in cases {
        let page = browser.get(&sidecar.url(path)).await;
        assert_eq!(page.status, 400, "{path}: {}", page.body);
        assert!(page.headers.get(LOCATION).is_none(), "{path} must not redirect");
        assert!(page.body.contains("<html"), "{path}: an HTML page");
        assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    }
    // A loopback redirect URI may use any port (RFC 8252 section 7.3).
    let loopback = "/oauth/authorize?response_type=code&client_id=farm&redirect_uri=http%3A%2F%2F127.0.0.1%3A5173%2Fauthorized\
                    &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
    assert_eq!(browser.get(&sidecar.url(loopback)).await.status, 200, "the sign-in page");
}

#[tokio::test]
async fn request_errors_after_the_redirect_is_known_go_back_to_the_client() {
    let sidecar = Sidecar::start(SERVER);
    let mut browser = Browser::new();
    let base = "/oauth/authorize?client_id=farm&redirect_uri=http%3A%2F%2F127.0.0.1%2Fauthorized&state=s1";
    let challenge = "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let cases = [
        (format!("{base}&response_type=code"), "invalid_request", "PKCE"),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=plain"),
            "invalid_request",
            "plain",
        ),
        (format!("{base}&response_type=code&{challenge}"), "invalid_request", "plain"),
        (
            format!("{base}&response_type=code&code_challenge=short&code_challenge_method=S256"),
            "invalid_request",
            "S256",
        ),
        (
            format!("{base}&response_type=token&{challenge}&code_challenge_method=S256"),
            "unsupported_response_type",
            "code",
        ),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=S256&scope=farm_owner"),
            "invalid_scope",
            "farm_owner",
        ),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=S256&scope=a&scope=b"),
            "invalid_request",
            "more than once",
        ),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=S256&prompt=none"),
            "login_required",
            "signed in",
        ),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=S256&prompt=none%20login"),
            "invalid_request",
            "prompt=none",
        ),
        (
            format!("{base}&response_type=code&{challenge}&code_challenge_method=S256&request=eyJ"),
            "request_not_supported",
            "request objects",
        ),
        (
            format!(
                "{base}&response_type=code&{challenge}&code_challenge_method=S256&response_mode=fragment"
            ),
            "invalid_request",
            "response_mode",
        ),
    ];
    for (path, error, words) in cases {
        let page = browser.get(&sidecar.url(&path)).await;
        assert_eq!(page.status, 302, "{path}: {}", page.body);
        let location = page.location();
        assert!(location.as_str().starts_with(FARM_REDIRECT), "{location}");
        let params = query(&location);
        assert_eq!(params["error"], error, "{path}");
        assert!(params["error_description"].contains(words), "{path}: {}", params["error_description"]);
        assert_eq!(params["state"], "s1");
        assert!(params.contains_key("iss"));
    }
    // A consumer without the grant.
    let path = "/oauth/authorize?client_id=reporting&response_type=code&redirect_uri=https%3A%2F%2Freporting.example%2Fcb";
    let params = query(&browser.get(&sidecar.url(path)).await.location());
    assert_eq!(params["error"], "unauthorized_client");
}

#[tokio::test]
async fn require_pkce_all_refuses_confidential_consumers_without_pkce_unless_they_opt_out() {
    let legacy = r#"
    - client_id: legacy
      secret: legacy-secret-0123456789
      require_pkce: false
      redirect_uris: [https://legacy.example/cb]
      scopes: [farm_viewer]
      grant_types: [authorization_code]
"#;
    let config =
        SERVER.replace("  login_attempts: 3\n", "  login_attempts: 3\n  require_pkce: all\n").replace(
            "      grant_types: [client_credentials]\n",
            &format!("      grant_types: [client_credentials]\n{}", legacy.trim_start_matches('\n')),
        );
    let sidecar = Sidecar::start(&config);
    let mut browser = Browser::new();
    let partner = "/oauth/authorize?client_id=partner&response_type=code\
                   &redirect_uri=https%3A%2F%2Fpartner.example%2Fcb&state=s1";
    let page = browser.get(&sidecar.url(partner)).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let params = query(&page.location());
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].contains("PKCE"), "{}", params["error_description"]);

    // A consumer whose own require_pkce says no may still leave it out.
    let legacy = "/oauth/authorize?client_id=legacy&response_type=code\
                  &redirect_uri=https%3A%2F%2Flegacy.example%2Fcb&state=s1";
    let page = browser.get(&sidecar.url(legacy)).await;
    assert_eq!(page.status, 200, "the sign-in page: {}", page.body);
}

#[tokio::test]
async fn wrong_missing_or_unexpected_code_verifier_is_invalid_grant() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let (code, _, _) = farm_code(&sidecar).await;
    let wrong = PkceCodeVerifier::new("x".repeat(43));
    assert_eq!(exchange_error(&c, code, Some(wrong)).await, BasicErrorResponseType::InvalidGrant);
    let (code, _, _) = farm_code(&sidecar).await;
    assert_eq!(exchange_error(&c, code, None).await, BasicErrorResponseType::InvalidGrant);

    // A confidential client that sent no challenge may not send a verifier.
    let partner =
        client(&sidecar, "partner", Some("partner-secret-0123456789"), "https://partner.example/cb");
    let (url, _) = partner.authorize_url(CsrfToken::new_random).url();
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    let consent = browser.sign_in(&sidecar, &login, "bob", "bob-password").await;
    let csrf = consent.input("csrf_token");
    let back = browser
        .post(
            &sidecar,
            &consent.form_action(),
            &[("csrf_token", &csrf), ("step", "consent"), ("decision", "allow")],
        )
        .await;
    let code = query(&back.location())["code"].clone();
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    assert_eq!(exchange_error(&partner, code, Some(verifier)).await, BasicErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn code_reuse_fails_and_revokes_the_tokens_issued_from_it() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let (code, verifier, _) = farm_code(&sidecar).await;
    let verifier_again = PkceCodeVerifier::new(verifier.secret().clone());
    let token = c
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("first use");
    let err = c
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier_again)
        .request_async(&http)
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    let refresh = c.exchange_refresh_token(token.refresh_token().unwrap()).request_async(&http).await;
    assert_eq!(
        error_code(&refresh.unwrap_err()),
        BasicErrorResponseType::InvalidGrant,
        "the refresh family is revoked"
    );
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    let jti = claims_of(token.access_token().secret()).jti;
    assert!(store.is_access_token_revoked(&jti).await.unwrap(), "the access token is revoked");
    assert!(sidecar.logs().iter().any(|l| l.contains("an authorization code was used twice")));
}

#[tokio::test]
async fn an_expired_code_or_a_code_for_another_client_is_invalid_grant() {
    let sidecar =
        Sidecar::start(&SERVER.replace("  login_attempts: 3\n", "  login_attempts: 3\n  code_ttl: 1s\n"));
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let (code, verifier, _) = farm_code(&sidecar).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err =
        c.exchange_code(AuthorizationCode::new(code)).set_pkce_verifier(verifier).request_async(&http).await;
    let err = err.unwrap_err();
    assert_eq!(error_code(&err), BasicErrorResponseType::InvalidGrant);
    assert!(format!("{err:?}").contains("expired"), "{err:?}");

    let (code, verifier, _) = farm_code(&sidecar).await;
    let partner = client(&sidecar, "partner", Some("partner-secret-0123456789"), FARM_REDIRECT);
    assert_eq!(exchange_error(&partner, code, Some(verifier)).await, BasicErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn a_sign_in_form_without_its_csrf_token_is_refused() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let url = pkce_url(&c);
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    let action = login.form_action();
    let csrf = login.input("csrf_token");
    let creds = [("step", "login"), ("username", "alice"), ("password", "alice-password")];
    let missing = browser.post(&sidecar, &action, &creds).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    assert!(missing.set_cookies().iter().all(|c| !c.starts_with("oauth_sidecar_session")));
    let wrong = [("csrf_token", "AAAA"), creds[0], creds[1], creds[2]];
    assert_eq!(browser.post(&sidecar, &action, &wrong).await.status, 403);
    // The token without the browser's cookie (a cross-site post) fails too.
    let mut other = Browser::new();
    let with_token = [("csrf_token", csrf.as_str()), creds[0], creds[1], creds[2]];
    assert_eq!(other.post(&sidecar, &action, &with_token).await.status, 403);
    assert_eq!(browser.post(&sidecar, &action, &with_token).await.status, 303, "the real form works");
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_and_lose_their_session() {
    let sidecar = Sidecar::start(SERVER);
    let (_, _, mut browser) = farm_code(&sidecar).await;
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    let mut alice = store.user("alice").await.unwrap().unwrap();
    alice.disabled = true;
    store.put_user(&alice).await.unwrap();

    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let url = pkce_url(&c);
    let login = browser.get(url.as_str()).await;
    assert_eq!(login.status, 200, "the session no longer counts: {}", login.body);
    let refused = browser.sign_in(&sidecar, &login, "alice", "alice-password").await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("disabled"), "{}", refused.body);
    assert!(refused.headers.get(LOCATION).is_none());
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account() {
    let sidecar = Sidecar::start(SERVER);
    let c = client(&sidecar, "farm", None, FARM_REDIRECT);
    let url = pkce_url(&c);
    let mut browser = Browser::new();
    let mut page = browser.get(url.as_str()).await;
    for _ in 0..3 {
        page = browser.sign_in(&sidecar, &page, "alice", "wrong-password").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Wrong username or password"), "{}", page.body);
        assert_eq!(page.input("username"), "alice", "the username is kept");
    }
    let blocked = browser.sign_in_status(&sidecar, &page, "alice", "alice-password").await;
    assert_eq!(blocked.status, 429, "even the right password waits: {}", blocked.body);
    assert!(blocked.body.contains("Too many failed sign-in attempts"));
    // Another account from another browser is not affected.
    let mut other = Browser::new();
    let login = other.get(url.as_str()).await;
    let bob = other.sign_in(&sidecar, &login, "bob", "bob-password").await;
    assert_eq!(bob.status, 303);
    // The address has 3 failures; 2 more use up its 5.
    let mut third = Browser::new();
    let mut page = third.get(url.as_str()).await;
    for _ in 0..2 {
        page = third.sign_in(&sidecar, &page, "bob", "wrong-password").await;
    }
    let blocked = third.sign_in_status(&sidecar, &page, "bob", "bob-password").await;
    assert_eq!(blocked.status, 429, "the address is used up though bob's account is not");
}

#[tokio::test]
async fn metadata_describes_the_authorization_endpoint() {
    let sidecar = Sidecar::start(SERVER);
    let meta = discovery(&sidecar).await;
    let issuer = meta["issuer"].as_str().unwrap();
    assert_eq!(meta["authorization_endpoint"], format!("{issuer}/oauth/authorize"));
    assert_eq!(meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(meta["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(meta["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
}

/// A port free for a moment, so the public URL (the issuer) can name it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn openid_scope_adds_an_id_token_that_openidconnect_verifies() {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
    use openidconnect::{AccessTokenHash, IssuerUrl, Nonce, OAuth2TokenResponse, TokenResponse as _};

    for alg in ["RS256", "EdDSA"] {
        let port = free_port();
        let prefix = format!("listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\n");
        let config =
            SERVER.replace("  login_attempts: 3\n", &format!("  login_attempts: 3\n  id_token_alg: {alg}\n"));
        let sidecar = Sidecar::start_with(&config, &prefix);
        let issuer = IssuerUrl::new(format!("http://127.0.0.1:{port}")).unwrap();
        let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.expect("discovery");
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new("farm".into()), None)
            .set_redirect_uri(RedirectUrl::new(FARM_REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("farm_manager".into()))
            .set_pkce_challenge(challenge)
            .url();
        let mut browser = Browser::new();
        let login = browser.get(url.as_str()).await;
        let back = browser.sign_in(&sidecar, &login, "alice", "alice-password").await;
        let code = query(&back.location())["code"].clone();
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .expect("the code exchange");
        let id_token = token.id_token().expect("an ID token for the openid scope");
        let id_verifier = client.id_token_verifier();
        let claims = id_token.claims(&id_verifier, &nonce).expect("the ID token verifies, nonce included");
        assert_eq!(claims.subject().as_str(), "alice");
        assert!(claims.auth_time().is_some());
        let expected = AccessTokenHash::from_token(
            token.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&id_verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected), "{alg}: at_hash binds the access token");
        assert!(id_token.claims(&id_verifier, &Nonce::new("another".into())).is_err(), "a wrong nonce fails");
        let scope = claims_of(token.access_token().secret()).scope;
        assert_eq!(scopes(&scope), scopes("authenticated farm_manager openid"));
        // A refresh renews the ID token: same user and auth_time, no nonce.
        let refresh = token.refresh_token().expect("farm may refresh");
        let renewed =
            client.exchange_refresh_token(refresh).unwrap().request_async(&http).await.expect("refresh");
        let renewed_id = renewed.id_token().expect("a renewed ID token");
        let no_nonce = |n: Option<&Nonce>| if n.is_none() { Ok(()) } else { Err("a nonce".to_owned()) };
        let renewed_claims =
            renewed_id.claims(&id_verifier, no_nonce).expect("the renewed ID token verifies");
        assert_eq!(renewed_claims.subject().as_str(), "alice");
        assert_eq!(renewed_claims.auth_time(), claims.auth_time());
    }
}
