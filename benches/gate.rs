//! The bearer gate's cost per request once a token is known: the route rule,
//! the token from the header, the verified-token cache, the scope check, and
//! the identity headers set; against the first use, which verifies the
//! signature.
//!
//! A keep-alive connection that repeats its token costs a byte comparison
//! (each connection's gate remembers its last token); a known token on a new
//! connection costs its SHA-256 and one cache lookup.
//!
//! `cargo bench --bench gate`. The inner service answers at once, so the
//! figures are the gate's own work plus the harness's (the `baseline` row:
//! the identity layer alone, as the sidecar runs without a gate); building
//! the test request is kept out of the measurement by `iter_batched`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use oauth_sidecar::gate::rules::{Access, RouteRule};
use oauth_sidecar::gate::{BearerGateLayer, GateSettings, IdentityHeadersLayer, IssuerSettings};
use oauth_sidecar::server::jwt::{self, ACCESS_TOKEN_TYP, AccessClaims};
use oauth_sidecar::server::keys::{Alg, KeyRing, generate_record};
use tower::{Service, ServiceBuilder};

const ISSUER: &str = "https://auth.example.org";

/// The service behind the gate: answers at once.
async fn answer(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    black_box(req);
    Ok(Response::new(Body::empty()))
}

fn request(token: &str) -> Request<Body> {
    Request::get("/api/logs/1")
        .header("host", "farm.example.org")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let ring =
        KeyRing::from_records(vec![generate_record(Alg::EdDSA, now).unwrap()], Duration::from_secs(3600))
            .unwrap();
    let claims = |jti: String| AccessClaims {
        iss: ISSUER.into(),
        sub: "reporter".into(),
        aud: vec![ISSUER.into()],
        client_id: "reporting".into(),
        scope: "authenticated farm_viewer".into(),
        iat: now,
        exp: now + 3600,
        jti,
        auth_time: None,
    };
    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims("bench".into())).unwrap();
    let jwks = ring.jwks();
    let gate = BearerGateLayer::new(
        GateSettings::default()
            .rule(RouteRule::public("/health"))
            .rule(RouteRule::new("/api/**", Access::AnyOf(vec!["farm_viewer".into(), "farm_manager".into()])))
            .issuer(IssuerSettings::new(ISSUER, ISSUER).in_process(move || jwks.clone())),
    )
    .unwrap();
    let connection = || {
        ServiceBuilder::new().layer(gate.clone()).layer(IdentityHeadersLayer::default()).service_fn(answer)
    };
    let mut service = connection();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let first = runtime.block_on(service.call(request(&token))).unwrap();
    assert_eq!(first.status(), 200, "the token verifies");

    let mut plain = ServiceBuilder::new().layer(IdentityHeadersLayer::default()).service_fn(answer);
    c.bench_function("gate/baseline: identity layer alone, no gate", |b| {
        b.iter_batched(
            || request(&token),
            |req| assert_eq!(plain.call(req).now_or_never().unwrap().unwrap().status(), 200),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("gate/known token, same connection", |b| {
        b.iter_batched(
            || request(&token),
            |req| {
                let res =
                    service.call(req).now_or_never().expect("a known token is decided at once").unwrap();
                assert_eq!(res.status(), 200);
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("gate/known token, new connection", |b| {
        b.iter_batched(
            || (connection(), request(&token)),
            |(mut service, req)| {
                let res =
                    service.call(req).now_or_never().expect("a known token is decided at once").unwrap();
                assert_eq!(res.status(), 200);
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("gate/sha256 of the token (the cache key)", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(token.as_bytes())))
    });
    let mut n = 0u64;
    c.bench_function("gate/first use: signature check (EdDSA)", |b| {
        b.iter_batched(
            || {
                n += 1;
                request(&jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(format!("new-{n}"))).unwrap())
            },
            |req| assert_eq!(runtime.block_on(service.call(req)).unwrap().status(), 200),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
