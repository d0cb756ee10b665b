//! The bearer gate's cost per request once a token is known: the route rule,
//! the token from the header, its SHA-256, the verified-token cache, the
//! scope check, and the identity headers set; against the first use, which
//! verifies the signature.
//!
//! `cargo bench --bench gate`. The inner service answers at once, so the
//! figures are the gate's own work (plus building the test request, which
//! `iter_batched` keeps out of the measurement).

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
    let mut service = ServiceBuilder::new().layer(gate).layer(IdentityHeadersLayer::default()).service_fn(
        |req: Request<Body>| async move {
            black_box(req);
            Ok::<_, Infallible>(Response::new(Body::empty()))
        },
    );
    let request = |token: &str| {
        Request::get("/api/logs/1")
            .header("host", "farm.example.org")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let first = runtime.block_on(service.call(request(&token))).unwrap();
    assert_eq!(first.status(), 200, "the token verifies");

    c.bench_function("gate/cached token, rule, identity headers", |b| {
        b.iter_batched(
            || request(&token),
            |req| {
                let res =
                    service.call(req).now_or_never().expect("a cached token is decided at once").unwrap();
                assert_eq!(res.status(), 200);
            },
            BatchSize::SmallInput,
        )
    });
    // The same request through the identity-header layer alone: what the
    // sidecar does without a gate, and the harness's own cost.
    let mut plain = ServiceBuilder::new().layer(IdentityHeadersLayer::default()).service_fn(
        |req: Request<Body>| async move {
            black_box(req);
            Ok::<_, Infallible>(Response::new(Body::empty()))
        },
    );
    c.bench_function("gate/baseline: identity headers only, no gate", |b| {
        b.iter_batched(
            || request(&token),
            |req| {
                let res = plain.call(req).now_or_never().unwrap().unwrap();
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
            |req| {
                let res = runtime.block_on(service.call(req)).unwrap();
                assert_eq!(res.status(), 200);
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
