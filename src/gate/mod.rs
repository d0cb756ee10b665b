//! The resource gate (farmOS model): stands in front of the legacy app and
//! lets through only requests whose token carries the scopes a route needs,
//! and only browsers from origins the token's consumer allows.
//!
//! Three Tower layers, each usable alone and built from plain structs:
//!
//! | layer | role |
//! |---|---|
//! | [`ConsumerCorsLayer`] | answers preflights, refuses `null` origins, adds CORS headers for origins a consumer lists ([`cors`]) |
//! | [`BearerGateLayer`] | route rules, bearer tokens (JWT against each issuer's JWKS, or introspection), scopes, the token's consumer's origins ([`bearer`], [`settings`], [`rules`], [`token`], [`verify`], [`jwks`]) |
//! | [`IdentityHeadersLayer`] | removes client-sent `X-Auth-*` headers, sets them from the verified token ([`identity`]) |
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
pub mod cors;
pub mod error;
pub mod identity;
pub mod introspect;
pub mod jwk;
pub mod jwks;
pub mod origin;
pub mod rules;
pub mod settings;
pub mod token;
pub mod verify;

use std::sync::Arc;

use http::{HeaderName, Method};

use crate::config::gate::GateConfig;
use crate::config::types::HttpUrl;

pub use bearer::{BearerGate, BearerGateLayer};
pub use cors::{ClientCors, ClientCorsLayer, ConsumerCors, ConsumerCorsLayer, CorsError, CorsSettings};
pub use error::{GateError, RefusalBody};
pub use identity::{Identity, IdentityHeaderNames, IdentityHeaders, IdentityHeadersLayer, IdentitySettings};
pub use introspect::IntrospectionSettings;
pub use jwk::JwsAlg;
pub use jwks::KeySource;
pub use origin::{Origin, OriginIndex};
pub use settings::{GateBuildError, GateSettings, IssuerSettings, OriginCheck};
pub use token::ReplayBody;
pub use verify::{RevocationList, StoreRevocations};

/// Why the `gate:` section could not be turned into layers.
#[derive(Debug, thiserror::Error)]
pub enum GateConfigError {
    /// The bearer gate could not be built.
    #[error(transparent)]
    Gate(#[from] GateBuildError),
    /// The CORS settings are contradictory.
    #[error(transparent)]
    Cors(#[from] CorsError),
    /// A header name or method is not valid (`check-config` reports these first).
    #[error("{0}")]
    Invalid(String),
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

fn header_name(value: &str) -> Result<HeaderName, GateConfigError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| GateConfigError::Invalid(format!("`{value}` is not a header name")))
}

/// The identity header settings: from the `gate:` section, or the defaults
/// when there is none (client-sent `X-Auth-*` headers are then still
/// removed).
pub fn identity_settings(config: Option<&GateConfig>) -> Result<IdentitySettings, GateConfigError> {
    let Some(config) = config else { return Ok(IdentitySettings::default()) };
    let h = &config.identity_headers;
    Ok(IdentitySettings {
        names: IdentityHeaderNames {
            subject: header_name(&h.subject)?,
            client: header_name(&h.client)?,
            scopes: header_name(&h.scopes)?,
            username: header_name(&h.username)?,
        },
        forward_authorization: config.forward_authorization,
    })
}

impl GateLayers {
    /// Builds the layers from the `gate:` section. `local` is the local
    /// authorization server as an issuer, when there is one; the remote
    /// issuers of the section expect `gate.audience`, default the public URL.
    pub fn from_config(
        config: &GateConfig,
        public_url: &HttpUrl,
        local: Option<IssuerSettings>,
        origins: OriginIndex,
    ) -> Result<Self, GateConfigError> {
        let same_origin = Origin::of_url(&public_url.0);
        let audience = config.audience.clone().unwrap_or_else(|| public_url.base());
        let mut issuers: Vec<IssuerSettings> = local.into_iter().collect();
        for i in &config.issuers {
            let mut issuer =
                IssuerSettings::new(i.issuer.value.clone(), i.audience.clone().unwrap_or(audience.clone()));
            if let Some(uri) = &i.jwks_uri {
                issuer = issuer.jwks_uri(uri.value.to_string());
            }
            if let Some(typ) = &i.typ {
                issuer = issuer.typ(typ.clone());
            }
            issuers.push(issuer);
        }
        let rules = config
            .rules
            .iter()
            .map(|r| {
                let access = match (&r.scopes, r.public) {
                    (_, true) => rules::Access::Public,
                    (None, false) => rules::Access::Authenticated,
                    (Some(s), false) if !s.value.any_of.is_empty() => {
                        rules::Access::AnyOf(s.value.any_of.clone())
                    }
                    (Some(s), false) => rules::Access::AllOf(s.value.all_of.clone()),
                };
                rules::RouteRule {
                    path: r.path.value.clone(),
                    methods: r.methods.iter().map(|m| m.value.to_ascii_uppercase()).collect(),
                    access,
                    allow_query_token: r.allow_query_token,
                    allow_form_token: r.allow_form_token,
                }
            })
            .collect();
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| a.value.parse::<JwsAlg>().map_err(GateConfigError::Invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let introspection = config.introspection.as_ref().map(|i| IntrospectionSettings {
            endpoint: i.endpoint.value.to_string(),
            client_id: i.client_id.clone(),
            client_secret: i
                .client_secret
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_else(|| crate::config::Secret::new(String::new())),
            max_ttl: i.max_ttl.0,
        });
        let settings = GateSettings {
            rules,
            default: config.default,
            issuers,
            algorithms,
            leeway: config.leeway.0,
            realm: config.realm.clone().unwrap_or_else(|| public_url.base()),
            token_cache_capacity: config.token_cache.capacity,
            token_cache_max_ttl: config.token_cache.max_ttl.0,
            revocation_interval: config.revocation_interval.0,
            jwks_refresh: config.jwks_refresh.0,
            jwks_min_interval: config.jwks_min_interval.0,
            fetch_timeout: config.fetch_timeout.0,
            introspection,
            origins: Some(OriginCheck { index: origins.clone(), same_origin: same_origin.clone() }),
        };
        let bearer = BearerGateLayer::new(settings)?;

        let c = &config.cors;
        let methods = c
            .allow_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.value.as_bytes())
                    .map_err(|_| GateConfigError::Invalid(format!("`{}` is not a method", m.value)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = |list: &[crate::config::types::At<String>]| {
            list.iter().map(|h| header_name(&h.value)).collect::<Result<Vec<_>, _>>()
        };
        let cors_settings = CorsSettings {
            allow_methods: methods,
            allow_headers: names(&c.allow_headers)?,
            expose_headers: names(&c.expose_headers)?,
            max_age: c.max_age.0,
            allow_credentials: c.allow_credentials,
            same_origin,
        };
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
