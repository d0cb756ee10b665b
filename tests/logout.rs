//! OpenID Connect logout over real sockets with the real binary:
//! RP-initiated logout at `/oauth/logout` (its refusals, the confirmation
//! page, CSRF), back-channel logout tokens received by a test HTTP server
//! (with a failing first attempt, retried), and the admin Users page's
//! "sign out everywhere". The browser test `tests/e2e/logout.test.mjs`
//! drives the same endpoint with `openid-client`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Sidecar;
use common::browser::{Browser, query, unescape};
use serde_json::Value;
use tokio::sync::mpsc;

/// A PKCE pair (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SIGNED_OUT: &str = "http://127.0.0.1:9/signed-out";

/// The server section: `web` takes back-channel logouts at `receiver`.
fn config(receiver: SocketAddr) -> String {
    format!(
        r#"
server:
  roles:
    farm_viewer: {{ label: Viewer, description: Read farm records }}
  consumers:
    - client_id: web
      confidential: false
      third_party: false
      redirect_uris: ["{REDIRECT}"]
      post_logout_redirect_uris: ["{SIGNED_OUT}"]
      backchannel_logout_uri: "http://{receiver}/backchannel"
      scopes: [farm_viewer]
      grant_types: [authorization_code, refresh_token]
    - client_id: other
      confidential: false
      third_party: false
      redirect_uris: ["{REDIRECT}"]
      scopes: [farm_viewer]
      grant_types: [authorization_code]
  users:
    - {{ username: alice, password: alice-password-1, roles: [farm_viewer] }}
    - {{ username: root, password: root-password-1, admin: true, permissions: [administer oauth, manage oauth client secrets] }}
    - {{ username: clerk, password: clerk-password-1, admin: true }}
"#
    )
}

/// A back-channel logout receiver: each posted `logout_token` goes to the
/// channel; the first `fail_first` posts are answered 500.
async fn receiver(fail_first: usize) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    async fn take(
        State((tx, seen, fail_first)): State<(mpsc::UnboundedSender<String>, Arc<AtomicUsize>, usize)>,
        body: String,
    ) -> http::StatusCode {
        let token = url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let _ = tx.send(token);
        if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
            http::StatusCode::INTERNAL_SERVER_ERROR
        } else {
            http::StatusCode::OK
        }
    }
    let app = axum::Router::new().route("/backchannel", post(take)).with_state((tx, seen, fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

/// Waits for the next logout token (the sidecar delivers within its poll
/// interval of 5 s, plus retries).
async fn next_token(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a logout token within 30 s")
        .expect("the receiver runs")
}

/// A JWT's header and claims, unverified (the e2e test verifies with the JWKS).
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.').map(|p| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()));
    (it.next().unwrap().unwrap(), it.next().unwrap().unwrap())
}

fn authorize_url(s: &Sidecar, client_id: &str) -> String {
    s.url(&format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20farm_viewer\
         &state=st&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    ))
}

/// Signs alice in at `/oauth/authorize` for `client_id` in `b` (unless
/// signed in already) and redeems the code; the ID token.
async fn id_token(s: &Sidecar, b: &mut Browser, client_id: &str, user: (&str, &str)) -> String {
    grant(s, b, client_id, user).await["id_token"].as_str().expect("an ID token").to_owned()
}

/// The token response of a code flow for `client_id`, signing `user` in
/// when asked.
async fn grant(s: &Sidecar, b: &mut Browser, client_id: &str, user: (&str, &str)) -> Value {
    let page = b.get(&authorize_url(s, client_id)).await;
    let back = if page.status == 200 { b.sign_in(s, &page, user.0, user.1).await } else { page };
    assert!(matches!(back.status, 302 | 303), "{}", back.body);
    let code = query(&back.location())["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", VERIFIER),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let res = common::client()
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The status of a refresh token grant for the public client `web`.
async fn refresh_status(s: &Sidecar, refresh_token: &str) -> u16 {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", "web")];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let res = common::client()
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// True when `b` still has a session at `/oauth/authorize` (a code comes
/// back without the sign-in page).
async fn signed_in(s: &Sidecar, b: &mut Browser) -> bool {
    let page = b.get(&authorize_url(s, "web")).await;
    match page.status {
        302 => true,
        200 => {
            assert!(page.body.contains("name=\"password\""), "{}", page.body);
            false
        }
        other => panic!("unexpected {other}: {}", page.body),
    }
}

fn logout_url(s: &Sidecar, params: &[(&str, &str)]) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    s.url(&format!("/oauth/logout?{q}"))
}

#[tokio::test]
async fn a_valid_hint_ends_the_session_at_once_and_the_consumer_gets_a_logout_token() {
    let (addr, mut tokens) = receiver(0).await;
    let s = Sidecar::start(&config(addr));
    let discovery: Value = common::client()
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = discovery["issuer"].as_str().unwrap();
    assert_eq!(discovery["end_session_endpoint"], format!("{issuer}/oauth/logout"));
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);
    assert_eq!(discovery["frontchannel_logout_supported"], false);

    let mut b = Browser::new();
    let granted = grant(&s, &mut b, "web", ("alice", "alice-password-1")).await;
    let hint = granted["id_token"].as_str().expect("an ID token").to_owned();
    let refresh = granted["refresh_token"].as_str().expect("a refresh token").to_owned();
    let (_, id_claims) = parts(&hint);
    let sid = id_claims["sid"].as_str().expect("sid in the ID token").to_owned();
    assert!(signed_in(&s, &mut b).await);

    let url = logout_url(
        &s,
        &[("id_token_hint", &hint), ("post_logout_redirect_uri", SIGNED_OUT), ("state", "bye")],
    );
    let out = b.get(&url).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location().as_str(), format!("{SIGNED_OUT}?state=bye"));
    assert!(
        out.set_cookies().iter().any(|c| c.starts_with("oauth_sidecar_session=;") && c.contains("Max-Age=0"))
    );
    assert!(!signed_in(&s, &mut b).await, "the session is gone");
    // The grant made in the session (without offline_access) ended with it.
    assert_eq!(refresh_status(&s, &refresh).await, 400);

    let token = next_token(&mut tokens).await;
    let (header, claims) = parts(&token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["iss"], id_claims["iss"]);
    assert_eq!(claims["aud"], "web");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], sid.as_str());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims["jti"].is_string() && claims["iat"].is_i64());
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
}

#[tokio::test]
async fn refusals_leave_the_session_and_an_untrusted_hint_asks_first() {
    let (addr, _tokens) = receiver(0).await;
    let s = Sidecar::start(&config(addr));
    let mut b = Browser::new();
    let hint = id_token(&s, &mut b, "web", ("alice", "alice-password-1")).await;

    // An unknown client, or a redirect URI the client did not register (or
    // one without a client): an error page, no redirect.
    for params in [
        vec![("client_id", "nobody"), ("post_logout_redirect_uri", SIGNED_OUT)],
        vec![("client_id", "web"), ("post_logout_redirect_uri", "https://evil.example/")],
        vec![("id_token_hint", hint.as_str()), ("post_logout_redirect_uri", "http://127.0.0.1:9/cb")],
        vec![("client_id", "other"), ("post_logout_redirect_uri", SIGNED_OUT)],
        vec![("post_logout_redirect_uri", SIGNED_OUT)],
        vec![("client_id", "other"), ("id_token_hint", hint.as_str())],
    ] {
        let page = b.get(&logout_url(&s, &params)).await;
        assert_eq!(page.status, 400, "{params:?}: {}", page.body);
        assert!(page.headers.get("location").is_none());
    }
    assert!(signed_in(&s, &mut b).await, "nothing ended");

    // A hint that does not verify (its signature changed) is no hint: the
    // user is asked, the session stays.
    let (head, rest) = hint.rsplit_once('.').unwrap();
    let flipped = if rest.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &rest[1..]);
    for bad in [forged.as_str(), "not-a-token"] {
        let url = logout_url(
            &s,
            &[("id_token_hint", bad), ("client_id", "web"), ("post_logout_redirect_uri", SIGNED_OUT)],
        );
        let page = b.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Sign out?") && page.body.contains("alice"), "{}", page.body);
    }
    assert!(signed_in(&s, &mut b).await, "the confirmation page ended nothing");
    let url =
        logout_url(&s, &[("client_id", "web"), ("post_logout_redirect_uri", SIGNED_OUT), ("state", "s1")]);
    let confirm = b.get(&url).await;
    assert_eq!(confirm.status, 200);
    assert_eq!(confirm.form_action(), "/oauth/logout");
    let csrf = confirm.input("csrf_token");
    let fields = |token: &'static str| {
        vec![
            ("step", "confirm"),
            ("client_id", "web"),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "s1"),
            ("csrf_token", token),
        ]
    };

    // A cross-site POST (no CSRF cookie, or no token) is refused.
    let mut other_site = Browser::new();
    let refused = other_site.post(&s, "/oauth/logout", &fields("")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = b.post(&s, "/oauth/logout", &fields("")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let forged_token: &'static str = Box::leak(format!("{}x", &csrf[..csrf.len() - 1]).into_boxed_str());
    assert_eq!(b.post(&s, "/oauth/logout", &fields(forged_token)).await.status, 403);
    assert!(signed_in(&s, &mut b).await, "refused posts ended nothing");

    // The confirmed form ends it, and only goes to the registered URI.
    let token: &'static str = Box::leak(csrf.into_boxed_str());
    let done = b.post(&s, "/oauth/logout", &fields(token)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location().as_str(), format!("{SIGNED_OUT}?state=s1"));
    assert!(!signed_in(&s, &mut b).await);

    // Signed out already: nothing to ask, straight back.
    let again =
        b.get(&logout_url(&s, &[("client_id", "web"), ("post_logout_redirect_uri", SIGNED_OUT)])).await;
    assert_eq!(again.status, 303);
    // Without a redirect URI: a page saying so.
    let page = b.get(&s.url("/oauth/logout")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You are signed out."), "{}", page.body);
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_with_the_same_jti() {
    let (addr, mut tokens) = receiver(1).await;
    let s = Sidecar::start(&config(addr));
    let mut b = Browser::new();
    let hint = id_token(&s, &mut b, "web", ("alice", "alice-password-1")).await;
    let out = b.get(&logout_url(&s, &[("id_token_hint", &hint)])).await;
    assert_eq!(out.status, 200, "signed out, no redirect: {}", out.body);
    let first = next_token(&mut tokens).await;
    let second = next_token(&mut tokens).await;
    let (_, a) = parts(&first);
    let (_, b2) = parts(&second);
    assert_eq!(a["jti"], b2["jti"], "one logout, one jti");
    assert_eq!(a["sid"], b2["sid"]);
    s.wait_for_log(&["back-channel logout failed; tried again later", "\"attempt\":1"]);
    s.wait_for_log(&["back-channel logout delivered", "\"attempt\":2"]);
    assert!(!s.logs().iter().any(|l| l.contains(&first) || l.contains(&hint)), "no token reaches a log line");
}

/// Signs in at the admin pages; the CSRF token of the Users page.
async fn admin(s: &Sidecar, user: &str, password: &str) -> (Browser, String) {
    let mut b = Browser::new();
    let login = b.get(&s.url("/admin/login")).await;
    let landed = b.sign_in(s, &login, user, password).await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    let users = b.get(&s.url("/admin/users")).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(unescape(&users.body).contains("action=\"/admin/users/alice/sign-out\""), "{}", users.body);
    let csrf = users.input("csrf_token");
    (b, csrf)
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_user_and_tells_the_consumers() {
    let (addr, mut tokens) = receiver(0).await;
    let s = Sidecar::start(&config(addr));
    // alice in two browsers, each session with an ID token for `web`.
    let mut one = Browser::new();
    let mut two = Browser::new();
    let first = id_token(&s, &mut one, "web", ("alice", "alice-password-1")).await;
    let second = id_token(&s, &mut two, "web", ("alice", "alice-password-1")).await;
    let sids = [parts(&first).1["sid"].clone(), parts(&second).1["sid"].clone()];
    assert_ne!(sids[0], sids[1], "one sid per session");

    // root signs in at the admin pages and at /oauth/ too.
    let (mut root, csrf) = admin(&s, "root", "root-password-1").await;
    let mut root_oauth = Browser::new();
    id_token(&s, &mut root_oauth, "other", ("root", "root-password-1")).await;

    // The admin pages' sign-out ends the admin session only.
    let out = root.post(&s, "/admin/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(root.get(&s.url("/admin/users")).await.status, 303, "the admin session ended");
    assert_eq!(root_oauth.get(&authorize_url(&s, "other")).await.status, 302, "the /oauth/ one did not");

    // Without a CSRF token (another site's form), or by an admin who lacks a
    // permission the user holds: refused, nothing ends.
    let (mut root, csrf) = admin(&s, "root", "root-password-1").await;
    assert_eq!(root.post(&s, "/admin/users/alice/sign-out", &[]).await.status, 403);
    let (mut clerk, clerk_csrf) = admin(&s, "clerk", "clerk-password-1").await;
    let refused = clerk.post(&s, "/admin/users/root/sign-out", &[("csrf_token", &clerk_csrf)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(root.get(&s.url("/admin/users")).await.status, 200, "root is still signed in");
    assert!(signed_in(&s, &mut one).await && signed_in(&s, &mut two).await);

    let done = root.post(&s, "/admin/users/alice/sign-out", &[("csrf_token", &csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(!signed_in(&s, &mut one).await, "first browser signed out");
    assert!(!signed_in(&s, &mut two).await, "second browser signed out");
    assert_eq!(root.get(&s.url("/admin/users")).await.status, 200, "the admin's own session stays");
    let mut told: Vec<Value> = Vec::new();
    for _ in 0..2 {
        let (_, claims) = parts(&next_token(&mut tokens).await);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "web");
        told.push(claims["sid"].clone());
    }
    told.sort_by_key(|v| v.to_string());
    let mut expected = sids.to_vec();
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(told, expected, "one logout token per ended session");
}

#[tokio::test]
async fn disabling_a_user_tells_the_consumers_of_their_sessions() {
    let (addr, mut tokens) = receiver(0).await;
    let s = Sidecar::start(&config(addr));
    let mut b = Browser::new();
    let hint = id_token(&s, &mut b, "web", ("alice", "alice-password-1")).await;
    let out = common::cli(s.dir.path(), &["user", "disable", "alice"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, claims) = parts(&next_token(&mut tokens).await);
    assert_eq!(claims["sid"], parts(&hint).1["sid"]);
    assert!(!signed_in(&s, &mut b).await);
}
