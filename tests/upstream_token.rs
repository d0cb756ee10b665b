//! Gate rules with `upstream_token`, over real sockets: the binary in front
//! of an upstream that echoes the `Authorization` it got (and refuses tokens
//! it was told to refuse with 401), provider tokens stored in the sidecar's
//! SQLite file beforehand, and a provider token endpoint that counts its
//! calls. Callers are users of the local authorization server (password
//! grant). Also `check-config`'s refusals of bad `upstream_token` rules.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::Sidecar;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use oauth_sidecar::client::protocol::{Grant, Owner};
use oauth_sidecar::client::tokens::NewToken;
use oauth_sidecar::store::{SqliteStore, Store};
use serde_json::{Value, json};

const KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// What the upstream saw: one `(authorization, x-api-token, body)` per request.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, String)>>>;

/// An upstream that answers with JSON of the `Authorization` and
/// `X-Api-Token` it got and the body's text, or 401 when the bearer token
/// starts with `revoked-`.
async fn echo_upstream(seen: Seen) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        };
                        let (authorization, api_token) = (header("authorization"), header("x-api-token"));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        seen.lock().unwrap().push((authorization.clone(), api_token.clone(), body.clone()));
                        let refused =
                            authorization.as_deref().is_some_and(|a| a.starts_with("Bearer revoked-"));
                        let json =
                            json!({ "authorization": authorization, "api_token": api_token, "body": body });
                        let mut res = Response::new(Full::new(Bytes::from(json.to_string())));
                        if refused {
                            *res.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

/// The sidecar's configuration: users alice and bob (password grant on the
/// `legacy` consumer), a client `api` at the counting provider, and the rules
/// under test.
fn config(upstream: SocketAddr, provider: SocketAddr) -> String {
    format!(
        r#"upstream: http://{upstream}
server:
  roles:
    farm_viewer: {{ label: Viewer }}
  consumers:
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [password]
    - client_id: robot
      secret: robot-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [client_credentials]
  users:
    - {{ username: alice, password: alice-password, roles: [farm_viewer] }}
    - {{ username: bob, password: bob-password, roles: [farm_viewer] }}
    - {{ username: carol, password: carol-password, roles: [farm_viewer] }}
    - {{ username: root, password: root-password-1, admin: true, permissions: [administer oauth] }}
gate:
  default: deny
  rules:
    - path: /reports/**
      upstream_token: {{ client: api, tag: reports@example.org }}
    - path: /mine/**
      upstream_token: {{ client: api, tag: "{{username}}" }}
    - path: /open/**
      public: true
      upstream_token: {{ client: api, tag: reports@example.org, header: X-Api-Token, scheme: "" }}
client:
  token_key: {KEY}
  refresh_ahead: 0s
  providers:
    - name: counter
      authorize_url: http://{provider}/authorize
      token_url: http://{provider}/token
  clients:
    - {{ name: api, provider: counter, client_id: me, client_secret: my-secret-0123456789 }}
"#
    )
}

/// Stores `(tag, access token, expires_at)` for client `api` in the store
/// of `dir`, as `/oauth/return` would.
async fn seed(dir: &std::path::Path, tokens: &[(&str, &str, i64)]) {
    common::install_crypto();
    let loaded = oauth_sidecar::config::load(&dir.join("sidecar.yaml")).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("data/sidecar.db")).await.unwrap());
    let source = oauth_sidecar::client::open_tokens(&loaded, store.clone()).await.unwrap();
    for (tag, access, expires_at) in tokens {
        let grant = Grant {
            access_token: (*access).into(),
            refresh_token: Some(format!("refresh-of-{access}")),
            token_type: "Bearer".into(),
            expires_at: Some(*expires_at),
            scopes: None,
            id_token: None,
            raw: json!({}),
        };
        let new = NewToken {
            client: "api",
            tag,
            grant_type: "authorization_code",
            asked: &[],
            grant: &grant,
            owner: &Owner::default(),
        };
        source.save(new).await.unwrap();
    }
    store.close().await;
}

struct Setup {
    sidecar: Sidecar,
    seen: Seen,
    provider_calls: Arc<AtomicUsize>,
}

async fn setup(tokens: &[(&str, &str, i64)]) -> Setup {
    let seen = Seen::default();
    let provider_calls = Arc::new(AtomicUsize::new(0));
    let upstream = echo_upstream(seen.clone()).await;
    let provider = common::counting_provider(provider_calls.clone(), ("fresh", "refresh")).await;
    let dir = common::write_config(&config(upstream, provider), "listen: 127.0.0.1:0\n");
    seed(dir.path(), tokens).await;
    Setup { sidecar: Sidecar::start_in(dir), seen, provider_calls }
}

/// An access token of the local server for `user` (password grant).
async fn user_token(sidecar: &Sidecar, user: &str) -> String {
    let password = format!("{user}-password");
    let (status, body) = common::post_form(
        &sidecar.url("/oauth/token"),
        ("legacy", "legacy-secret-0123456789"),
        &[("grant_type", "password"), ("username", user), ("password", &password)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(sidecar: &Sidecar, path: &str, bearer: &str) -> (u16, Value) {
    let res = common::client().get(sidecar.url(path)).bearer_auth(bearer).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// No log line carries any of these.
#[track_caller]
fn assert_not_logged(sidecar: &Sidecar, secrets: &[&str]) {
    for line in sidecar.logs() {
        for secret in secrets {
            assert!(!line.contains(secret), "a log line carries a token: {line}");
        }
    }
}

#[tokio::test]
async fn a_fixed_tag_route_sends_the_stored_token_and_never_the_callers() {
    let s = setup(&[("reports@example.org", "service-token-1", now() + 3600)]).await;
    let alice = user_token(&s.sidecar, "alice").await;
    let (status, body) = get(&s.sidecar, "/reports/monthly", &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization"], "Bearer service-token-1", "the stored token, not alice's");

    // Without a caller's token the route is refused by the gate as before.
    let res = common::client().get(s.sidecar.url("/reports/monthly")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // A public rule: the token alone in its own header; the caller's
    // `Authorization` does not go on either.
    let res = common::client()
        .get(s.sidecar.url("/open/x"))
        .header("authorization", "Basic Y2FsbGVyOnNlY3JldA==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["api_token"], "service-token-1");
    assert_eq!(body["authorization"], Value::Null, "the caller's Authorization is not forwarded");
    assert_eq!(s.provider_calls.load(Ordering::SeqCst), 0, "a fresh token needs no refresh");
    assert_not_logged(&s.sidecar, &["service-token-1", &alice]);
}

#[tokio::test]
async fn a_username_route_gives_each_user_their_own_token_and_the_connect_link_to_others() {
    let s = setup(&[
        ("alice", "alice-provider-token", now() + 3600),
        ("bob", "bob-provider-token", now() + 3600),
    ])
    .await;
    for user in ["alice", "bob"] {
        let bearer = user_token(&s.sidecar, user).await;
        let (status, body) = get(&s.sidecar, "/mine/inbox", &bearer).await;
        assert_eq!(status, 200, "{user}: {body}");
        assert_eq!(body["authorization"], format!("Bearer {user}-provider-token"), "{user}'s own token");
    }

    // carol has connected nothing: 403 with the link to connect.
    let carol = user_token(&s.sidecar, "carol").await;
    let (status, body) = get(&s.sidecar, "/mine/inbox", &carol).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "needs_connection");
    assert_eq!(body["connect"], "/oauth/start/api?tag=carol");
    // A browser asking for a page gets one with that link.
    let res = common::client()
        .get(s.sidecar.url("/mine/inbox"))
        .bearer_auth(&carol)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = res.text().await.unwrap();
    // The link brings her back to the page she asked for.
    assert!(
        page.contains(r#"<a href="/oauth/start/api?tag=carol&amp;return_to=%2Fmine%2Finbox">"#),
        "{page}"
    );
    assert_eq!(s.seen.lock().unwrap().len(), 2, "carol's requests never reached the upstream");

    let metrics = common::client().get(s.sidecar.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"oauth_sidecar_upstream_token_total{client="api",outcome="sent"} 2"#,
        r#"oauth_sidecar_upstream_token_total{client="api",outcome="needs_connection"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert_not_logged(&s.sidecar, &["alice-provider-token", "bob-provider-token", &carol]);
}

#[tokio::test]
async fn a_clients_own_token_on_a_username_route_is_refused_as_naming_no_user() {
    let s = setup(&[("reports@example.org", "service-token-1", now() + 3600)]).await;
    let (status, body) = common::post_form(
        &s.sidecar.url("/oauth/token"),
        ("robot", "robot-secret-0123456789"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let robot = body["access_token"].as_str().unwrap();
    let (status, body) = get(&s.sidecar, "/mine/inbox", robot).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "needs_user");
    // A fixed tag needs no user.
    let (status, body) = get(&s.sidecar, "/reports/x", robot).await;
    assert_eq!((status, &body["authorization"]), (200, &json!("Bearer service-token-1")));
    assert_eq!(s.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_token_needing_reauthorization_gets_the_connect_link_too() {
    let s = setup(&[("alice", "alice-provider-token", now() + 3600)]).await;
    let dir = s.sidecar.dir.path().to_owned();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("data/sidecar.db")).await.unwrap());
    let record = store.provider_token_by_tag("api", "alice").await.unwrap().unwrap();
    store
        .set_provider_token_status(record.id, "needs_reauthorization", Some("invalid_grant"), now())
        .await
        .unwrap();
    store.close().await;
    // The sidecar reads the store again once its 5 s memory of the token ends.
    let alice = user_token(&s.sidecar, "alice").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, body) = get(&s.sidecar, "/mine/inbox", &alice).await;
        if status == 403 {
            assert_eq!(body["error"], "needs_reauthorization", "{body}");
            assert_eq!(body["connect"], "/oauth/start/api?tag=alice");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(std::time::Instant::now() < deadline, "the status change was never seen");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_upstream_401_makes_one_refresh_and_one_retry_with_the_body() {
    let s = setup(&[("reports@example.org", "revoked-1", now() + 3600)]).await;
    let alice = user_token(&s.sidecar, "alice").await;
    let res = common::client()
        .post(s.sidecar.url("/reports/upload"))
        .bearer_auth(&alice)
        .body("the report body")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["authorization"], "Bearer fresh-1", "sent again with the refreshed token");
    assert_eq!(body["body"], "the report body", "the body went again");
    assert_eq!(s.provider_calls.load(Ordering::SeqCst), 1, "one refresh");
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one retry: {seen:?}");
    assert_eq!(seen[0].0.as_deref(), Some("Bearer revoked-1"));

    // The refreshed token is kept: the next request goes once, with it.
    let (status, body) = get(&s.sidecar, "/reports/again", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(body["authorization"], "Bearer fresh-1");
    assert_eq!(s.provider_calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.seen.lock().unwrap().len(), 3);
    assert_not_logged(&s.sidecar, &["revoked-1", "fresh-1", "refresh-of-revoked-1", "refresh-1\""]);
}

#[tokio::test]
async fn a_streamed_body_is_not_kept_so_the_upstreams_401_goes_back() {
    let s = setup(&[("reports@example.org", "revoked-1", now() + 3600)]).await;
    let alice = user_token(&s.sidecar, "alice").await;
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"streamed"))]);
    let res = common::client()
        .post(s.sidecar.url("/reports/upload"))
        .bearer_auth(&alice)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401, "a streamed body is not sent twice: the upstream's 401 goes back");
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    assert_eq!(s.provider_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_on_an_expiring_token_make_one_refresh() {
    // Within the default 60 s refresh skew: every request needs a refresh.
    let s = setup(&[("reports@example.org", "expiring-1", now() + 5)]).await;
    let alice = user_token(&s.sidecar, "alice").await;
    let client = common::client();
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (client, barrier, url, alice) =
            (client.clone(), barrier.clone(), s.sidecar.url(&format!("/reports/{i}")), alice.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let res = client.get(url).bearer_auth(alice).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["authorization"], "Bearer fresh-1", "every request got the one refreshed token");
    }
    assert_eq!(s.provider_calls.load(Ordering::SeqCst), 1, "one refresh at the provider");
    assert_not_logged(&s.sidecar, &["expiring-1", "fresh-1"]);
}

#[tokio::test]
async fn the_admin_client_page_lists_the_routes_that_send_its_tokens() {
    let s = setup(&[]).await;
    let mut b = common::browser::Browser::new();
    let login = b.get(&s.sidecar.url("/admin/login")).await;
    let signed_in = b.sign_in(&s.sidecar, &login, "root", "root-password-1").await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let page = b.get(&s.sidecar.url("/admin/clients/api")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let at = page.body.find("id=\"token-routes\"").unwrap_or_else(|| panic!("no route table: {}", page.body));
    let table = &page.body[at..at + page.body[at..].find("</table>").unwrap()];
    let rows: Vec<String> = table
        .split("<tr>")
        .skip(2)
        .map(|row| common::browser::unescape(&row.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for (row, (route, tag)) in rows.iter().zip([
        ("/reports/**", "reports@example.org"),
        ("/mine/**", "{username}"),
        ("/open/**", "reports@example.org"),
    ]) {
        assert!(row.contains(&format!("<code>{route}</code>")), "{row}");
        assert!(row.contains("the upstream app (gate rule)"), "{row}");
        assert!(row.contains(&format!("<code>{tag}</code>")), "{row}");
    }
}

// --- check-config --------------------------------------------------------------

fn check_config(rules: &str, with_client: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let client = if with_client {
        format!(
            "client:\n  token_key: {KEY}\n  clients:\n    - {{ name: api, provider: demo, client_id: me }}\n"
        )
    } else {
        String::new()
    };
    let yaml =
        format!("server:\n  roles:\n    viewer: {{ label: Viewer }}\ngate:\n  rules:\n{rules}{client}");
    std::fs::write(dir.path().join("sidecar.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .current_dir(dir.path())
        .args(["check-config", "sidecar.yaml"])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_config_refuses_bad_upstream_token_rules_at_their_place() {
    let good = "    - { path: /a/**, upstream_token: { client: api, tag: \"{username}\" } }\n\
                \x20   - { path: /b/**, public: true, upstream_token: { client: api, tag: svc } }\n";
    assert_eq!(check_config(good, true), (0, String::new()));

    // Each bad rule (on line 6), the text its error points at, and the error.
    for (rule, with_client, at, expected) in [
        (
            "{ path: /a/**, upstream_token: { client: mail, tag: svc } }",
            true,
            "mail",
            "gate.rules[0].upstream_token.client: unknown client `mail` (client.clients)",
        ),
        (
            "{ path: /a/**, upstream_token: { client: api, tag: svc } }",
            false,
            "api",
            "gate.rules[0].upstream_token.client: upstream_token needs a `client:` section",
        ),
        (
            "{ path: /a/**, upstream_token: { client: api, tag: \"{email}\" } }",
            true,
            "\"{email}",
            "gate.rules[0].upstream_token.tag: `{email}` is not a field of the caller: expected {username}, {subject} or {client_id}",
        ),
        (
            "{ path: /a/**, public: true, upstream_token: { client: api, tag: \"u-{username}\" } }",
            true,
            "\"u-",
            "gate.rules[0].upstream_token.tag: a `public: true` rule has no caller to pick the token by",
        ),
        (
            "{ path: /a/**, upstream_token: { client: api, tag: svc, header: \"bad header\" } }",
            true,
            "\"bad",
            "gate.rules[0].upstream_token.header: `bad header` is not a header name",
        ),
    ] {
        let line = format!("    - {rule}\n");
        let column = line.find(at).unwrap() + 1;
        let (code, stderr) = check_config(&line, with_client);
        assert_eq!(code, 2, "{rule}: {stderr}");
        let expected = format!("sidecar.yaml:6:{column}: {expected}");
        assert!(stderr.lines().any(|l| l.starts_with(&expected)), "expected `{expected}` in:\n{stderr}");
    }
}
