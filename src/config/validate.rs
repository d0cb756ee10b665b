//! Checks across fields, file reads and derived values, after parsing.
//! Every problem is collected, so `check-config` can show them all at once.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Location;

use super::schema::Config;
use super::types::{At, ByteSize, HttpUrl, StoreUrl};
use super::{ConfigError, ConfigErrors, Loaded, read_secret_file};

/// hyper refuses a request-head buffer smaller than this.
const MIN_HEADER_SIZE: ByteSize = ByteSize(8 << 10);

/// The problems found in one configuration file so far: errors refuse the
/// file, warnings are shown. The roles add theirs while converting their
/// sections ([`SectionCheck`]), so one run reports every problem.
#[derive(Debug)]
pub struct Problems<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    /// No problems yet, in the file named `file`.
    pub fn new(file: &'a str) -> Self {
        Problems { file, errors: Vec::new(), warnings: Vec::new() }
    }

    /// Records an error at `at`: the file will be refused.
    pub fn error(&mut self, at: Location, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::at(self.file, at, path, message));
    }

    /// Records a warning at `at`: the file runs, but probably not as meant.
    pub fn warn(&mut self, at: Location, path: &str, message: impl Into<String>) {
        self.warnings.push(ConfigError::at(self.file, at, path, message));
    }

    /// True when an error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors, when there are any; the warnings otherwise.
    pub fn finish(self) -> Result<Vec<ConfigError>, ConfigErrors> {
        if self.errors.is_empty() { Ok(self.warnings) } else { Err(ConfigErrors(self.errors)) }
    }
}

/// A role's conversion of its section, run by [`super::load_with`] after the
/// file's own checks: it reports what it cannot convert into `Problems`.
pub type SectionCheck = fn(&Loaded, &mut Problems<'_>);

pub(super) fn validate(
    mut config: Config,
    file: &str,
    checks: &[SectionCheck],
) -> Result<Loaded, ConfigErrors> {
    let mut p = Problems::new(file);

    let store = resolve_store(&config, &mut p);
    if config.store_pool_size.value == 0 {
        p.error(config.store_pool_size.location, "store_pool_size", "the pool needs at least one connection");
    }
    let public_url = resolve_public_url(&config, &mut p);

    if let Some(tls) = &config.tls {
        check_pem(&tls.cert_file, "tls.cert_file", &mut p, |bytes| {
            let certs = CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if certs.is_empty() { Err("no PEM certificate in the file".into()) } else { Ok(()) }
        });
        check_pem(&tls.key_file, "tls.key_file", &mut p, |bytes| {
            PrivateKeyDer::from_pem_slice(bytes)
                .map(drop)
                .map_err(|e| format!("no usable PEM private key ({e})"))
        });
    }

    let level = &config.log.level;
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level.value) {
        p.error(
            level.location,
            "log.level",
            format!("`{}` is not a log filter ({e}): e.g. `info` or `oauth_sidecar=debug,warn`", level.value),
        );
    }

    if let Some(otlp) = &config.telemetry.otlp
        && otlp.protocol == super::telemetry::OtlpProtocol::Grpc
        && otlp.endpoint.value.is_https()
    {
        p.error(
            otlp.endpoint.location,
            "telemetry.otlp.endpoint",
            "gRPC is sent without TLS here: use an http:// endpoint (a local collector), or protocol http/protobuf for https",
        );
    }

    let proxy = &config.proxy;
    if *proxy.max_header_size < MIN_HEADER_SIZE {
        p.error(
            proxy.max_header_size.location,
            "proxy.max_header_size",
            format!("{} is below the smallest allowed, {MIN_HEADER_SIZE}", *proxy.max_header_size),
        );
    }
    if *proxy.max_headers == 0 {
        p.error(
            proxy.max_headers.location,
            "proxy.max_headers",
            "a request needs at least one header (Host)",
        );
    }
    let listener = &config.listener;
    if *listener.max_connections == 0 {
        p.error(listener.max_connections.location, "listener.max_connections", "at least one connection");
    }
    for (value, path) in [
        (&listener.header_timeout, "listener.header_timeout"),
        (&listener.body_timeout, "listener.body_timeout"),
        (&listener.idle_timeout, "listener.idle_timeout"),
    ] {
        if value.value.0.is_zero() {
            p.error(value.location, path, "a timeout of 0 would close every connection at once");
        }
    }
    if *proxy.connect_timeout > *proxy.timeout {
        let (at, path) = if proxy.connect_timeout.location == Location::UNKNOWN {
            (proxy.timeout.location, "proxy.timeout")
        } else {
            (proxy.connect_timeout.location, "proxy.connect_timeout")
        };
        p.error(
            at,
            path,
            format!(
                "proxy.connect_timeout ({}) is longer than proxy.timeout ({}): contradictory settings",
                *proxy.connect_timeout, *proxy.timeout
            ),
        );
    }
    let ops = &config.ops;
    let paths = [(&ops.health, "ops.health"), (&ops.ready, "ops.ready"), (&ops.metrics, "ops.metrics")];
    for (i, later) in paths.iter().enumerate() {
        if let Some(earlier) = paths[..i].iter().find(|(b, _)| b.0 == later.0.0) {
            // Point at the one written in the file when the other is a default.
            let ((at, name), (_, other)) =
                if later.0.location == Location::UNKNOWN { (earlier, later) } else { (later, earlier) };
            p.error(at.location, name, format!("`{}` is already the path of {other}", at.0));
        }
    }

    if let Some(server) = &mut config.server {
        if let Some(issuer) = &server.issuer
            && issuer.value.0.query().is_some()
        {
            p.error(issuer.location, "server.issuer", "the issuer may not have a query (RFC 8414)");
        }
        super::server::validate(server, &mut p);
        let roles: Vec<String> = server.roles.keys().cloned().collect();
        super::login::validate(&mut server.login, &roles, config.client.as_ref(), &mut p);
    }
    let admin = &mut config.admin.path;
    let trimmed = admin.value.0.trim_end_matches('/').to_owned();
    if config.admin.enabled
        && (trimmed.is_empty()
            || ["/oauth", "/.well-known"]
                .iter()
                .any(|p| trimmed == *p || trimmed.starts_with(&format!("{p}/"))))
    {
        p.error(admin.location, "admin.path", "the admin pages need their own path, such as `/admin`");
    }
    admin.value.0 = trimmed;
    if let Some(gate) = &mut config.gate {
        super::gate::validate(gate, config.server.as_ref(), &mut p);
    }

    let client = super::client::validate(config.client.as_ref(), config.egress.as_ref(), &mut p);
    if let Some(c) = &config.client {
        let url = c
            .redirect_url
            .as_ref()
            .map_or_else(|| format!("{}{}", public_url.base(), c.return_path.0), |u| u.value.to_string());
        let safe = url.parse().is_ok_and(|u| super::client::redirect_url_is_safe(&u));
        if !safe {
            let at = c.redirect_url.as_ref().map_or(Location::UNKNOWN, |u| u.location);
            p.warn(at, "client.redirect_url", super::client::redirect_url_warning(&url));
        }
    }

    let mut loaded = Loaded {
        config,
        file: file.to_owned(),
        public_url,
        store: store.unwrap_or_default(),
        warnings: Vec::new(),
        client,
    };
    for check in checks {
        check(&loaded, &mut p);
    }
    loaded.warnings = p.finish()?;
    Ok(loaded)
}

fn resolve_store(config: &Config, p: &mut Problems<'_>) -> Option<StoreUrl> {
    let store = match (&config.store, &config.store_file) {
        (Some(_), Some(file)) => {
            p.error(file.location, "store_file", "give either `store` or `store_file`, not both");
            return None;
        }
        (Some(store), None) => At::clone(store),
        (None, Some(file)) => match read_secret_file(&file.value) {
            Ok(secret) => match secret.expose().parse::<StoreUrl>() {
                Ok(url) => At { value: url, location: file.location },
                Err(e) => {
                    p.error(
                        file.location,
                        "store_file",
                        format!("the store URL in {} is not valid: {e}", file.value.display()),
                    );
                    return None;
                }
            },
            Err(e) => {
                p.error(
                    file.location,
                    "store_file",
                    format!("cannot read secret file {}: {e}", file.value.display()),
                );
                return None;
            }
        },
        (None, None) => return Some(StoreUrl::default()),
    };
    Some(store.value)
}

fn resolve_public_url(config: &Config, p: &mut Problems<'_>) -> HttpUrl {
    let tls = config.tls.is_some();
    match &config.public_url {
        Some(url) => {
            if tls && !url.value.is_https() {
                p.warn(url.location, "public_url", "the listener uses TLS but the public URL is http");
            }
            url.value.clone()
        }
        None => {
            let scheme = if tls { "https" } else { "http" };
            let port = config.listen.port();
            format!("{scheme}://localhost:{port}").parse().unwrap_or_else(|_| {
                // Unreachable for a valid socket address; keep a usable value anyway.
                HttpUrl(http::Uri::from_static("http://localhost"))
            })
        }
    }
}

fn check_pem(
    file: &At<std::path::PathBuf>,
    path: &str,
    p: &mut Problems<'_>,
    check: impl FnOnce(&[u8]) -> Result<(), String>,
) {
    match std::fs::read(&file.value) {
        Ok(bytes) => {
            if let Err(e) = check(&bytes) {
                p.error(file.location, path, format!("{}: {e}", file.value.display()));
            }
        }
        Err(e) => p.error(file.location, path, format!("cannot read {}: {e}", file.value.display())),
    }
}
