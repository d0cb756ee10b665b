//! Helpers for the gate tests: a small real HTTP issuer serving a JWKS the
//! test controls (and its discovery document, and an RFC 7662
//! introspection endpoint), test signing keys, tokens, and token requests
//! to a running sidecar.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// A `server:` section with one confidential consumer, `reporting`, acting
/// as the user `reporter` with `farm_viewer`; see [`REPORTING_SECRET`].
pub const REPORTING_SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
  consumers:
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: reporter
      scopes: [farm_viewer]
      grant_types: [client_credentials]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer]
"#;

/// The client secret of the `reporting` consumer of [`REPORTING_SERVER`].
pub const REPORTING_SECRET: &str = "reporting-secret-0123456789";

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn install_jwt_crypto() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
    );
}

/// A signing key of the test issuer, with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// PEM of the public key (RSA only), for the HS256 confusion attack.
    pub public_pem: Option<String>,
}

/// A fresh Ed25519 key.
pub fn ed25519_key(kid: &str) -> TestKey {
    install_jwt_crypto();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        public_pem: None,
    }
}

/// A fresh 2048-bit RSA key (RS256).
pub fn rsa_key(kid: &str) -> TestKey {
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::traits::PublicKeyParts;
    install_jwt_crypto();
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let public_pem = public.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            "kid": kid, "alg": "RS256", "use": "sig",
        }),
        public_pem: Some(public_pem),
    }
}

/// Signs `claims` with `key`, header `{alg, typ: at+jwt, kid}`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    sign_typ(key, claims, "at+jwt")
}

/// [`sign`] with another `typ`.
pub fn sign_typ(key: &TestKey, claims: &Value, typ: &str) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.into());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// An unsigned token, `alg: none`.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// An HS256 token whose HMAC secret is the RSA key's public PEM: the
/// classic algorithm confusion attack.
pub fn hs256_with_public_key(rsa: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa.kid.clone());
    header.typ = Some("at+jwt".into());
    let secret = EncodingKey::from_secret(rsa.public_pem.as_ref().unwrap().as_bytes());
    jsonwebtoken::encode(&header, claims, &secret).unwrap()
}

/// A small issuer over real HTTP: `/jwks` (the test's key set),
/// `/.well-known/openid-configuration`, and `/introspect`.
#[derive(Clone)]
pub struct TestIssuer {
    pub addr: SocketAddr,
    pub jwks: Arc<Mutex<Value>>,
    pub down: Arc<AtomicBool>,
    pub jwks_hits: Arc<AtomicUsize>,
    pub introspections: Arc<AtomicUsize>,
    /// Opaque tokens the introspection endpoint calls active, with their answer.
    pub active: Arc<Mutex<Vec<(String, Value)>>>,
}

impl TestIssuer {
    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    pub fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

pub async fn spawn_issuer() -> TestIssuer {
    spawn_issuer_on("127.0.0.1:0".parse().unwrap()).await
}

/// [`spawn_issuer`] on a given address (an issuer that starts late).
pub async fn spawn_issuer_on(addr: SocketAddr) -> TestIssuer {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = TestIssuer {
        addr,
        jwks: Arc::new(Mutex::new(json!({"keys": []}))),
        down: Arc::new(AtomicBool::new(false)),
        jwks_hits: Arc::new(AtomicUsize::new(0)),
        introspections: Arc::new(AtomicUsize::new(0)),
        active: Arc::new(Mutex::new(Vec::new())),
    };
    let state = issuer.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(state.clone(), req));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    issuer
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status.try_into().unwrap();
    res.headers_mut().insert("content-type", "application/json".parse().unwrap());
    res
}

async fn answer(state: TestIssuer, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if state.down.load(Ordering::SeqCst) {
        return Ok(json_response(503, &json!({"error": "down"})));
    }
    let res = match req.uri().path() {
        "/jwks" => {
            state.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let doc = state.jwks.lock().unwrap().clone();
            json_response(200, &doc)
        }
        "/.well-known/openid-configuration" => {
            json_response(200, &json!({"issuer": state.issuer(), "jwks_uri": state.jwks_uri()}))
        }
        "/introspect" => {
            state.introspections.fetch_add(1, Ordering::SeqCst);
            let authorized =
                req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| {
                    v == format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("gate:gate-secret-0123456789")
                    )
                });
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            if !authorized {
                json_response(401, &json!({"error": "invalid_client"}))
            } else {
                let token =
                    body.split('&').find_map(|kv| kv.strip_prefix("token=")).unwrap_or_default().to_owned();
                let found =
                    state.active.lock().unwrap().iter().find(|(t, _)| *t == token).map(|(_, v)| v.clone());
                json_response(200, &found.unwrap_or_else(|| json!({"active": false})))
            }
        }
        _ => json_response(404, &json!({})),
    };
    Ok(res)
}

/// A `client_credentials` token from a running sidecar.
pub async fn client_token(base: &str, client_id: &str, secret: &str) -> String {
    let res = reqwest_client()
        .post(format!("{base}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "token request for {client_id}");
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The claims part of a JWT.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn reqwest_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A free local port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
