//! Signing keys and JWTs: generation, rotation and retention, the JWKS, and
//! every way a token must be refused. Time is controlled through `created_at`
//! and `now`; nothing sleeps.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oauth_sidecar::server::jwt::{self, ACCESS_TOKEN_TYP, AccessClaims, Expect, ID_TOKEN_TYP, JwtError};
use oauth_sidecar::server::keys::{Alg, KeyError, KeyRing, generate_record};
use oauth_sidecar::store::{SigningKeyRecord, SqliteStore, Store};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000;
const HOUR: i64 = 3600;
const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "https://farm.example";
const RETENTION: Duration = Duration::from_secs(3600);

/// RSA generation is slow: one key for the whole file.
fn rsa_record() -> SigningKeyRecord {
    static RECORD: OnceLock<SigningKeyRecord> = OnceLock::new();
    RECORD.get_or_init(|| generate_record(Alg::RS256, T0).unwrap()).clone()
}

fn ed_record(created_at: i64) -> SigningKeyRecord {
    generate_record(Alg::EdDSA, created_at).unwrap()
}

fn ring(records: Vec<SigningKeyRecord>) -> KeyRing {
    KeyRing::from_records(records, RETENTION).unwrap()
}

fn claims(iat: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: vec![AUDIENCE.into()],
        client_id: "farm".into(),
        scope: "farm_manager farm_viewer".into(),
        iat,
        exp: iat + HOUR,
        jti: format!("jti-{iat}"),
        auth_time: Some(iat - 5),
    }
}

fn expect() -> Expect {
    Expect::new(ACCESS_TOKEN_TYP, ISSUER).audience(AUDIENCE)
}

fn verify(ring: &KeyRing, token: &str, now: i64) -> Result<AccessClaims, JwtError> {
    jwt::verify_at(ring, token, &expect(), now)
}

/// Replaces the payload of a token, keeping header and signature.
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn header_json(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

fn round_trip(alg: Alg, record: SigningKeyRecord) {
    let ring = ring(vec![record.clone()]);
    let claims = claims(T0);
    let token = jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, &claims).unwrap();
    assert_eq!(header_json(&token), json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": record.kid }));
    assert_eq!(verify(&ring, &token, T0 + 10).unwrap(), claims);
}

#[test]
fn eddsa_token_round_trips_with_typ_and_kid_in_header() {
    round_trip(Alg::EdDSA, ed_record(T0));
}

#[test]
fn rs256_token_round_trips_with_typ_and_kid_in_header() {
    round_trip(Alg::RS256, rsa_record());
}

#[test]
fn id_token_typ_is_jwt() {
    let ring = ring(vec![ed_record(T0)]);
    let token = jwt::sign(&ring, Alg::EdDSA, ID_TOKEN_TYP, &claims(T0)).unwrap();
    assert_eq!(header_json(&token)["typ"], "JWT");
    let expect = Expect::new(ID_TOKEN_TYP, ISSUER).audience(AUDIENCE);
    jwt::verify_at::<AccessClaims>(&ring, &token, &expect, T0).unwrap();
}

#[test]
fn kid_is_the_rfc7638_thumbprint() {
    let ring = ring(vec![ed_record(T0), rsa_record()]);
    let set: JwkSet = serde_json::from_value(ring.jwks_at(T0)).unwrap();
    assert_eq!(set.keys.len(), 2);
    for jwk in &set.keys {
        let kid = jwk.common.key_id.as_deref().unwrap();
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), kid);
        assert_eq!(ring.key(kid).unwrap().thumbprint(), kid);
    }
}

#[test]
fn rfc8037_example_key_has_the_published_x_and_thumbprint() {
    // RFC 8037 appendix A.1 (private key d), A.2 (x), A.3 (thumbprint).
    let d = URL_SAFE_NO_PAD.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
    let mut der =
        vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&d);
    let record =
        SigningKeyRecord { kid: "rfc8037".into(), alg: "EdDSA".into(), private_der: der, created_at: T0 };
    let ring = ring(vec![record]);
    let key = ring.key("rfc8037").unwrap();
    assert_eq!(key.public_jwk()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(key.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn jwks_members_are_correct_and_public_only() {
    let ed = ed_record(T0);
    let rsa = rsa_record();
    let ring = ring(vec![ed.clone(), rsa.clone()]);
    let jwks = ring.jwks_at(T0);
    let keys = jwks["keys"].as_array().unwrap();
    let find = |kid: &str| keys.iter().find(|k| k["kid"] == kid).unwrap().as_object().unwrap().clone();

    let okp = find(&ed.kid);
    let mut names: Vec<&str> = okp.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(okp["kty"], "OKP");
    assert_eq!(okp["crv"], "Ed25519");
    assert_eq!(okp["alg"], "EdDSA");
    assert_eq!(okp["use"], "sig");
    assert_eq!(URL_SAFE_NO_PAD.decode(okp["x"].as_str().unwrap()).unwrap().len(), 32);

    let rsa_jwk = find(&rsa.kid);
    let mut names: Vec<&str> = rsa_jwk.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(rsa_jwk["kty"], "RSA");
    assert_eq!(rsa_jwk["alg"], "RS256");
    assert_eq!(rsa_jwk["use"], "sig");
    assert_eq!(rsa_jwk["e"], "AQAB");
    let n = URL_SAFE_NO_PAD.decode(rsa_jwk["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero byte");
    let private = rsa::RsaPrivateKey::from_pkcs8_der(&rsa.private_der).unwrap();
    assert_eq!(n, rsa::traits::PublicKeyParts::n(&private).to_bytes_be());
}

#[test]
fn jwks_keys_verify_tokens_through_jsonwebtoken() {
    let ring = ring(vec![ed_record(T0), rsa_record()]);
    let set: JwkSet = serde_json::from_value(ring.jwks()).unwrap();
    let now = jsonwebtoken::get_current_timestamp() as i64;
    for alg in Alg::ALL {
        let token = jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, &claims(now)).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = set.find(&kid).unwrap();
        let mut validation = Validation::new(alg.jwt_algorithm());
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let data =
            jsonwebtoken::decode::<AccessClaims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
                .unwrap();
        assert_eq!(data.claims, claims(now));
    }
}

#[test]
fn stored_ed25519_der_is_standard_pkcs8() {
    // jsonwebtoken (ed25519-dalek) reads the stored DER and signs tokens the
    // ring verifies: the record format is not tied to `ring`.
    let record = ed_record(T0);
    let ring = ring(vec![record.clone()]);
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(record.kid.clone());
    let token =
        jsonwebtoken::encode(&header, &claims(T0), &EncodingKey::from_ed_der(&record.private_der)).unwrap();
    assert_eq!(verify(&ring, &token, T0).unwrap(), claims(T0));
}

#[test]
fn rotation_keeps_old_key_published_until_retention() {
    let a = ed_record(T0);
    let before = ring(vec![a.clone()]);
    let token_a = jwt::sign(&before, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(T0 + 500)).unwrap();

    let rotated_at = T0 + 600;
    let b = ed_record(rotated_at);
    let after = ring(vec![a.clone(), b.clone()]);
    assert_eq!(after.active(Alg::EdDSA).unwrap().kid(), b.kid);
    assert_eq!(after.key(&a.kid).unwrap().retires_at(), Some(rotated_at + HOUR));
    assert_eq!(after.key(&b.kid).unwrap().retires_at(), None);

    // Within retention: both published; A's token still verifies; new tokens use B.
    let now = rotated_at + 100;
    let kids: Vec<Value> =
        after.jwks_at(now)["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids, [json!(b.kid), json!(a.kid)]);
    assert_eq!(verify(&after, &token_a, now).unwrap(), claims(T0 + 500));
    let token_b = jwt::sign(&after, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(now)).unwrap();
    assert_eq!(header_json(&token_b)["kid"], b.kid);

    // Past retention: A is gone from the JWKS and refused, B still works.
    let later = rotated_at + HOUR;
    let kids: Vec<Value> =
        after.jwks_at(later)["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids, [json!(b.kid)]);
    let leeway = Expect { leeway: 10 * HOUR as u64, ..expect() };
    assert_eq!(
        jwt::verify_at::<AccessClaims>(&after, &token_a, &leeway, later),
        Err(JwtError::RetiredKey(a.kid.clone()))
    );
    jwt::verify_at::<AccessClaims>(&after, &token_b, &expect(), later).unwrap();
}

#[test]
fn rotating_one_algorithm_leaves_the_other_active() {
    let rsa = rsa_record();
    let ring = ring(vec![ed_record(T0), rsa.clone(), ed_record(T0 + 10)]);
    assert_eq!(ring.active(Alg::RS256).unwrap().kid(), rsa.kid);
    assert!(ring.key(&rsa.kid).unwrap().is_published_at(T0 + 100 * HOUR));
    assert_eq!(ring.jwks_at(T0 + 100 * HOUR)["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn records_are_ordered_by_creation_and_duplicates_skipped() {
    let old = ed_record(T0);
    let new = ed_record(T0 + 1);
    let ring = ring(vec![new.clone(), old.clone(), new.clone()]);
    assert_eq!(ring.keys().len(), 2);
    assert_eq!(ring.active(Alg::EdDSA).unwrap().kid(), new.kid);
    assert_eq!(ring.keys()[0].kid(), old.kid);
}

#[test]
fn wrong_typ_issuer_or_audience_is_refused() {
    let ring = ring(vec![ed_record(T0)]);
    let token = jwt::sign(&ring, Alg::EdDSA, ID_TOKEN_TYP, &claims(T0)).unwrap();
    assert_eq!(
        verify(&ring, &token, T0),
        Err(JwtError::WrongType { expected: "at+jwt".into(), found: Some("JWT".into()) })
    );

    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(T0)).unwrap();
    let other_issuer = Expect::new(ACCESS_TOKEN_TYP, "https://evil.example").audience(AUDIENCE);
    assert_eq!(jwt::verify_at::<AccessClaims>(&ring, &token, &other_issuer, T0), Err(JwtError::WrongIssuer));
    let other_audience = Expect::new(ACCESS_TOKEN_TYP, ISSUER).audience("https://other.example");
    assert_eq!(
        jwt::verify_at::<AccessClaims>(&ring, &token, &other_audience, T0),
        Err(JwtError::WrongAudience)
    );
    // Without an expected audience, aud is not checked.
    jwt::verify_at::<AccessClaims>(&ring, &token, &Expect::new(ACCESS_TOKEN_TYP, ISSUER), T0).unwrap();
}

#[test]
fn typ_compares_as_a_media_type() {
    let ring = ring(vec![ed_record(T0)]);
    let token = jwt::sign(&ring, Alg::EdDSA, "application/AT+JWT", &claims(T0)).unwrap();
    verify(&ring, &token, T0).unwrap();
}

#[test]
fn audience_array_is_accepted() {
    let ring = ring(vec![ed_record(T0)]);
    let mut c = claims(T0);
    c.aud = vec!["https://a.example".into(), AUDIENCE.into()];
    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &c).unwrap();
    assert_eq!(verify(&ring, &token, T0).unwrap(), c);
    // A single audience is written as a plain string.
    assert_eq!(serde_json::to_value(claims(T0)).unwrap()["aud"], AUDIENCE);
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let ring = ring(vec![ed_record(T0)]);
    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(T0)).unwrap();
    let exp = T0 + HOUR;
    verify(&ring, &token, exp - 1).unwrap();
    assert_eq!(verify(&ring, &token, exp), Err(JwtError::Expired));
    jwt::verify_at::<AccessClaims>(&ring, &token, &expect().leeway(30), exp + 29).unwrap();

    let mut early = serde_json::to_value(claims(T0)).unwrap();
    early["nbf"] = json!(T0 + 100);
    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &early).unwrap();
    assert_eq!(verify(&ring, &token, T0 + 50), Err(JwtError::NotYetValid));
    verify(&ring, &token, T0 + 100).unwrap();

    let mut no_exp = serde_json::to_value(claims(T0)).unwrap();
    no_exp.as_object_mut().unwrap().remove("exp");
    let token = jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &no_exp).unwrap();
    assert_eq!(verify(&ring, &token, T0), Err(JwtError::MissingClaim("exp")));
}

#[test]
fn tampered_tokens_are_refused() {
    for (alg, record) in [(Alg::EdDSA, ed_record(T0)), (Alg::RS256, rsa_record())] {
        let ring = ring(vec![record]);
        let token = jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, &claims(T0)).unwrap();

        let mut more = serde_json::to_value(claims(T0)).unwrap();
        more["scope"] = json!("admin");
        assert_eq!(verify(&ring, &with_payload(&token, &more), T0), Err(JwtError::BadSignature));

        let (rest, signature) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{rest}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(verify(&ring, &flipped, T0), Err(JwtError::BadSignature));
        assert_eq!(verify(&ring, &format!("{rest}."), T0), Err(JwtError::BadSignature));
    }
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let ring_a = ring(vec![ed_record(T0)]);
    let other = ed_record(T0);
    let ring_b = ring(vec![other.clone()]);
    let token = jwt::sign(&ring_b, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(T0)).unwrap();
    assert_eq!(verify(&ring_a, &token, T0), Err(JwtError::UnknownKey(other.kid.clone())));

    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    let token =
        jsonwebtoken::encode(&header, &claims(T0), &EncodingKey::from_ed_der(&other.private_der)).unwrap();
    assert_eq!(verify(&ring_b, &token, T0), Err(JwtError::MissingKid));
}

#[test]
fn hs256_made_with_the_rsa_public_key_is_refused() {
    let record = rsa_record();
    let ring = ring(vec![record.clone()]);
    let public = rsa::RsaPrivateKey::from_pkcs8_der(&record.private_der).unwrap().to_public_key();
    let secrets: Vec<Vec<u8>> = vec![
        public.to_public_key_pem(LineEnding::LF).unwrap().into_bytes(),
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public.to_pkcs1_der().unwrap().as_bytes().to_vec(),
    ];
    for secret in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(record.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims(T0), &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(
            verify(&ring, &token, T0),
            Err(JwtError::AlgorithmMismatch {
                kid: record.kid.clone(),
                expected: Alg::RS256,
                found: "HS256".into()
            })
        );
    }
}

#[test]
fn token_with_another_keys_algorithm_is_refused() {
    // A correct RS256 signature, but the header names the Ed25519 key.
    let ed = ed_record(T0);
    let rsa = rsa_record();
    let ring = ring(vec![ed.clone(), rsa.clone()]);
    let pkcs1 = rsa::RsaPrivateKey::from_pkcs8_der(&rsa.private_der).unwrap().to_pkcs1_der().unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(ed.kid.clone());
    let token =
        jsonwebtoken::encode(&header, &claims(T0), &EncodingKey::from_rsa_der(pkcs1.as_bytes())).unwrap();
    assert!(matches!(
        verify(&ring, &token, T0),
        Err(JwtError::AlgorithmMismatch { expected: Alg::EdDSA, .. })
    ));
}

#[test]
fn alg_none_and_malformed_tokens_are_refused() {
    let record = ed_record(T0);
    let ring = ring(vec![record.clone()]);
    let header =
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "at+jwt", "kid": record.kid }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(T0)).unwrap());
    for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
        assert!(matches!(verify(&ring, &token, T0), Err(JwtError::Malformed(_))), "{token}");
    }
    for token in ["", "a.b.c", "...", "a.b.c.d"] {
        assert!(matches!(verify(&ring, token, T0), Err(JwtError::Malformed(_))), "{token}");
    }
}

#[test]
fn signing_needs_a_key_of_the_algorithm_and_object_claims() {
    let ring = ring(vec![ed_record(T0)]);
    assert_eq!(
        jwt::sign(&ring, Alg::RS256, ACCESS_TOKEN_TYP, &claims(T0)),
        Err(JwtError::NoSigningKey(Alg::RS256))
    );
    assert!(matches!(
        jwt::sign(&ring, Alg::EdDSA, ACCESS_TOKEN_TYP, &"just a string"),
        Err(JwtError::Encode(_))
    ));
}

#[test]
fn unusable_records_are_refused() {
    let ed = ed_record(T0);
    let cases = [
        SigningKeyRecord { alg: "HS256".into(), ..ed.clone() },
        SigningKeyRecord { alg: "RS256".into(), ..ed.clone() },
        SigningKeyRecord { private_der: vec![0x30, 0x03, 0x02, 0x01, 0x00], ..ed.clone() },
    ];
    for record in cases {
        let err = KeyRing::from_records(vec![record], RETENTION).unwrap_err();
        assert!(matches!(&err, KeyError::InvalidRecord { kid, .. } if *kid == ed.kid), "{err}");
    }
}

#[test]
fn alg_names_are_the_jws_names() {
    for alg in Alg::ALL {
        assert_eq!(alg.to_string().parse::<Alg>().unwrap(), alg);
    }
    assert_eq!(Alg::EdDSA.to_string(), "EdDSA");
    assert_eq!(Alg::RS256.to_string(), "RS256");
    assert!("eddsa".parse::<Alg>().is_err());
    assert!("none".parse::<Alg>().is_err());
}

#[test]
fn debug_output_has_no_private_key() {
    let record = ed_record(T0);
    let ring = ring(vec![record.clone(), rsa_record()]);
    let debug = format!("{ring:?}");
    assert!(debug.contains("[redacted]"));
    assert!(debug.contains(&record.kid));
    let seed = &record.private_der[16..48];
    assert!(!debug.contains(&format!("{seed:?}")[1..40]));
    assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(seed)));
}

#[tokio::test]
async fn load_or_create_creates_missing_keys_once_and_rotate_adds_the_next_active() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sidecar.db")).await.unwrap();
    let store: &dyn Store = &store;

    let ring =
        KeyRing::load_or_create(store, &[Alg::EdDSA, Alg::RS256, Alg::EdDSA], RETENTION).await.unwrap();
    assert_eq!(ring.keys().len(), 2);
    let first = ring.active(Alg::EdDSA).unwrap().kid().to_owned();
    let rsa = ring.active(Alg::RS256).unwrap().kid().to_owned();

    let again = KeyRing::load_or_create(store, &[Alg::EdDSA, Alg::RS256], RETENTION).await.unwrap();
    assert_eq!(again.keys().len(), 2);
    assert_eq!(again.active(Alg::EdDSA).unwrap().kid(), first);

    let token = jwt::sign(&again, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims(T0)).unwrap();
    let kid = KeyRing::rotate(store, Alg::EdDSA).await.unwrap();
    assert_ne!(kid, first);
    let rotated = KeyRing::load(store, RETENTION).await.unwrap();
    assert_eq!(rotated.keys().len(), 3);
    assert_eq!(rotated.active(Alg::EdDSA).unwrap().kid(), kid);
    assert_eq!(rotated.active(Alg::RS256).unwrap().kid(), rsa);
    let retires = rotated.key(&first).unwrap().retires_at().unwrap();
    let old = Expect { leeway: u64::MAX / 2, ..expect() };
    jwt::verify_at::<AccessClaims>(&rotated, &token, &old, retires - 1).unwrap();
    assert!(jwt::verify_at::<AccessClaims>(&rotated, &token, &old, retires).is_err());
}
