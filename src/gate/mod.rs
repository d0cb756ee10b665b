//! The resource gate (farmOS model): stands in front of the legacy app and
//! lets through only requests whose token carries the scopes a route needs,
//! and only browsers from origins the token's consumer allows.
//!
//! Four Tower layers, each usable alone and built from plain structs:
//!
//! | layer | role |
//! |---|---|
//! | [`ConsumerCorsLayer`] | answers preflights, refuses `null` origins, adds CORS headers for origins a consumer lists ([`cors`]) |
//! | [`BearerGateLayer`] | route rules, bearer tokens (JWT against each issuer's JWKS, or introspection), scopes, the token's consumer's origins ([`bearer`], [`settings`], [`rules`], [`token`], [`verify`], [`jwks`]) |
//! | [`IdentityHeadersLayer`] | removes client-sent `X-Auth-*` headers, sets them from the verified token ([`identity`]) |
//! | [`UpstreamTokenLayer`] | on `upstream_token` rules, the client role's provider token instead of the caller's `Authorization` ([`upstream`]) |
//!
//! [`ForwardAuth`] puts the same bearer gate behind an endpoint of its own
//! (`/oauth/check`), for an ingress that proxies by itself and asks first
//! ([`forward`]).
//!
//! The sidecar stacks them in that order in front of the reverse proxy,
//! with the local authorization server as one issuer among others (its keys
//! read in process, its revocation list from the store). A Rust service can
//! stack them in front of its own handlers:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::get};
//! use oauth_sidecar::gate::rules::{Access, RouteRule};
//! use oauth_sidecar::gate::{
//!     BearerGateLayer, ConsumerCorsLayer, CorsSettings, GateSettings, Identity, IdentityHeadersLayer,
//!     IssuerSettings, OriginCheck, OriginIndex,
//! };
//! use tower::ServiceBuilder;
//!
//! let origins = OriginIndex::from_consumers([("farm", vec!["http://localhost:3000".to_owned()])]);
//! let gate = BearerGateLayer::new(
//!     GateSettings::default()
//!         .rule(RouteRule::public("/health"))
//!         .rule(RouteRule::new("/api/**", Access::AnyOf(vec!["farm_viewer".into()])))
//!         .issuer(IssuerSettings::new("https://auth.example.org", "https://farm.example.org"))
//!         .origins(OriginCheck { index: origins.clone(), same_origin: None }),
//! )
//! .unwrap();
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/api/me", get(|Extension(me): Extension<Arc<Identity>>| async move { me.subject.clone() }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(ConsumerCorsLayer::new(origins, CorsSettings::default()).unwrap())
//!             .layer(gate)
//!             .layer(IdentityHeadersLayer::default()),
//!     );
//! # drop(app);
//! ```

pub mod bearer;
mod configure;
pub mod cors;
pub mod error;
pub mod forward;
pub mod identity;
pub mod introspect;
pub mod jwk;
pub mod jwks;
pub mod origin;
pub mod rules;
pub mod settings;
pub mod token;
pub mod upstream;
pub mod verify;

use std::sync::Arc;

use http::Method;

use crate::config::ConfigErrors;

pub use bearer::{BearerGate, BearerGateLayer};
pub use configure::{ConfiguredGate, check_config, configure, configured, default_identity};
pub use cors::{ClientCors, ClientCorsLayer, ConsumerCors, ConsumerCorsLayer, CorsError, CorsSettings};
pub use error::{GateError, RefusalBody};
pub use forward::{ForwardAuth, ForwardAuthSettings};
pub use identity::{Identity, IdentityHeaderNames, IdentityHeaders, IdentityHeadersLayer, IdentitySettings};
pub use introspect::IntrospectionSettings;
pub use jwk::JwsAlg;
pub use jwks::KeySource;
pub use origin::{Origin, OriginIndex};
pub use settings::{GateBuildError, GateSettings, IssuerSettings, OriginCheck};
pub use token::ReplayBody;
pub use upstream::{UpstreamToken, UpstreamTokenLayer, UpstreamTokens};
pub use verify::{RevocationList, StoreRevocations};

/// Why the gate's layers could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum GateConfigError {
    /// The `gate:` section does not convert (`check-config` reports why).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The bearer gate could not be built.
    #[error(transparent)]
    Gate(#[from] GateBuildError),
    /// The CORS settings are contradictory.
    #[error(transparent)]
    Cors(#[from] CorsError),
    /// `gate.forward_auth.path` is a path another part of the sidecar answers.
    #[error("gate.forward_auth.path {0} is already answered by another part of the sidecar")]
    PathTaken(String),
}

/// The layers the sidecar builds from the `gate:` section.
#[derive(Debug, Clone)]
pub struct GateLayers {
    /// CORS in front of the gate.
    pub cors: ConsumerCorsLayer,
    /// The bearer gate.
    pub bearer: BearerGateLayer,
    /// CORS for the token endpoint.
    pub token_cors: ClientCorsLayer,
    /// The consumers' origins, shared by the three; the caller refreshes it.
    pub origins: OriginIndex,
}

impl GateLayers {
    /// Builds the layers from the converted `gate:` section. `local` is the
    /// local authorization server as an issuer, when there is one; it is
    /// checked before the section's remote issuers.
    pub fn new(
        configured: ConfiguredGate,
        local: Option<IssuerSettings>,
        origins: OriginIndex,
    ) -> Result<Self, GateConfigError> {
        let ConfiguredGate { mut settings, cors: cors_settings, .. } = configured;
        settings.issuers.splice(0..0, local);
        settings.origins =
            Some(OriginCheck { index: origins.clone(), same_origin: cors_settings.same_origin.clone() });
        let bearer = BearerGateLayer::new(settings)?;
        let cors = ConsumerCorsLayer::new(origins.clone(), cors_settings.clone())?;
        let token_settings = CorsSettings {
            allow_methods: vec![Method::POST],
            allow_headers: vec![
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                http::header::ACCEPT,
            ],
            ..cors_settings
        };
        let token_cors = ClientCorsLayer::new(
            origins.clone(),
            token_settings,
            vec!["/oauth/token".into(), "/oauth/revoke".into()],
        )?;
        Ok(GateLayers { cors, bearer, token_cors, origins })
    }
}

/// The local authorization server as an issuer: keys from `jwks` in this
/// process, revocations from the store, `sub` a username.
pub fn local_issuer(
    issuer: &str,
    audience: &str,
    jwks: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    store: Arc<dyn crate::store::GateStore>,
) -> IssuerSettings {
    let mut settings =
        IssuerSettings::new(issuer, audience).in_process(jwks).revocation(Arc::new(StoreRevocations(store)));
    settings.username_from_subject = true;
    settings
}
