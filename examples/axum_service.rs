//! An ordinary axum service protected by the gate's three Tower layers,
//! trusting a remote issuer's JWKS; no sidecar binary, no YAML. It needs
//! only the `gate` feature (`--no-default-features --features gate`).
//!
//! ```sh
//! # The issuer can be a running oauth-sidecar with a `server:` section.
//! ISSUER=http://localhost:8080 AUDIENCE=http://localhost:8080 \
//! ALLOWED_ORIGINS="farm=http://localhost:5173" \
//!   cargo run --example axum_service
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/me
//! ```
//!
//! Environment: `ISSUER` (required), `AUDIENCE` (default: `ISSUER`),
//! `JWKS_URI` (default: discovery), `LISTEN` (default `127.0.0.1:3000`),
//! `ALLOWED_ORIGINS` (`client_id=origin` pairs, comma-separated).
//!
//! Routes: `GET /health` is public; `GET /api/me` needs any valid token and
//! answers with the caller's identity; `POST /api/notes` needs the
//! `farm_manager` scope.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use oauth_sidecar::gate::rules::{Access, RouteRule};
use oauth_sidecar::gate::{
    BearerGateLayer, ConsumerCorsLayer, CorsSettings, GateSettings, Identity, IdentityHeadersLayer,
    IdentitySettings, IssuerSettings, OriginCheck, OriginIndex,
};
use serde_json::{Value, json};
use tower::ServiceBuilder;

/// What the service trusts.
pub struct Options {
    /// The issuer's `iss`.
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// The issuer's JWKS; `None`: found by discovery.
    pub jwks_uri: Option<String>,
    /// `(client_id, allowed origins)` for browser apps.
    pub origins: Vec<(String, Vec<String>)>,
}

impl Options {
    /// Reads the options from the environment (see the file's docs).
    pub fn from_env() -> Result<Self, String> {
        let issuer =
            std::env::var("ISSUER").map_err(|_| "set ISSUER to the token issuer's URL".to_owned())?;
        let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| issuer.clone());
        let mut origins: Vec<(String, Vec<String>)> = Vec::new();
        for pair in std::env::var("ALLOWED_ORIGINS").unwrap_or_default().split(',').filter(|p| !p.is_empty())
        {
            let (client, origin) = pair.split_once('=').ok_or(format!("`{pair}` is not client_id=origin"))?;
            match origins.iter_mut().find(|(c, _)| c == client) {
                Some((_, list)) => list.push(origin.to_owned()),
                None => origins.push((client.to_owned(), vec![origin.to_owned()])),
            }
        }
        Ok(Options { issuer, audience, jwks_uri: std::env::var("JWKS_URI").ok(), origins })
    }
}

/// The caller, as the handler sees it: the gate's [`Identity`] and the
/// identity headers the layers set.
async fn me(Extension(me): Extension<Arc<Identity>>, headers: HeaderMap) -> Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Json(json!({
        "subject": me.subject,
        "client_id": me.client_id,
        "scope": me.scope,
        "x_auth_subject": header("x-auth-subject"),
    }))
}

async fn add_note(Extension(me): Extension<Arc<Identity>>, body: String) -> Json<Value> {
    Json(json!({ "saved_by": me.subject, "bytes": body.len() }))
}

/// The app with its gate.
pub fn app(options: &Options) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    let origins = OriginIndex::from_consumers(options.origins.clone());
    let mut issuer = IssuerSettings::new(options.issuer.clone(), options.audience.clone());
    if let Some(uri) = &options.jwks_uri {
        issuer = issuer.jwks_uri(uri.clone());
    }
    let gate = BearerGateLayer::new(
        GateSettings::default()
            .realm("axum-service")
            .rule(RouteRule::public("/health"))
            .rule(RouteRule::new("/api/notes", Access::AnyOf(vec!["farm_manager".into()])).methods(["POST"]))
            .rule(RouteRule::new("/api/**", Access::Authenticated))
            .issuer(issuer)
            .origins(OriginCheck { index: origins.clone(), same_origin: None }),
    )?;
    let cors = ConsumerCorsLayer::new(origins, CorsSettings::default())?;
    let identity =
        IdentityHeadersLayer::new(IdentitySettings { forward_authorization: false, ..Default::default() });
    Ok(Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/api/me", get(me))
        .route("/api/notes", post(add_note))
        .layer(ServiceBuilder::new().layer(cors).layer(gate).layer(identity)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let options = Options::from_env()?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("axum_service on http://{listen}, trusting {}", options.issuer);
    axum::serve(listener, app(&options)?).await?;
    Ok(())
}
