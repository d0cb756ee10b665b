//! The YAML schema: plain serde structs, every field optional with a default.
//!
//! Field names follow `shared/design.md` so that docs, tests and users' files
//! agree. Values that can be wrong on their own check themselves while parsed
//! (see [`super::types`]); checks across fields live in [`super::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::types::{At, ByteSize, Duration, HttpUrl, RoutePath, StoreUrl, TrustedProxy, Upstream};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The one public listener.
    #[serde(deserialize_with = "super::types::socket_addr")]
    pub listen: SocketAddr,
    /// What browsers and clients see; defaults to `http(s)://localhost:{port}`.
    pub public_url: Option<At<HttpUrl>>,
    /// TLS on the listener (rustls); plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// The app behind the sidecar, or `demo`.
    pub upstream: Upstream,
    /// `sqlite://PATH` (default `sqlite://./data/sidecar.db`) or `postgres://...`.
    pub store: Option<At<StoreUrl>>,
    /// A file holding the store URL, for URLs that carry a password.
    #[serde(alias = "store_url_file")]
    pub store_file: Option<At<PathBuf>>,
    /// PostgreSQL: connections in each replica's pool at most.
    pub store_pool_size: At<u32>,
    /// Log level, format and access log.
    pub log: LogConfig,
    /// Connection limits of the public and the egress listener.
    pub listener: ListenerConfig,
    /// Reverse-proxy behaviour and limits.
    pub proxy: ProxyConfig,
    /// Paths of the operations endpoints.
    pub ops: OpsConfig,
    /// How long in-flight requests may run after SIGTERM/SIGINT before exit.
    pub shutdown_grace: Duration,
    /// The authorization server; absent: no tokens are issued.
    pub server: Option<super::server::ServerConfig>,
    /// The OAuth client role: providers, clients, the token store key.
    pub client: Option<super::client::ClientConfig>,
    /// The loopback listener for the app's outbound calls.
    pub egress: Option<super::client::EgressConfig>,
    /// The resource gate; absent: requests are proxied without token checks.
    pub gate: Option<super::gate::GateConfig>,
    /// The admin pages and API.
    pub admin: AdminConfig,
    /// Reloading the file while running (always on SIGHUP).
    pub reload: super::reload::ReloadConfig,
    /// OpenTelemetry traces; absent: none are exported.
    pub telemetry: super::telemetry::TelemetryConfig,
}

/// The admin pages and JSON API (`/admin/`), for admin users and API tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Off: the sidecar answers nothing under `path` and the app gets those requests.
    pub enabled: bool,
    /// Where the pages live (the API under `{path}/api/`); move it when the app uses `/admin`.
    pub path: At<RoutePath>,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_ttl: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            path: At::default_value(RoutePath::new("/admin")),
            idle_timeout: Duration::secs(30 * 60),
            session_ttl: Duration::secs(12 * 3600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            tls: None,
            upstream: Upstream::Demo,
            store: None,
            store_file: None,
            store_pool_size: At::default_value(10),
            log: LogConfig::default(),
            listener: ListenerConfig::default(),
            proxy: ProxyConfig::default(),
            ops: OpsConfig::default(),
            shutdown_grace: Duration::secs(30),
            server: None,
            client: None,
            egress: None,
            gate: None,
            admin: AdminConfig::default(),
            reload: super::reload::ReloadConfig::default(),
            telemetry: Default::default(),
        }
    }
}

/// Certificate and key files (PEM) for TLS on the listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: At<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: At<PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `oauth_sidecar=debug,warn`; `RUST_LOG` wins when set.
    pub level: At<String>,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// One line per proxied request (method, path, status, time).
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: At::default_value("info".to_owned()), format: LogFormat::Text, access: true }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Connection limits, the same on the public and the egress listener, for
/// HTTP/1.1 and HTTP/2.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Open connections at most; at the cap a new connection closes the
    /// longest-idle one, or is closed itself when none is idle.
    pub max_connections: At<usize>,
    /// Time a client gets to send a request head (then the connection is
    /// closed). On HTTP/1.1 the wait for the next head of a kept-alive
    /// connection counts too.
    pub header_timeout: At<Duration>,
    /// Longest pause while a request body arrives (then 408).
    pub body_timeout: At<Duration>,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: At<Duration>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: At::default_value(10_000),
            header_timeout: At::default_value(Duration::secs(30)),
            body_timeout: At::default_value(Duration::secs(30)),
            idle_timeout: At::default_value(Duration::secs(60)),
        }
    }
}

/// Reverse-proxy settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Pass the client's `Host` on (true) or rewrite it to the upstream's authority.
    pub preserve_host: bool,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are kept and extended;
    /// from anyone else they are replaced.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Time allowed to open a connection to the upstream (then 502).
    pub connect_timeout: At<Duration>,
    /// Time allowed for the upstream's response headers (then 504).
    pub timeout: At<Duration>,
    /// How long an idle upstream connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept per host.
    pub pool_max_idle: usize,
    /// Largest request head accepted (then 431).
    pub max_header_size: At<ByteSize>,
    /// Most header fields in a request head (then 431).
    pub max_headers: At<usize>,
    /// Largest request body accepted, counted while streaming (then 413).
    pub max_body_size: ByteSize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            preserve_host: true,
            trusted_proxies: Vec::new(),
            connect_timeout: At::default_value(Duration::secs(5)),
            timeout: At::default_value(Duration::secs(60)),
            pool_idle_timeout: Duration::secs(90),
            pool_max_idle: 256,
            max_header_size: At::default_value(ByteSize(64 << 10)),
            max_headers: At::default_value(100),
            max_body_size: ByteSize(100 << 20),
        }
    }
}

/// Paths of the operations endpoints, answered by the sidecar itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Liveness: the process is up.
    pub health: At<RoutePath>,
    /// Readiness: the store and the upstream are reachable.
    pub ready: At<RoutePath>,
    /// Prometheus metrics.
    pub metrics: At<RoutePath>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            health: At::default_value(RoutePath::new("/healthz")),
            ready: At::default_value(RoutePath::new("/readyz")),
            metrics: At::default_value(RoutePath::new("/metrics")),
        }
    }
}
