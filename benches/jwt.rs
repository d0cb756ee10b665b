//! Signing and verifying RFC 9068 access tokens, EdDSA and RS256.
//!
//! `cargo bench --bench jwt`. The `baseline` group signs the same claims with
//! `jsonwebtoken::encode` (RustCrypto, key parsed on every call), which is what
//! the key ring avoids by signing with `ring` key pairs parsed once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{EncodingKey, Header};
use oauth_sidecar::server::jwt::{self, ACCESS_TOKEN_TYP, AccessClaims, Expect};
use oauth_sidecar::server::keys::{Alg, KeyRing, generate_record};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://auth.example.org";
const AUDIENCE: &str = "https://farm.example.org";

fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "8d5e2a0c-54b1-4e8f-9a8e-2f1b3c4d5e6f".into(),
        aud: vec![AUDIENCE.into()],
        client_id: "farm".into(),
        scope: "farm_manager farm_viewer".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "0b6f4c8e-2d1a-4f3b-8c7d-6e5f4a3b2c1d".into(),
        auth_time: Some(NOW - 30),
    }
}

fn bench(c: &mut Criterion) {
    let ed = generate_record(Alg::EdDSA, NOW).unwrap();
    let rsa = generate_record(Alg::RS256, NOW).unwrap();
    let ring = KeyRing::from_records(vec![ed.clone(), rsa.clone()], Duration::from_secs(3600)).unwrap();
    let claims = claims();
    let expect = Expect::new(ACCESS_TOKEN_TYP, ISSUER).audience(AUDIENCE);

    let mut group = c.benchmark_group("jwt");
    for alg in Alg::ALL {
        group.bench_function(format!("sign/{alg}"), |b| {
            b.iter(|| jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, black_box(&claims)).unwrap())
        });
        let token = jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, &claims).unwrap();
        group.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| jwt::verify_at::<AccessClaims>(&ring, black_box(&token), &expect, NOW + 60).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("baseline");
    let rsa_pkcs1 = rsa::RsaPrivateKey::from_pkcs8_der(&rsa.private_der).unwrap().to_pkcs1_der().unwrap();
    let keys = [
        (Alg::EdDSA, EncodingKey::from_ed_der(&ed.private_der), ed.kid.clone()),
        (Alg::RS256, EncodingKey::from_rsa_der(rsa_pkcs1.as_bytes()), rsa.kid.clone()),
    ];
    for (alg, key, kid) in keys {
        let mut header = Header::new(alg.jwt_algorithm());
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(kid);
        group.bench_function(format!("jsonwebtoken_encode/{alg}"), |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
