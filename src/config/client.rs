//! The `client:` and `egress:` sections: the OAuth client role (CiviCRM
//! model). Providers (built-in presets, overridden or added here), client
//! registrations, the key that encrypts provider tokens at rest, and the
//! loopback listener through which the app's outbound calls get a token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;
use super::types::{At, Duration, HttpUrl, RoutePath};
use super::validate::Problems;

/// The providers built into the client role, by the name a `provider:`
/// field gives (their settings are the client role's).
pub const PRESETS: [&str; 4] = ["gmail", "ms-exchange", "demo", "oidc"];

/// The OAuth client; absent means no provider connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The Redirect URL given to providers; default `{public_url}{return_path}`.
    /// Set it to an intermediate URL that forwards to `return_path`.
    pub redirect_url: Option<At<HttpUrl>>,
    /// The path this sidecar answers the provider's redirect on.
    pub return_path: At<RoutePath>,
    /// The AEAD key for provider tokens at rest: 32 bytes, base64.
    pub token_key: Option<At<Secret>>,
    /// A file holding `token_key`.
    pub token_key_file: Option<At<PathBuf>>,
    /// How long a started authorization may take before `/oauth/return`.
    pub state_ttl: At<Duration>,
    /// A token this close to expiry is refreshed before use.
    pub refresh_skew: Duration,
    /// Tokens expiring within this are refreshed in the background; `0s` turns
    /// background refresh off.
    pub refresh_ahead: Duration,
    /// How often the background refresh looks for tokens.
    pub refresh_interval: Duration,
    /// Time allowed for each call to a provider.
    pub provider_timeout: Duration,
    /// A PEM file of extra CA certificates trusted for providers and egress
    /// targets, besides the built-in web PKI roots.
    pub extra_ca_file: Option<At<PathBuf>>,
    /// Custom providers, or overrides of built-in presets with the same name.
    pub providers: Vec<ProviderConfig>,
    /// Client registrations: a provider plus the credentials it gave us.
    pub clients: Vec<ClientEntry>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            redirect_url: None,
            return_path: At::default_value(RoutePath::new("/oauth/return")),
            token_key: None,
            token_key_file: None,
            state_ttl: At::default_value(Duration::secs(600)),
            refresh_skew: Duration::secs(60),
            refresh_ahead: Duration::secs(300),
            refresh_interval: Duration::secs(30),
            provider_timeout: Duration::secs(30),
            extra_ca_file: None,
            providers: Vec::new(),
            clients: Vec::new(),
        }
    }
}

/// A provider: where to send people and where to get tokens. Every field
/// is optional so that an entry can override just a few fields of a preset.
/// URLs may contain `{tenant}` and `{issuer}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// A machine name; a preset's name overrides that preset.
    pub name: At<String>,
    /// Shown to people (`provider list`).
    pub title: Option<String>,
    /// The OpenID issuer: checked in ID tokens, and the base of discovery.
    pub issuer: Option<String>,
    /// Find the endpoints by OpenID discovery at `{issuer}/.well-known/openid-configuration`.
    pub discovery: Option<bool>,
    /// The authorization endpoint.
    pub authorize_url: Option<String>,
    /// The token endpoint.
    pub token_url: Option<String>,
    /// The RFC 7009 revocation endpoint.
    pub revoke_url: Option<String>,
    /// Where the resource owner is read (OpenID userinfo, Graph `/me`).
    pub userinfo_url: Option<String>,
    /// The keys that sign ID tokens.
    pub jwks_url: Option<String>,
    /// The scopes asked for by default.
    pub scopes: Option<Vec<String>>,
    /// Extra parameters of the authorization request (`access_type: offline`).
    pub auth_params: Option<BTreeMap<String, String>>,
    /// The default tenant, for `{tenant}` in URLs.
    pub tenant: Option<String>,
    /// What a legacy mail client needs.
    pub mail: Option<MailConfig>,
}

/// Mail settings of a provider, for IMAP/SMTP with XOAUTH2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// IMAP host.
    pub imap_host: String,
    /// IMAP port (TLS).
    pub imap_port: u16,
    /// SMTP host.
    pub smtp_host: String,
    /// SMTP port (STARTTLS).
    pub smtp_port: u16,
    /// The resource owner's field that is the mail user name (`email`, `mail`).
    pub user_field: String,
}

/// A client registration: a provider and the credentials it issued.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientEntry {
    /// A machine name, used in `/oauth/start/{name}` and egress routes.
    pub name: At<String>,
    /// The provider's name.
    pub provider: At<String>,
    /// A label shown to people.
    pub label: String,
    /// The client ID the provider issued.
    pub client_id: At<String>,
    /// The client secret it issued (none for a public client).
    pub client_secret: Option<At<Secret>>,
    /// A file holding the client secret.
    pub client_secret_file: Option<At<PathBuf>>,
    /// The tenant (`ms-exchange`), overriding the provider's default.
    pub tenant: Option<String>,
    /// Scopes instead of the provider's defaults.
    pub scopes: Option<Vec<String>>,
}

/// Outbound calls from the app, with a token injected.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// The egress listener; loopback by default, so only the app beside the sidecar reaches it.
    #[serde(deserialize_with = "super::types::socket_addr")]
    pub listen: SocketAddr,
    /// Prefix routes to outside APIs.
    pub routes: Vec<EgressRoute>,
    /// The shared secret for `GET /oauth/tokens/{client}/{tag}`; without it
    /// token vending is off.
    pub vending_secret: Option<At<Secret>>,
    /// A file holding `vending_secret`.
    pub vending_secret_file: Option<At<PathBuf>>,
    /// Time allowed for the outside API's response headers.
    pub timeout: Duration,
    /// Largest request body (buffered, so it can be replayed after a 401).
    pub max_body_size: super::types::ByteSize,
    /// Lets `listen` be an address other hosts reach (another container,
    /// the pod network); every request must then carry `remote_secret` as
    /// `Proxy-Authorization: Bearer SECRET`. Off: loopback only.
    pub allow_remote: bool,
    /// The credential callers of a remote listener send (16 characters or more).
    pub remote_secret: Option<At<Secret>>,
    /// A file holding `remote_secret`.
    pub remote_secret_file: Option<At<PathBuf>>,
    /// Host names the listener answers to besides the loopback names
    /// (`localhost`, `127.0.0.1`, `[::1]`): a request naming another host
    /// in `Host` is refused with 421, so a web page cannot reach the
    /// listener through a name it controls (DNS rebinding).
    pub hosts: Vec<String>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            routes: Vec::new(),
            vending_secret: None,
            vending_secret_file: None,
            timeout: Duration::secs(60),
            max_body_size: super::types::ByteSize(10 << 20),
            allow_remote: false,
            remote_secret: None,
            remote_secret_file: None,
            hosts: Vec::new(),
        }
    }
}

/// One egress route: requests under `prefix` go to `target` with the token
/// of `client` + `tag`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRoute {
    /// A path prefix on the egress listener, ending in `/`.
    pub prefix: At<String>,
    /// The base URL the rest of the path is appended to.
    pub target: At<HttpUrl>,
    /// The client whose token is injected.
    pub client: At<String>,
    /// The token's tag (e.g. the mailbox).
    #[serde(default)]
    pub tag: String,
}

/// A machine name: letters, digits and `_.-`.
pub(crate) fn is_machine_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Resolved secrets of the client role, read from `*_file` when given.
#[derive(Debug, Clone, Default)]
pub struct ClientSecrets {
    /// The decoded token key.
    pub token_key: Option<[u8; 32]>,
    /// Client secrets by client name.
    pub client_secrets: BTreeMap<String, Secret>,
    /// The egress vending secret.
    pub vending_secret: Option<Secret>,
    /// The credential callers of a remote egress listener send.
    pub remote_secret: Option<Secret>,
}

fn secret_or_file(
    value: &Option<At<Secret>>,
    file: &Option<At<PathBuf>>,
    path: &str,
    p: &mut Problems<'_>,
) -> Option<Secret> {
    match (value, file) {
        (Some(_), Some(f)) => {
            p.error(
                f.location,
                &format!("{path}_file"),
                format!("give either `{path}` or `{path}_file`, not both"),
            );
            None
        }
        (Some(v), None) => Some(v.value.clone()),
        (None, Some(f)) => match super::read_secret_file(&f.value) {
            Ok(s) => Some(s),
            Err(e) => {
                p.error(
                    f.location,
                    &format!("{path}_file"),
                    format!("cannot read secret file {}: {e}", f.value.display()),
                );
                None
            }
        },
        (None, None) => None,
    }
}

/// Decodes a token key: 32 bytes in base64 (standard or URL-safe, padded or not).
pub fn decode_token_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let t = text.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        if let Ok(bytes) = engine.decode(t) {
            return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                format!("the key is {} bytes; it must be 32 (e.g. `openssl rand -base64 32`)", bytes.len())
            });
        }
    }
    Err("the key is not base64: make one with `openssl rand -base64 32`".into())
}

/// Checks the `client:` and `egress:` sections and reads their secrets.
pub(super) fn validate(
    client: Option<&ClientConfig>,
    egress: Option<&EgressConfig>,
    p: &mut Problems<'_>,
) -> ClientSecrets {
    let mut out = ClientSecrets::default();
    let Some(client) = client else {
        if let Some(egress) = egress
            && !egress.routes.is_empty()
        {
            p.error(
                egress.routes[0].prefix.location,
                "egress.routes",
                "egress routes need a `client:` section",
            );
        }
        return out;
    };
    match secret_or_file(&client.token_key, &client.token_key_file, "client.token_key", p) {
        Some(key) => match decode_token_key(key.expose()) {
            Ok(k) => out.token_key = Some(k),
            Err(e) => {
                let at = client
                    .token_key
                    .as_ref()
                    .map(|k| k.location)
                    .or(client.token_key_file.as_ref().map(|f| f.location))
                    .unwrap_or(serde_saphyr::Location::UNKNOWN);
                p.error(at, "client.token_key", e);
            }
        },
        None if client.token_key.is_none() && client.token_key_file.is_none() => p.error(
            serde_saphyr::Location::UNKNOWN,
            "client.token_key",
            "the client section needs `token_key` or `token_key_file` (32 bytes, base64: `openssl rand -base64 32`); provider tokens are encrypted with it",
        ),
        None => {}
    }
    if *client.state_ttl > Duration::secs(3600) || client.state_ttl.0.is_zero() {
        p.error(client.state_ttl.location, "client.state_ttl", "between 1s and 1h");
    }
    let presets = PRESETS;
    let mut provider_names: Vec<String> = presets.iter().map(|s| (*s).to_owned()).collect();
    for (i, prov) in client.providers.iter().enumerate() {
        let path = format!("client.providers[{i}]");
        if !is_machine_name(&prov.name) {
            p.error(
                prov.name.location,
                &format!("{path}.name"),
                "a machine name is required (letters, digits, `_.-`)",
            );
            continue;
        }
        if !presets.contains(&prov.name.as_str()) {
            let discovery = prov.discovery.unwrap_or(false);
            if !discovery && (prov.authorize_url.is_none() || prov.token_url.is_none()) {
                p.error(
                    prov.name.location,
                    &path,
                    "a custom provider needs `authorize_url` and `token_url`, or `issuer` with `discovery: true`",
                );
            }
            if discovery && prov.issuer.is_none() {
                p.error(prov.name.location, &path, "`discovery: true` needs `issuer`");
            }
        }
        for (field, url) in [
            ("authorize_url", &prov.authorize_url),
            ("token_url", &prov.token_url),
            ("revoke_url", &prov.revoke_url),
            ("userinfo_url", &prov.userinfo_url),
            ("jwks_url", &prov.jwks_url),
            ("issuer", &prov.issuer),
        ] {
            if let Some(u) = url {
                let probe = u.replace("{tenant}", "common").replace("{issuer}", "http://issuer.invalid");
                if probe.parse::<HttpUrl>().is_err() {
                    p.error(
                        prov.name.location,
                        &format!("{path}.{field}"),
                        format!("`{u}` is not an http(s) URL"),
                    );
                }
            }
        }
        if provider_names.contains(&prov.name.value) && !presets.contains(&prov.name.as_str()) {
            p.error(
                prov.name.location,
                &format!("{path}.name"),
                format!("provider `{}` is given twice", prov.name.value),
            );
        }
        provider_names.push(prov.name.value.clone());
    }
    let mut names = Vec::new();
    for (i, c) in client.clients.iter().enumerate() {
        let path = format!("client.clients[{i}]");
        if !is_machine_name(&c.name) {
            p.error(
                c.name.location,
                &format!("{path}.name"),
                "a machine name is required (letters, digits, `_.-`)",
            );
        } else if names.contains(&c.name.value) {
            p.error(
                c.name.location,
                &format!("{path}.name"),
                format!("client `{}` is given twice", c.name.value),
            );
        }
        names.push(c.name.value.clone());
        if !provider_names.contains(&c.provider.value) {
            p.error(
                c.provider.location,
                &format!("{path}.provider"),
                format!(
                    "unknown provider `{}`: expected one of {}",
                    c.provider.value,
                    provider_names.join(", ")
                ),
            );
        }
        if c.client_id.is_empty() {
            p.error(
                c.name.location,
                &format!("{path}.client_id"),
                "the client ID the provider issued is required",
            );
        }
        if let Some(secret) =
            secret_or_file(&c.client_secret, &c.client_secret_file, &format!("{path}.client_secret"), p)
        {
            out.client_secrets.insert(c.name.value.clone(), secret);
        }
    }
    if let Some(egress) = egress {
        out.vending_secret =
            secret_or_file(&egress.vending_secret, &egress.vending_secret_file, "egress.vending_secret", p);
        if let Some(s) = &out.vending_secret
            && s.expose().len() < 16
        {
            p.error(serde_saphyr::Location::UNKNOWN, "egress.vending_secret", "at least 16 characters");
        }
        check_egress_reach(egress, &mut out, p);
        for (i, r) in egress.routes.iter().enumerate() {
            let path = format!("egress.routes[{i}]");
            if !r.prefix.starts_with('/') || !r.prefix.ends_with('/') {
                p.error(r.prefix.location, &format!("{path}.prefix"), "a path starting and ending with `/`");
            }
            if r.prefix.starts_with("/oauth/tokens/") {
                p.error(
                    r.prefix.location,
                    &format!("{path}.prefix"),
                    "`/oauth/tokens/` is the token vending path",
                );
            }
            if !names.contains(&r.client.value) {
                p.error(
                    r.client.location,
                    &format!("{path}.client"),
                    format!("unknown client `{}` (client.clients)", r.client.value),
                );
            }
            if r.tag.is_empty() {
                p.error(
                    r.prefix.location,
                    &format!("{path}.tag"),
                    "the tag of the token to inject is required",
                );
            }
        }
    }
    out
}

/// Who may reach the egress listener: loopback, or a remote address only
/// with `allow_remote` and the secret its callers must send.
fn check_egress_reach(egress: &EgressConfig, out: &mut ClientSecrets, p: &mut Problems<'_>) {
    let remote_secret =
        secret_or_file(&egress.remote_secret, &egress.remote_secret_file, "egress.remote_secret", p);
    let location = egress.remote_secret.as_ref().map_or(serde_saphyr::Location::UNKNOWN, |s| s.location);
    if remote_secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
        p.error(location, "egress.remote_secret", "at least 16 characters");
    }
    if egress.allow_remote && remote_secret.is_none() {
        p.error(
            location,
            "egress.remote_secret",
            "`allow_remote: true` needs `remote_secret` (or `remote_secret_file`), which every caller sends",
        );
    }
    if !egress.listen.ip().is_loopback() && !egress.allow_remote {
        p.error(
            serde_saphyr::Location::UNKNOWN,
            "egress.listen",
            format!(
                "`{}` is not a loopback address: whoever reaches it has requests sent with the stored \
                 provider tokens; keep 127.0.0.1, or set `allow_remote: true` with `remote_secret`",
                egress.listen
            ),
        );
    }
    out.remote_secret = remote_secret;
}

/// True for a redirect URL providers accept over plain http: https, or a
/// loopback host.
pub fn redirect_url_is_safe(url: &HttpUrl) -> bool {
    url.is_https() || matches!(url.0.host(), Some("localhost" | "127.0.0.1" | "[::1]" | "::1"))
}

/// The warning shown for a plain-http Redirect URL on another host.
pub fn redirect_url_warning(url: &str) -> String {
    format!(
        "the Redirect URL {url} is plain http on a host other than localhost, 127.0.0.1 or [::1]; \
         most providers refuse it. Workarounds: serve the sidecar over https (tls: or a TLS proxy, then set \
         public_url); use http://localhost:PORT or http://127.0.0.1:PORT; or set client.redirect_url to an \
         intermediate https URL that redirects to this sidecar's return path"
    )
}
