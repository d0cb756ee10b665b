//! The OAuth client role end to end, over real sockets: this sidecar (A)
//! connects to a second oauth-sidecar process (P) acting as the provider
//! through the `demo` preset. A browser drives A's admin sign-in, P's
//! sign-in and consent pages with form posts; an upstream API checks P's
//! tokens; the app calls it through A's egress listener.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::Sidecar;
use common::browser::{Browser, Page, query};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use oauth_sidecar::store::{ClientStore, SqliteStore, StoreBase};
use serde_json::{Value, json};

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";
const VENDING: &str = "vending-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The provider: an authorization server with a `mailapp` consumer whose
/// redirect URI is A's return path, and the user alice.
fn provider(port: u16, a_port: u16, ttl: &str) -> Sidecar {
    // No refresh grace window: a refresh token used behind the client's back
    // makes the client's own copy a reuse at once.
    let config = format!(
        r#"
server:
  refresh_reuse_grace: 0s
  roles:
    read_mail: {{ label: Read mail, description: Read your mailbox }}
  consumers:
    - client_id: mailapp
      label: Mail connector
      secret: mailapp-secret-0123456789
      redirect_uris: [http://127.0.0.1:{a_port}/oauth/return]
      scopes: [read_mail]
      grant_types: [authorization_code, refresh_token]
      access_token_ttl: {ttl}
  users:
    - username: alice
      password: alice-password
      roles: [read_mail]
"#
    );
    Sidecar::start_with(&config, &format!("listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\n"))
}

/// This sidecar: the `demo` preset pointed at P, an egress route to the
/// upstream, and an admin made with the CLI.
fn client_sidecar(a_port: u16, p_port: u16, upstream: SocketAddr, extra_client: &str) -> Sidecar {
    let config = format!(
        r#"
client:
  token_key: {TOKEN_KEY}
  refresh_skew: 1s
  refresh_ahead: 0s
  state_ttl: 2s
  providers:
    - name: demo
      issuer: http://127.0.0.1:{p_port}
{extra_client}  clients:
    - name: mail
      provider: demo
      client_id: mailapp
      client_secret: mailapp-secret-0123456789
    - name: mail-badkeys
      provider: demo-badkeys
      client_id: mailapp
      client_secret: mailapp-secret-0123456789
    - name: mail-down
      provider: demo-down
      client_id: mailapp
      client_secret: mailapp-secret-0123456789
    - name: mail-oidc
      provider: demo-oidc
      client_id: mailapp
      client_secret: mailapp-secret-0123456789
egress:
  listen: 127.0.0.1:0
  vending_secret: {VENDING}
  routes:
    - {{ prefix: /egress/api/, target: "http://{upstream}", client: mail, tag: alice-box }}
"#
    );
    let dir = common::write_config(
        &config,
        &format!("listen: 127.0.0.1:{a_port}\npublic_url: http://127.0.0.1:{a_port}\n"),
    );
    let out = cli(&dir, &["user", "add", "admin", "--admin"], Some("admin-password\n"));
    assert!(out.0, "user add: {}", out.2);
    Sidecar::start_in(dir)
}

/// Custom providers: P's endpoints with foreign signing keys, a token
/// endpoint where nothing listens, and P found by OpenID discovery.
fn extra_providers(p_port: u16, jwks: SocketAddr) -> String {
    let p = format!("http://127.0.0.1:{p_port}");
    format!(
        "    - name: demo-badkeys\n      issuer: {p}\n      authorize_url: {p}/oauth/authorize\n      token_url: {p}/oauth/token\n      jwks_url: http://{jwks}/jwks.json\n      scopes: [read_mail, openid]\n\
         \x20   - name: demo-down\n      issuer: {p}\n      authorize_url: {p}/oauth/authorize\n      token_url: http://127.0.0.1:1/oauth/token\n      jwks_url: {p}/.well-known/jwks.json\n      scopes: [read_mail, openid]\n\
         \x20   - name: demo-oidc\n      issuer: {p}\n      discovery: true\n      scopes: [read_mail, openid]\n"
    )
}

/// Runs the binary's CLI on a config folder: (success, stdout, stderr).
fn cli(dir: &tempfile::TempDir, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(args)
        .arg("--config")
        .arg(dir.path().join("sidecar.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An API that accepts only tokens P signed: it checks the JWT against P's
/// JWKS, and refuses with 401 once when told to.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    reject_next: Arc<std::sync::atomic::AtomicBool>,
}

async fn spawn_api(issuer: String) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Api { addr, seen: Arc::default(), reject_next: Arc::default() };
    let state = api.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            let issuer = issuer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    let issuer = issuer.clone();
                    async move { Ok::<_, Infallible>(api_answer(req, &state, &issuer).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    api
}

async fn api_answer(req: Request<Incoming>, api: &Api, issuer: &str) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
    };
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return reply(401, "no token".into());
    };
    api.seen.lock().unwrap().push(token.to_owned());
    if api.reject_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return reply(401, "told to refuse".into());
    }
    let jwks: jsonwebtoken::jwk::JwkSet = common::client()
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let Ok(header) = jsonwebtoken::decode_header(token) else { return reply(401, "not a JWT".into()) };
    let Some(jwk) = header.kid.as_deref().and_then(|k| jwks.find(k)) else {
        return reply(401, "unknown key".into());
    };
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => {
            reply(200, serde_json::json!({ "sub": data.claims["sub"], "path": req.uri().path() }).to_string())
        }
        Err(e) => reply(401, format!("bad token: {e}")),
    }
}

/// A JWKS with a key P never signed with.
async fn spawn_foreign_jwks() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    use base64::Engine;
    use ring::signature::KeyPair;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let body = serde_json::json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA" }] }).to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

struct World {
    a: Sidecar,
    p: Sidecar,
    api: Api,
    egress: SocketAddr,
}

async fn world(ttl: &str) -> World {
    let (a_port, p_port) = (free_port(), free_port());
    let p = provider(p_port, a_port, ttl);
    let api = spawn_api(format!("http://127.0.0.1:{p_port}")).await;
    let jwks = spawn_foreign_jwks().await;
    let a = client_sidecar(a_port, p_port, api.addr, &extra_providers(p_port, jwks));
    let egress = a.egress_addr();
    World { a, p, api, egress }
}

/// Signs in at A as the admin, opens an authorization start and confirms
/// it; returns the redirect to the provider.
async fn start(w: &World, browser: &mut Browser, path: &str) -> url::Url {
    let page = confirmation(w, browser, path).await;
    let csrf = page.input("csrf_token");
    let to_p = browser.post(&w.a, &page.form_action(), &[("csrf_token", &csrf), ("step", "start")]).await;
    assert_eq!(to_p.status, 303, "{}", to_p.body);
    to_p.location()
}

/// The confirmation page `path` (an `/oauth/start` URL) shows at A, after
/// signing in as the admin when asked.
async fn confirmation(w: &World, browser: &mut Browser, path: &str) -> Page {
    let mut page = browser.get(&w.a.url(path)).await;
    if page.status == 200 && page.body.contains("name=\"password\"") {
        let back = browser.sign_in(&w.a, &page, "admin", "admin-password").await;
        assert_eq!(back.status, 303, "{}", back.body);
        let location = back.headers["location"].to_str().unwrap().to_owned();
        assert_eq!(location, path, "back to the start after signing in");
        page = browser.get(&w.a.url(&location)).await;
    }
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("name=\"step\" value=\"start\""), "a confirmation: {}", page.body);
    page
}

/// At P: signs in as alice when asked, then allows or denies on the consent page.
async fn at_provider(w: &World, browser: &mut Browser, url: &url::Url, allow: bool) -> Page {
    let mut page = browser.get(url.as_str()).await;
    if page.body.contains("name=\"password\"") {
        page = browser.sign_in(&w.p, &page, "alice", "alice-password").await;
    }
    assert_eq!(page.status, 200, "the consent page: {}", page.body);
    let csrf = page.input("csrf_token");
    let decision = if allow { "allow" } else { "deny" };
    let back = browser
        .post(
            &w.p,
            &page.form_action(),
            &[("csrf_token", &csrf), ("step", "consent"), ("decision", decision)],
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    back
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

async fn stored_tokens(w: &World) -> usize {
    let store = SqliteStore::open(&w.a.store_path()).await.unwrap();
    let n = store.provider_tokens().await.unwrap().len();
    store.close().await;
    n
}

async fn egress_get(w: &World, path: &str) -> (u16, String) {
    let res = common::client().get(format!("http://{}{path}", w.egress)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn full_flow_against_a_second_sidecar_stores_refreshes_injects_and_revokes() {
    let w = world("3s").await;
    let mut browser = Browser::new();

    // An admin signs in at A and starts; A redirects to P with PKCE, state and nonce.
    let to_p = start(&w, &mut browser, "/oauth/start/mail?tag=alice-box").await;
    let params = query(&to_p);
    assert!(to_p.as_str().starts_with(&w.p.url("/oauth/authorize")), "{to_p}");
    assert!(params["state"].len() >= 22, "at least 128 bits of state");
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(params.contains_key("nonce"));
    assert_eq!(params["redirect_uri"], w.a.url("/oauth/return"));
    assert_eq!(params["scope"], "read_mail openid");

    // Alice signs in at P and allows; P sends the browser back to A.
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    let landing = browser.get(back.location().as_str()).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    assert!(landing.body.contains("Connected"), "{}", landing.body);
    // The landing page names the client and the tag, and links back.
    assert!(
        landing.body.contains("with tag &quot;alice-box&quot; (client mail, provider"),
        "{}",
        landing.body
    );
    assert!(!landing.body.contains(": token "), "no internal token number: {}", landing.body);
    assert!(landing.body.contains("href=\"&#x2f;admin&#x2f;clients&#x2f;mail\""), "{}", landing.body);
    let stored = w.a.wait_for_log(&["provider token stored", "alice-box"]);
    assert!(stored.contains("alice"), "the owner from the verified ID token or userinfo: {stored}");

    let (ok, list, _) = cli(&w.a.dir, &["token", "list", "--json"], None);
    assert!(ok);
    let rows: Value = serde_json::from_str(&list).unwrap();
    let row = &rows[0];
    assert_eq!(
        (&row["client"], &row["tag"], &row["grant"], &row["status"]),
        (&json!("mail"), &json!("alice-box"), &json!("authorization_code"), &json!("ok")),
        "{list}"
    );
    assert!(row["owner"].as_str().unwrap().contains("alice"), "{list}");
    assert!(row["expires_at"].as_i64().unwrap() > 1_700_000_000, "a Unix time: {list}");
    let id = row["id"].to_string();
    let (_, table, _) = cli(&w.a.dir, &["token", "list"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "CLIENT", "TAG", "GRANT", "OWNER", "EXPIRES", "AT", "STATUS"], "{table}");
    assert!(table.lines().nth(1).unwrap().contains(" UTC "), "a readable expiry: {table}");
    let (ok, inspect, _) = cli(&w.a.dir, &["token", "inspect", &id], None);
    assert!(ok);
    let inspected: Value = serde_json::from_str(&inspect).unwrap();
    assert!(inspected["raw_response"]["id_token"].is_string(), "the ID token is kept in the raw response");
    assert_eq!(inspected["access_token_jwt"]["verified"], false);
    assert_eq!(inspected["access_token_jwt"]["claims"]["sub"], "alice");
    let first_access = inspected["access_token"].as_str().unwrap().to_owned();
    let first_refresh = inspected["refresh_token"].as_str().unwrap().to_owned();

    // No token is in the SQLite files in clear.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", w.a.store_path().display());
        let Ok(bytes) = std::fs::read(&path) else { continue };
        for secret in [&first_access, &first_refresh] {
            assert!(
                !bytes.windows(secret.len()).any(|win| win == secret.as_bytes()),
                "a token in clear in {path}"
            );
        }
    }

    // The app calls the API through egress; the API checks P's signature.
    let (status, body) = egress_get(&w, "/egress/api/v1/me?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sub\":\"alice\"") && body.contains("/v1/me"), "{body}");
    assert_eq!(w.api.seen.lock().unwrap().last().unwrap(), &first_access);

    // 401 from the API: one refresh at P, one retry with the new token.
    w.api.reject_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = egress_get(&w, "/egress/api/v1/me").await;
    assert_eq!(status, 200, "{body}");
    let seen = w.api.seen.lock().unwrap().clone();
    let (rejected, retried) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(rejected, &first_access);
    assert_ne!(retried, rejected, "the retry carries a refreshed token");

    // Refresh before use: P's tokens live 3s, A refreshes within 1s of expiry.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (status, _) = egress_get(&w, "/egress/api/v1/me").await;
    assert_eq!(status, 200);
    let latest = w.api.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(&latest, retried, "refreshed before use");

    // Token vending for XOAUTH2 clients, behind the shared secret.
    let vend = format!("http://{}/oauth/tokens/mail/alice-box", w.egress);
    let refused = common::client().get(&vend).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let vended: Value =
        common::client().get(&vend).bearer_auth(VENDING).send().await.unwrap().json().await.unwrap();
    assert_eq!(vended["access_token"], latest.as_str());
    let x: Value = common::client()
        .get(format!("{vend}?format=xoauth2&user=alice@example.org"))
        .bearer_auth(VENDING)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let sasl = base64::engine::general_purpose::STANDARD.decode(x["xoauth2"].as_str().unwrap()).unwrap();
    assert_eq!(sasl, format!("user=alice@example.org\x01auth=Bearer {latest}\x01\x01").into_bytes());

    // Delete revokes at P: the refresh token A held no longer works there.
    let (ok, _, _) = cli(&w.a.dir, &["token", "inspect", &id], None);
    assert!(ok);
    let held: Value = serde_json::from_str(&cli(&w.a.dir, &["token", "inspect", &id], None).1).unwrap();
    let held_refresh = held["refresh_token"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(&w.a.dir, &["token", "delete", &id], None);
    assert!(ok, "{err}");
    assert!(out.contains("revoked token") && out.contains("deleted token"), "{out}");
    let res = common::client()
        .post(w.p.url("/oauth/token"))
        .basic_auth("mailapp", Some("mailapp-secret-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "refresh_token"), ("refresh_token", held_refresh.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("invalid_grant"));
    assert_eq!(stored_tokens(&w).await, 0);
    // The running sidecar stops injecting it once its memory copy lapses (5 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let (status, body) = egress_get(&w, "/egress/api/v1/me").await;
        if status == 503 {
            assert!(body.contains("no_token"), "{body}");
            assert!(
                body.contains("authorize it at /oauth/start/mail?tag=alice-box"),
                "the hint names the tag: {body}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still injecting a deleted token");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for line in w.a.logs() {
        assert!(
            !line.contains(&first_access) && !line.contains(&first_refresh) && !line.contains(&latest),
            "a token in a log line: {line}"
        );
    }
}

#[tokio::test]
async fn the_start_sign_in_allows_the_providers_origin_and_other_loopback_names_go_to_the_public_url() {
    let w = world("1h").await;
    let a_port = w.a.addr.port();
    // Signed out: the sign-in page, whose post ends (after /oauth/start's
    // redirect) at P, another origin: Chromium checks form-action there.
    let mut browser = Browser::new();
    let page = browser.get(&w.a.url("/oauth/start/mail?tag=x")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with(&format!("form-action 'self' {}", w.p.url(""))), "{csp}");
    // An unknown client names no other origin.
    let page = browser.get(&w.a.url("/oauth/start/nope")).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with("form-action 'self'"), "{csp}");

    // The same listener under another loopback name: sent to the public
    // URL first, same path and query (cookies are kept per host name).
    common::install_crypto();
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get_as = |host: String, path: &str| raw.get(w.a.url(path)).header("host", host).send();
    let res = get_as(format!("localhost:{a_port}"), "/oauth/start/mail?tag=a%20b").await.unwrap();
    assert_eq!(res.status(), 307);
    assert_eq!(res.headers()["location"], w.a.url("/oauth/start/mail?tag=a%20b"));
    let res = get_as(format!("localhost:{a_port}"), "/admin/clients/mail").await.unwrap();
    assert_eq!(res.status(), 307, "the admin pages too");
    assert_eq!(res.headers()["location"], w.a.url("/admin/clients/mail"));
    // A name for another port (a proxy may be in front) is left alone.
    let res = get_as("localhost:1".to_owned(), "/oauth/start/mail").await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn returns_with_unknown_reused_expired_or_foreign_state_are_refused() {
    let w = world("1h").await;
    let mut browser = Browser::new();
    // Unknown state.
    let page = browser.get(&w.a.url("/oauth/return?state=nope&code=x")).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("unknown or was already completed"), "{}", page.body);

    // A state from another browser.
    let to_p = start(&w, &mut browser, "/oauth/start/mail").await;
    let state = query(&to_p)["state"].clone();
    let mut other = Browser::new();
    let page = other.get(&w.a.url(&format!("/oauth/return?state={state}&code=x"))).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("no record of starting this authorization"), "{}", page.body);
    assert!(page.body.contains("another browser, or at another address of this site"), "{}", page.body);
    assert!(
        page.body.contains(&w.a.url("/oauth/start/mail").replace('/', "&#x2f;")),
        "where to start: {}",
        page.body
    );

    // Expired (state_ttl: 2s).
    let to_p = start(&w, &mut browser, "/oauth/start/mail").await;
    let state = query(&to_p)["state"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let page = browser.get(&w.a.url(&format!("/oauth/return?state={state}&code=x"))).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("expired"), "{}", page.body);

    // Reused: a completed return presented again.
    let to_p = start(&w, &mut browser, "/oauth/start/mail?tag=once").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    assert_eq!(browser.get(back.location().as_str()).await.status, 200);
    let again = browser.get(back.location().as_str()).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("unknown or was already completed"), "{}", again.body);
    assert_eq!(stored_tokens(&w).await, 1, "only the one completed flow stored a token");
}

#[tokio::test]
async fn an_authorization_response_naming_another_issuer_or_none_is_refused() {
    // P announces authorization_response_iss_parameter_supported (RFC 9207)
    // in its discovery document and sends iss; a response that names
    // another authorization server (a mix-up) or none is refused before its
    // code is redeemed.
    let w = world("1h").await;
    let mut browser = Browser::new();
    for iss in [Some("http://127.0.0.1:1"), None] {
        let to_p = start(&w, &mut browser, "/oauth/start/mail-oidc").await;
        let back = at_provider(&w, &mut browser, &to_p, true).await;
        let mut location = back.location();
        let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert!(pairs.iter().any(|(k, v)| k == "iss" && *v == w.p.url("")), "P sends its iss: {location}");
        let kept = pairs.iter().filter(|(k, _)| k != "iss");
        let mut query = location.query_pairs_mut();
        query.clear().extend_pairs(kept.map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(iss) = iss {
            query.append_pair("iss", iss);
        }
        drop(query);
        let page = browser.get(location.as_str()).await;
        assert_eq!(page.status, 400, "iss {iss:?}: {}", page.body);
        assert!(page.body.contains("iss"), "{}", page.body);
    }
    assert_eq!(stored_tokens(&w).await, 0, "no refused response stored a token");
    // The same flow with P's own iss goes through.
    let to_p = start(&w, &mut browser, "/oauth/start/mail-oidc").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    assert_eq!(browser.get(back.location().as_str()).await.status, 200);
}

#[tokio::test]
async fn provider_refusals_bad_id_tokens_and_a_provider_down_store_nothing() {
    let w = world("1h").await;
    let mut browser = Browser::new();

    // The user denies at P: a readable page.
    let to_p = start(&w, &mut browser, "/oauth/start/mail").await;
    let back = at_provider(&w, &mut browser, &to_p, false).await;
    assert_eq!(query(&back.location())["error"], "access_denied");
    let page = browser.get(back.location().as_str()).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("Access was denied at the provider"), "{}", page.body);

    // A nonce changed on the way: P's ID token carries another nonce.
    let mut to_p = start(&w, &mut browser, "/oauth/start/mail").await;
    let pairs: Vec<(String, String)> = to_p.query_pairs().into_owned().collect();
    to_p.query_pairs_mut().clear().extend_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), if k == "nonce" { "forged-nonce" } else { v.as_str() })),
    );
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    let page = browser.get(back.location().as_str()).await;
    assert_eq!(page.status, 502);
    assert!(
        page.body.contains("ID token was refused") && page.body.to_lowercase().contains("nonce"),
        "{}",
        page.body
    );

    // An ID token signed by a key the provider's JWKS does not hold.
    let to_p = start(&w, &mut browser, "/oauth/start/mail-badkeys").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    let page = browser.get(back.location().as_str()).await;
    assert_eq!(page.status, 502);
    assert!(page.body.contains("ID token was refused"), "{}", page.body);

    // The token endpoint cannot be reached.
    let to_p = start(&w, &mut browser, "/oauth/start/mail-down").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    let page = browser.get(back.location().as_str()).await;
    assert_eq!(page.status, 502);
    assert!(page.body.contains("could not be reached"), "{}", page.body);

    assert_eq!(stored_tokens(&w).await, 0, "no refusal stored a token");
}

#[tokio::test]
async fn a_refresh_refused_with_invalid_grant_marks_the_token_and_is_not_retried() {
    let w = world("1h").await;
    let mut browser = Browser::new();
    let to_p = start(&w, &mut browser, "/oauth/start/mail?tag=alice-box").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    assert_eq!(browser.get(back.location().as_str()).await.status, 200);
    let (_, list, _) = cli(&w.a.dir, &["token", "list", "--json"], None);
    let id = serde_json::from_str::<Value>(&list).unwrap()[0]["id"].to_string();
    let held: Value = serde_json::from_str(&cli(&w.a.dir, &["token", "inspect", &id], None).1).unwrap();
    // Someone uses A's refresh token at P behind A's back: P rotates it, so
    // A's copy is a reused token and P refuses it (revoking the family).
    let res = common::client()
        .post(w.p.url("/oauth/token"))
        .basic_auth("mailapp", Some("mailapp-secret-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", held["refresh_token"].as_str().unwrap()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    w.api.reject_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = egress_get(&w, "/egress/api/v1/me").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("needs_reauthorization"), "{body}");
    let (_, list, _) = cli(&w.a.dir, &["token", "list"], None);
    assert!(list.contains("NEEDS RE-AUTHORIZATION") && list.contains("invalid_grant"), "{list}");
    w.a.wait_for_log(&["the provider refused the refresh"]);

    // Later calls fail at once without asking P again.
    for _ in 0..3 {
        let (status, body) = egress_get(&w, "/egress/api/v1/me").await;
        assert_eq!(status, 503, "{body}");
    }
    let attempts = w.a.logs().iter().filter(|l| l.contains("the provider refused the refresh")).count();
    assert_eq!(attempts, 1, "no retry loop");
    let _ = &w.p;
}

#[tokio::test]
async fn a_start_is_confirmed_by_a_posted_form_never_by_a_get() {
    let w = world("1h").await;
    let mut browser = Browser::new();
    // A GET with a valid session: the confirmation page, no redirect, no state.
    let page = confirmation(&w, &mut browser, "/oauth/start/mail?tag=alice-box").await;
    assert!(page.headers.get("location").is_none());
    for shown in ["mail", "Local Demo", "alice-box", "read_mail openid", "No token with this tag"] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with(&format!("form-action 'self' {}", w.p.url(""))), "the post ends at P: {csp}");
    assert!(w.a.logs().iter().all(|l| !l.contains("redirecting to the provider")));

    // The post without the CSRF token, or with another, is refused.
    let action = page.form_action();
    let refused = browser.post(&w.a, &action, &[("step", "start")]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let forged = browser.post(&w.a, &action, &[("step", "start"), ("csrf_token", "forged")]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(refused.headers.get("location").is_none() && forged.headers.get("location").is_none());

    // The confirmed start goes to P; once the token is stored, the page says it is replaced.
    let to_p = start(&w, &mut browser, "/oauth/start/mail?tag=alice-box").await;
    let back = at_provider(&w, &mut browser, &to_p, true).await;
    assert_eq!(browser.get(back.location().as_str()).await.status, 200);
    let again = confirmation(&w, &mut browser, "/oauth/start/mail?tag=alice-box").await;
    assert!(again.body.contains("id=\"start-replaces\""), "{}", again.body);
    assert!(again.body.contains("continuing replaces it"), "{}", again.body);
}
