//! The gate following a store's change announcements, with the library and
//! Tower (no sockets needed): with `revocation_interval` at ten minutes, a
//! token whose revocation is announced is refused on its next use, on a
//! kept-alive connection too, while other cached tokens are not asked about;
//! [`StoreChange::Everything`] makes every cached token be asked again.

mod gate_common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use gate_common::{ed25519_key, now, sign};
use http::{Request, Response};
use oauth_sidecar::gate::rules::{Access, RouteRule};
use oauth_sidecar::gate::{BearerGate, BearerGateLayer, GateSettings, IssuerSettings, RevocationList};
use oauth_sidecar::store::StoreChange;
use serde_json::json;
use tower::{Layer, Service, ServiceExt};

const ISSUER: &str = "https://auth.example";

/// A revocation list the test changes without telling the gate.
#[derive(Default)]
struct List {
    revoked: Mutex<HashSet<String>>,
    asked: Mutex<Vec<String>>,
    asks: AtomicUsize,
}

#[async_trait::async_trait]
impl RevocationList for List {
    async fn is_revoked(&self, jti: &str) -> Result<bool, String> {
        self.asks.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(jti.to_owned());
        Ok(self.revoked.lock().unwrap().contains(jti))
    }
}

type Inner =
    tower::util::ServiceFn<fn(Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>>>;

fn ok(_: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    std::future::ready(Ok(Response::new(Body::empty())))
}

async fn status(service: &mut BearerGate<Inner>, token: &str) -> u16 {
    let req = Request::get("/api/x")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    service.ready().await.unwrap().call(req).await.unwrap().status().as_u16()
}

/// Polls until `token` is refused through `service`, for at most 5 s (the
/// interval alone would take ten minutes).
async fn refused_soon(service: &mut BearerGate<Inner>, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(service, token).await != 401 {
        assert!(Instant::now() < deadline, "still accepted 5 s after the announcement");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn announced_revocations_are_refused_at_once_and_everything_asks_again() {
    let key = ed25519_key("k1");
    let jwks = json!({ "keys": [key.jwk.clone()] });
    let list = Arc::new(List::default());
    let gate = BearerGateLayer::new(
        GateSettings { revocation_interval: Duration::from_secs(600), ..GateSettings::default() }
            .rule(RouteRule::new("/api/**", Access::Authenticated))
            .issuer(
                IssuerSettings::new(ISSUER, ISSUER).in_process(move || jwks.clone()).revocation(list.clone()),
            ),
    )
    .unwrap();
    let (announce, changes) = tokio::sync::broadcast::channel(16);
    let follow = gate.spawn_follow(changes.into());
    let token = |jti: &str| {
        sign(&key, &json!({"iss": ISSUER, "aud": ISSUER, "sub": "alice", "exp": now() + 600, "jti": jti}))
    };
    let (t1, t2) = (token("j1"), token("j2"));
    // One connection per token (each remembers its last token), and one
    // that alternates (every request a cache lookup).
    let mut one = gate.layer(tower::service_fn(ok as fn(_) -> _));
    let mut two = gate.layer(tower::service_fn(ok as fn(_) -> _));
    let mut both = gate.layer(tower::service_fn(ok as fn(_) -> _));
    assert_eq!((status(&mut one, &t1).await, status(&mut two, &t2).await), (200, 200));
    assert_eq!(list.asks.load(Ordering::SeqCst), 2, "each token asked about once");

    list.revoked.lock().unwrap().insert("j1".into());
    assert_eq!(status(&mut one, &t1).await, 200, "unannounced, the revocation waits for the interval");
    announce.send(StoreChange::AccessTokenRevoked("j1".into())).unwrap();
    refused_soon(&mut one, &t1).await;
    assert_eq!(status(&mut both, &t1).await, 401);
    assert_eq!(status(&mut two, &t2).await, 200);
    assert_eq!(status(&mut both, &t2).await, 200);
    assert_eq!(
        *list.asked.lock().unwrap(),
        ["j1", "j2", "j1"],
        "only the announced jti was asked about again"
    );

    // Announcements were lost (a listener connected again): every token is due.
    list.revoked.lock().unwrap().insert("j2".into());
    announce.send(StoreChange::Everything).unwrap();
    refused_soon(&mut two, &t2).await;
    assert_eq!(status(&mut both, &t2).await, 401);

    drop((gate, one, two, both));
    announce.send(StoreChange::SigningKeys).unwrap();
    tokio::time::timeout(Duration::from_secs(5), follow).await.expect("the task ends with the gate").unwrap();
}
