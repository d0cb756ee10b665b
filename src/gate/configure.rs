//! The `gate:` section turned into the gate's plain settings, once.
//!
//! [`configure`] is the one conversion from YAML to [`GateSettings`],
//! [`CorsSettings`] and [`IdentitySettings`]: `check-config` runs it to
//! report bad rules, algorithms and header names at their line and column
//! (and rules an earlier rule shadows, as warnings), and the sidecar runs
//! it again to build its layers, so the two can never judge a rule
//! differently.

use crate::config::gate::{GateConfig, RuleConfig, UpstreamTokenConfig};
use crate::config::server::ServerConfig;
use crate::config::types::At;
use crate::config::{ConfigErrors, Loaded, Problems, Secret};
use http::{HeaderName, Method};

use super::cors::CorsSettings;
use super::forward::ForwardAuthSettings;
use super::identity::{IdentityHeaderNames, IdentitySettings};
use super::introspect::IntrospectionSettings;
use super::jwk::JwsAlg;
use super::origin::Origin;
use super::rules::{self, Access, RouteRule};
use super::settings::{GateSettings, IssuerSettings};
use super::upstream::{TagTemplate, UpstreamToken};

/// What the `gate:` section says, as the gate's own settings. The local
/// authorization server's issuer and the consumers' origins are added when
/// the layers are built, since they come from running parts.
#[derive(Debug, Clone)]
pub struct ConfiguredGate {
    /// The bearer gate's settings, with the section's remote issuers.
    pub settings: GateSettings,
    /// CORS answers for browser apps.
    pub cors: CorsSettings,
    /// The identity headers the upstream receives.
    pub identity: IdentitySettings,
    /// The forward-auth endpoint, when `gate.forward_auth.enabled`.
    pub forward_auth: Option<ForwardAuthSettings>,
}

/// The check `check-config` runs for the gate ([`crate::config::SectionCheck`]).
pub fn check_config(loaded: &Loaded, p: &mut Problems<'_>) {
    if let Some(gate) = &loaded.config.gate {
        configure(gate, loaded, p);
    }
}

/// The identity header settings without a `gate:` section: the defaults,
/// so client-sent `X-Auth-*` headers are still removed.
pub fn default_identity() -> IdentitySettings {
    IdentitySettings::default()
}

/// [`configure`] for building the layers: the section's problems, if any,
/// as the error (a file that passed `check-config` has none).
pub fn configured(gate: &GateConfig, loaded: &Loaded) -> Result<ConfiguredGate, ConfigErrors> {
    let mut p = Problems::new(&loaded.file);
    let configured = configure(gate, loaded, &mut p);
    p.finish()?;
    configured.ok_or(ConfigErrors(Vec::new()))
}

/// Converts the `gate:` section of `loaded`; `None` when `p` got an error
/// (every problem is reported, not only the first).
pub fn configure(gate: &GateConfig, loaded: &Loaded, p: &mut Problems<'_>) -> Option<ConfiguredGate> {
    // `upstream_token` rules name registrations of the `client:` section.
    let clients = loaded
        .config
        .client
        .as_ref()
        .map(|c| c.clients.iter().map(|c| c.name.value.as_str()).collect::<Vec<_>>());
    let rules = route_rules(gate, loaded.config.server.as_ref(), clients.as_deref(), p);
    let algorithms = algorithms(&gate.algorithms, p);
    let identity = identity(gate, p);
    let cors = cors(gate, &loaded.public_url.0, p);
    let forward_auth = forward_auth(gate, loaded, p);
    if p.has_errors() {
        return None;
    }
    let public_url = loaded.public_url.base();
    let audience = gate.audience.clone().unwrap_or_else(|| public_url.clone());
    let issuers = gate
        .issuers
        .iter()
        .map(|i| {
            let mut issuer =
                IssuerSettings::new(i.issuer.value.clone(), i.audience.clone().unwrap_or(audience.clone()));
            if let Some(uri) = &i.jwks_uri {
                issuer = issuer.jwks_uri(uri.value.to_string());
            }
            if let Some(typ) = &i.typ {
                issuer = issuer.typ(typ.clone());
            }
            issuer
        })
        .collect();
    let introspection = gate.introspection.as_ref().map(|i| IntrospectionSettings {
        endpoint: i.endpoint.value.to_string(),
        client_id: i.client_id.clone(),
        client_secret: i
            .client_secret
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| Secret::new(String::new())),
        max_ttl: i.max_ttl.0,
        audience: i.audience.clone().unwrap_or_else(|| audience.clone()),
    });
    let settings = GateSettings {
        rules,
        default: gate.default,
        path_case: gate.path_case,
        issuers,
        algorithms,
        leeway: gate.leeway.0,
        realm: gate.realm.clone().unwrap_or(public_url),
        token_cache_capacity: gate.token_cache.capacity,
        token_cache_max_ttl: gate.token_cache.max_ttl.0,
        revocation_interval: gate.revocation_interval.0,
        jwks_refresh: gate.jwks_refresh.0,
        jwks_min_interval: gate.jwks_min_interval.0,
        fetch_timeout: gate.fetch_timeout.0,
        introspection,
        origins: None,
    };
    Some(ConfiguredGate { settings, cors: cors?, identity: identity?, forward_auth })
}

/// The rules in order, each checked at its place; rules an earlier rule
/// shadows are warned about.
fn route_rules(
    gate: &GateConfig,
    server: Option<&ServerConfig>,
    clients: Option<&[&str]>,
    p: &mut Problems<'_>,
) -> Vec<RouteRule> {
    let mut compiled = Vec::new();
    for (i, r) in gate.rules.iter().enumerate() {
        let upstream_token = r.upstream_token.as_ref().map(|u| upstream_token(i, r, u, clients, p));
        if let Some(mut rule) = route_rule(i, r, p) {
            match upstream_token {
                Some(Some(token)) => rule.upstream_token = Some(std::sync::Arc::new(token)),
                Some(None) => continue,
                None => {}
            }
            warn_unknown_scopes(i, r, gate, server, p);
            compiled.push((i, rule));
        }
    }
    let plain: Vec<RouteRule> = compiled.iter().map(|(_, r)| r.clone()).collect();
    for (later, earlier) in rules::shadowed(&plain) {
        let li = compiled[later].0;
        let (ei, erule) = &compiled[earlier];
        p.warn(
            gate.rules[li].path.location,
            &format!("gate.rules[{li}]"),
            format!(
                "this rule never matches: gate.rules[{ei}] ({}{}) comes first and matches every request it would",
                erule.path,
                if erule.methods.is_empty() { String::new() } else { format!(" {}", erule.methods.join(",")) },
            ),
        );
    }
    plain
}

fn route_rule(i: usize, r: &RuleConfig, p: &mut Problems<'_>) -> Option<RouteRule> {
    let at = |field: &str| format!("gate.rules[{i}].{field}");
    let mut ok = true;
    if let Err(e) = rules::PathPattern::parse(&r.path.value) {
        p.error(r.path.location, &at("path"), e);
        ok = false;
    }
    let mut methods = Vec::new();
    for m in &r.methods {
        match method(&m.value.to_ascii_uppercase()) {
            Some(_) => methods.push(m.value.to_ascii_uppercase()),
            None => {
                p.error(m.location, &at("methods"), format!("`{}` is not an HTTP method", m.value));
                ok = false;
            }
        }
    }
    let access = match (&r.scopes, r.public) {
        (Some(s), true) => {
            p.error(s.location, &at("scopes"), "a rule is either `public: true` or needs `scopes`, not both");
            None
        }
        (None, true) => Some(Access::Public),
        (None, false) => Some(Access::Authenticated),
        (Some(s), false) => match (s.value.any_of.is_empty(), s.value.all_of.is_empty()) {
            (false, true) => Some(Access::AnyOf(s.value.any_of.clone())),
            (true, false) => Some(Access::AllOf(s.value.all_of.clone())),
            _ => {
                p.error(s.location, &at("scopes"), "give one non-empty list: `any_of` or `all_of`");
                None
            }
        },
    };
    if let Some(s) = &r.scopes {
        for scope in s.value.any_of.iter().chain(&s.value.all_of) {
            if scope.is_empty() || scope.contains([' ', '"', '\\']) {
                p.error(s.location, &at("scopes"), format!("`{scope}` is not a scope name"));
                ok = false;
            }
        }
    }
    let access = access.filter(|_| ok)?;
    Some(RouteRule {
        path: r.path.value.clone(),
        methods,
        access,
        allow_query_token: r.allow_query_token,
        allow_form_token: r.allow_form_token,
        upstream_token: None,
    })
}

/// A rule's `upstream_token`, checked: a client of `client.clients`, a tag
/// naming only the caller's `username`, `subject` or `client_id` (and none
/// on a public rule, which has no caller), a header that can carry it.
fn upstream_token(
    i: usize,
    r: &RuleConfig,
    u: &At<UpstreamTokenConfig>,
    clients: Option<&[&str]>,
    p: &mut Problems<'_>,
) -> Option<UpstreamToken> {
    let at = |field: &str| format!("gate.rules[{i}].upstream_token.{field}");
    let mut ok = true;
    let client = &u.value.client;
    match clients {
        _ if client.value.is_empty() => {
            p.error(u.location, &at("client"), "name the client registration whose token is sent");
            ok = false;
        }
        None => {
            p.error(client.location, &at("client"), "upstream_token needs a `client:` section");
            ok = false;
        }
        Some(names) if !names.contains(&client.value.as_str()) => {
            p.error(
                client.location,
                &at("client"),
                format!("unknown client `{}` (client.clients)", client.value),
            );
            ok = false;
        }
        Some(_) => {}
    }
    let tag = &u.value.tag;
    let template = match TagTemplate::parse(&tag.value) {
        Ok(t) => Some(t),
        Err(e) => {
            let location = if tag.value.is_empty() { u.location } else { tag.location };
            p.error(location, &at("tag"), e);
            None
        }
    };
    if let Some(t) = &template
        && r.public
        && !t.is_fixed()
    {
        p.error(
            tag.location,
            &at("tag"),
            "a `public: true` rule has no caller to pick the token by: give a fixed tag or drop `public`",
        );
        ok = false;
    }
    let header = match &u.value.header {
        None => Some(http::header::AUTHORIZATION),
        Some(h) => header(h, &at("header"), p).filter(|name| {
            let refused = *name == http::header::HOST || name.as_str().starts_with("x-forwarded-");
            if refused {
                p.error(h.location, &at("header"), format!("`{}` cannot carry a token", h.value));
            }
            !refused
        }),
    };
    let scheme = u.value.scheme.as_ref().map_or_else(|| "Bearer".to_owned(), |s| s.value.clone());
    if let Some(s) = &u.value.scheme
        && !s.value.chars().all(|c| c.is_ascii_graphic())
    {
        p.error(s.location, &at("scheme"), "one word, such as `Bearer` or `token`, or empty");
        ok = false;
    }
    let (Some(tag), Some(header)) = (template, header) else { return None };
    ok.then(|| UpstreamToken { client: client.value.clone(), tag, header, scheme })
}

/// A scope no token of the local server can carry, when it is the only issuer.
fn warn_unknown_scopes(
    i: usize,
    r: &RuleConfig,
    gate: &GateConfig,
    server: Option<&ServerConfig>,
    p: &mut Problems<'_>,
) {
    let (Some(s), Some(server)) = (&r.scopes, server) else { return };
    if !gate.issuers.is_empty() || gate.introspection.is_some() {
        return;
    }
    for scope in s.value.any_of.iter().chain(&s.value.all_of) {
        if !server.roles.contains_key(scope) && *scope != server.base_role {
            p.warn(
                s.location,
                &format!("gate.rules[{i}].scopes"),
                format!("`{scope}` is not a role of server.roles: no token here carries it"),
            );
        }
    }
}

fn algorithms(list: &[At<String>], p: &mut Problems<'_>) -> Vec<JwsAlg> {
    let mut out = Vec::new();
    for a in list {
        match a.value.parse::<JwsAlg>() {
            Ok(alg) => out.push(alg),
            Err(_) => p.error(
                a.location,
                "gate.algorithms",
                format!(
                    "`{}` is not an accepted algorithm: expected any of {}",
                    a.value,
                    JwsAlg::ALL.map(|a| a.as_str()).join(", ")
                ),
            ),
        }
    }
    out
}

fn method(value: &str) -> Option<Method> {
    Method::from_bytes(value.as_bytes()).ok().filter(|_| !value.is_empty())
}

/// A header name written at `at`, or an error there.
fn header(value: &At<String>, path: &str, p: &mut Problems<'_>) -> Option<HeaderName> {
    match HeaderName::from_bytes(value.value.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            p.error(value.location, path, format!("`{}` is not a header name", value.value));
            None
        }
    }
}

fn identity(gate: &GateConfig, p: &mut Problems<'_>) -> Option<IdentitySettings> {
    let h = &gate.identity_headers;
    let mut name = |value: &At<String>, path: &str| {
        let name = header(value, path, p)?;
        if name == http::header::AUTHORIZATION || name == http::header::HOST {
            p.error(value.location, path, format!("`{}` cannot carry an identity", value.value));
            return None;
        }
        Some(name)
    };
    let subject = name(&h.subject, "gate.identity_headers.subject");
    let client = name(&h.client, "gate.identity_headers.client");
    let scopes = name(&h.scopes, "gate.identity_headers.scopes");
    let username = name(&h.username, "gate.identity_headers.username");
    Some(IdentitySettings {
        names: IdentityHeaderNames {
            subject: subject?,
            client: client?,
            scopes: scopes?,
            username: username?,
        },
        forward_authorization: gate.forward_authorization,
    })
}

fn cors(gate: &GateConfig, public_url: &http::Uri, p: &mut Problems<'_>) -> Option<CorsSettings> {
    let c = &gate.cors;
    let headers = |list: &[At<String>], path: &str, p: &mut Problems<'_>| {
        let names: Vec<Option<HeaderName>> = list.iter().map(|h| header(h, path, p)).collect();
        names.into_iter().collect::<Option<Vec<_>>>()
    };
    let allow_headers = headers(&c.allow_headers, "gate.cors.allow_headers", p);
    let expose_headers = headers(&c.expose_headers, "gate.cors.expose_headers", p);
    let mut allow_methods = Some(Vec::new());
    for m in &c.allow_methods {
        match (method(&m.value), allow_methods.as_mut()) {
            (Some(method), Some(list)) => list.push(method),
            (Some(_), None) => {}
            (None, _) => {
                p.error(
                    m.location,
                    "gate.cors.allow_methods",
                    format!("`{}` is not an HTTP method", m.value),
                );
                allow_methods = None;
            }
        }
    }
    Some(CorsSettings {
        allow_methods: allow_methods?,
        allow_headers: allow_headers?,
        expose_headers: expose_headers?,
        max_age: c.max_age.0,
        allow_credentials: c.allow_credentials,
        same_origin: Origin::of_url(public_url),
    })
}

/// `gate.forward_auth`, when enabled: its path must leave room for the
/// upstream's paths and for Envoy's appended ones.
fn forward_auth(gate: &GateConfig, loaded: &Loaded, p: &mut Problems<'_>) -> Option<ForwardAuthSettings> {
    let config = &gate.forward_auth;
    if !config.enabled {
        return None;
    }
    let path = &config.path.value.0;
    if path == "/" || path.ends_with('/') || path.contains(['{', '}', '*']) {
        p.error(
            config.path.location,
            "gate.forward_auth.path",
            format!("`{path}`: give a path such as `/oauth/check`, without a trailing `/` or patterns"),
        );
        return None;
    }
    Some(ForwardAuthSettings {
        path: path.clone(),
        trusted_proxies: loaded.config.proxy.trusted_proxies.clone(),
    })
}
