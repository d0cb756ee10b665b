//! CORS per consumer over real sockets: preflights answered by the gate,
//! origins from the consumers' `allowed_origins` (normalised), the token's
//! consumer deciding for actual requests, `null` origins refused, and the
//! token endpoint's CORS by the request's `client_id`.

mod common;
mod gate_common;

use std::time::{Duration, Instant};

use common::Sidecar;
use gate_common::{client_token, free_port, reqwest_client};
use oauth_sidecar::store::{ServerStore, SqliteStore, StoreBase};
use reqwest::Response;
use serde_json::Value;

const APP: &str = "http://app.example.test:3000";
const OTHER: &str = "https://other.example.test";

async fn start() -> (Sidecar, String) {
    let upstream = common::spawn_upstream().await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let sidecar = Sidecar::start_with(
        &format!(
            r#"upstream: http://{upstream}
server:
  roles:
    farm_viewer: {{ label: Viewer, description: Read farm records }}
  consumers:
    - client_id: browser
      secret: browser-secret-0123456789
      user_id: reporter
      allowed_origins: ["HTTP://App.Example.test:3000/"]
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: other
      secret: other-secret-0123456789
      user_id: reporter
      allowed_origins: ["{OTHER}:443"]
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: spa
      confidential: false
      allowed_origins: ["{APP}"]
      scopes: [farm_viewer]
      grant_types: [password]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer]
gate:
  cors: {{ refresh: 1s, max_age: 1h }}
  rules:
    - {{ path: /public/**, public: true }}
    - {{ path: /api/** }}
"#
        ),
        &format!("listen: 127.0.0.1:{port}\npublic_url: {public}\n"),
    );
    (sidecar, public)
}

fn reached_upstream(res: &Response) -> bool {
    res.headers().contains_key("x-upstream-kept")
}

fn acao(res: &Response) -> Option<&str> {
    res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap())
}

fn vary(res: &Response) -> String {
    res.headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn preflight(sidecar: &Sidecar, path: &str, origin: &str) -> Response {
    reqwest_client()
        .request(reqwest::Method::OPTIONS, sidecar.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_by_the_gate() {
    let (sidecar, _) = start().await;
    let res = preflight(&sidecar, "/api/records", APP).await;
    assert_eq!(res.status(), 204);
    assert!(!reached_upstream(&res), "a preflight never reaches the upstream");
    assert_eq!(acao(&res), Some(APP), "the exact origin, never *");
    assert_eq!(res.headers()["access-control-allow-methods"], "GET, HEAD, POST, PUT, PATCH, DELETE");
    let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert_eq!(res.headers()["access-control-max-age"], "3600");
    assert!(vary(&res).contains("Origin"));
    assert!(res.headers().get("access-control-allow-credentials").is_none());

    // An origin is compared normalised (scheme, host, default port).
    let res = preflight(&sidecar, "/api/records", "https://other.example.test").await;
    assert_eq!(res.status(), 204);

    let res = preflight(&sidecar, "/api/records", "http://evil.example.test").await;
    assert_eq!(res.status(), 403, "no consumer lists this origin");
    assert_eq!(acao(&res), None);
    assert!(!reached_upstream(&res));

    for bad in ["null", "http://app.example.test:3000/path", "app.example.test"] {
        let res = preflight(&sidecar, "/api/records", bad).await;
        assert_eq!(res.status(), 403, "{bad}");
        assert_eq!(acao(&res), None, "{bad}");
        assert!(!reached_upstream(&res), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_requests_follow_the_tokens_consumer() {
    let (sidecar, public) = start().await;
    let browser = client_token(&sidecar.url(""), "browser", "browser-secret-0123456789").await;
    let get = |origin: Option<&str>, token: &str| {
        let mut req = reqwest_client().get(sidecar.url("/api/records")).bearer_auth(token);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };

    // From the token's consumer's origin: passed, with CORS headers.
    let res = get(Some(APP), &browser).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(reached_upstream(&res));
    assert_eq!(acao(&res), Some(APP));
    assert_eq!(res.headers()["access-control-expose-headers"], "www-authenticate");
    assert!(vary(&res).contains("Origin"));

    // From another consumer's origin: refused before the upstream, no CORS.
    let res = get(Some(OTHER), &browser).await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(!reached_upstream(&res));
    assert_eq!(acao(&res), None);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");
    sidecar.wait_for_log(&["refused by the gate", "origin not allowed", "\"client_id\":\"browser\""]);

    // No Origin (not a browser, or same-origin GET): no CORS involved.
    let res = get(None, &browser).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), None);

    // The public URL's own origin is same-origin: passes whatever the consumer.
    let other = client_token(&sidecar.url(""), "other", "other-secret-0123456789").await;
    let res = get(Some(&public), &other).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), None);

    // `null` and malformed origins are refused.
    for bad in ["null", "http://x.test/path"] {
        let res = get(Some(bad), &browser).await.unwrap();
        assert_eq!(res.status(), 403, "{bad}");
        assert!(!reached_upstream(&res));
        assert_eq!(acao(&res), None);
    }

    // Refusals the page must read (401) carry CORS headers for a listed origin.
    let res = reqwest_client().get(sidecar.url("/api/records")).header("origin", APP).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(acao(&res), Some(APP));

    // A public route: any consumer's origin gets CORS headers, others none.
    let res = reqwest_client().get(sidecar.url("/public/x")).header("origin", OTHER).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), Some(OTHER));
    let res = reqwest_client()
        .get(sidecar.url("/public/x"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_answers_cors_by_client_id() {
    let (sidecar, _) = start().await;
    let token_url = sidecar.url("/oauth/token");

    let res = preflight(&sidecar, "/oauth/token", APP).await;
    assert_eq!(res.status(), 204);
    assert_eq!(acao(&res), Some(APP));
    assert_eq!(res.headers()["access-control-allow-methods"], "POST");
    let res = preflight(&sidecar, "/oauth/token", "http://evil.test").await;
    assert_eq!(res.status(), 403);
    assert_eq!(acao(&res), None);

    // Basic client authentication, from the client's own origin.
    let post = |origin: &str, id: &str, secret: &str| {
        reqwest_client()
            .post(&token_url)
            .basic_auth(id, Some(secret))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    let res = post(APP, "browser", "browser-secret-0123456789").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), Some(APP));
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string());

    // The same client from an origin it does not list: refused, no token.
    let res = post(OTHER, "browser", "browser-secret-0123456789").await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(acao(&res), None);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    assert!(body.get("access_token").is_none());

    // A public client names itself in the form body.
    let res = reqwest_client()
        .post(&token_url)
        .header("origin", APP)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&client_id=spa&username=reporter&password=reporter-password")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(&res), Some(APP));
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string());

    // Token endpoint errors from an allowed origin are readable by the page.
    let res = post(APP, "browser", "wrong-secret-0123456789").await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(acao(&res), Some(APP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_of_consumers_changed_in_the_store_apply_within_the_refresh() {
    let (sidecar, _) = start().await;
    let new_origin = "https://new.example.test";
    assert_eq!(preflight(&sidecar, "/api/x", new_origin).await.status(), 403);

    // As `oauth-sidecar consumer update` does from another process.
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    let mut consumer = store.consumer("other").await.unwrap().unwrap();
    consumer.allowed_origins.push(new_origin.into());
    store.put_consumer(&consumer).await.unwrap();
    store.close().await;

    let changed = Instant::now();
    loop {
        let res = preflight(&sidecar, "/api/x", new_origin).await;
        if res.status() == 204 {
            assert_eq!(acao(&res), Some(new_origin));
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(3), "not seen within the 1s refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
