//! [`Sidecar`]: the binary's whole stack, built from a loaded configuration
//! and run until a shutdown signal.
//!
//! ```text
//! listener (TCP or TLS) -> observe (request id, span, metrics, access log)
//!   -> router: ops paths -> operations
//!              /oauth/*, /.well-known/* -> authorization server (with `server:`;
//!                                          the token endpoint with per-client CORS)
//!              /admin/* -> admin pages and API (unless `admin.enabled: false`)
//!              everything else -> CORS (per consumer) -> bearer gate (with `gate:`)
//!                              -> identity headers -> provider token (`upstream_token`
//!                                 rules, the client role's tokens) -> reverse proxy -> upstream app
//! ```
//!
//! The gate trusts the local authorization server like any issuer with a
//! JWKS: its keys are read in process (no HTTP) and read again when a token
//! names an unknown key; its revocation list is the store's.
//!
//! When the store announces changes ([`Store::changes`]: several replicas
//! on PostgreSQL), the gate's token cache, its in-process keys and the
//! consumers' origins follow them; the authorization server's records and
//! key ring subscribe themselves.
//!
//! SIGHUP (and, with `reload.watch`, a change of the file) reloads the
//! configuration ([`reload`]): the gate's front is built again with
//! [`build_front`] and swapped whole.

mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::config::{ConfigErrors, Loaded, SectionCheck, Upstream};
use crate::dispatch::{Dispatch, Front, LiveFront};
use crate::gate::{self, GateConfigError, GateLayers, IdentityHeadersLayer, OriginIndex};
use crate::listener::{self, Listener};
use crate::mount::{Mount, Task};
use crate::ops::{self, Metrics, ObserveLayer, Readiness};
use crate::proxy::{ProxySettings, ReverseProxy};
use crate::server::AuthorizationServer;
use crate::store::{self, Store, StoreError};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener could not be bound or its TLS set up.
    #[error("{0}")]
    Listener(String),
    /// The authorization server could not start.
    #[error("cannot start the authorization server: {0}")]
    Server(#[from] crate::server::ServerStartError),
    /// The OAuth client role could not start.
    #[error("cannot start the OAuth client: {0}")]
    Client(#[from] crate::client::ClientStartError),
    /// The built-in demo upstream could not start.
    #[error("cannot start the demo upstream: {0}")]
    Demo(std::io::Error),
    /// The resource gate could not be built.
    #[error("cannot build the resource gate: {0}")]
    Gate(#[from] GateConfigError),
    /// The admin pages could not be set up.
    #[error("cannot start the admin pages: {0}")]
    Admin(#[from] crate::admin::AdminStartError),
}

/// A built sidecar: store open, listener bound, ready to [`Sidecar::run`].
pub struct Sidecar {
    loaded: Loaded,
    listener: Listener,
    dispatch: Dispatch,
    metrics: Metrics,
    store: Arc<dyn Store>,
    upstream: String,
    /// Every role's background tasks (the demo upstream, token refresh,
    /// egress listener), stopped at shutdown.
    tasks: Vec<Task>,
    /// Reloads the configuration on SIGHUP; holds the gate's own tasks
    /// (origin refresh, key prefetch, change following).
    reloader: reload::Reloader,
}

impl Sidecar {
    /// Opens the store (applying migrations), starts the demo upstream when
    /// configured, binds the listener and builds the router. When any step
    /// fails, the tasks started so far are aborted and the store is closed.
    pub async fn build(loaded: Loaded) -> Result<Self, StartError> {
        let store = store::open_for(&loaded).await?;
        // The one place a failed start closes the store (closing SQLite
        // checkpoints its log, which a drop would not).
        match Self::assemble(loaded, store.clone()).await {
            Ok(sidecar) => Ok(sidecar),
            Err(e) => {
                store.close().await;
                Err(e)
            }
        }
    }

    /// Everything [`Sidecar::build`] does once the store is open: each
    /// role's [`Mount`], merged for [`Dispatch`].
    async fn assemble(loaded: Loaded, store: Arc<dyn Store>) -> Result<Self, StartError> {
        // First, so that a SIGHUP during start-up does not end the process.
        let triggers = reload::Triggers::install(&loaded);
        let config = &loaded.config;
        let mut mount = Mount::new();
        let upstream = match &config.upstream {
            Upstream::Url(uri) => uri.clone(),
            Upstream::Demo => {
                let (addr, task) = crate::demo::spawn().await.map_err(StartError::Demo)?;
                mount = mount.task(Task::aborted(task));
                format!("http://{addr}")
                    .parse()
                    .map_err(|_| StartError::Demo(std::io::Error::other("the demo address is not a URI")))?
            }
        };
        let authority = upstream.authority().map(|a| a.to_string()).unwrap_or_default();
        let upstream_addr = if upstream.port().is_some() { authority } else { format!("{authority}:80") };

        let listener =
            Listener::bind(config.listen, config.tls.as_ref()).await.map_err(StartError::Listener)?;

        let metrics = Metrics::register();
        let proxy =
            ReverseProxy::with_metrics(ProxySettings::from_config(&config.proxy, upstream), metrics.clone());
        let readiness = Readiness {
            store: store.clone(),
            upstream: upstream_addr.clone(),
            timeout: config.proxy.connect_timeout.0.min(Duration::from_secs(5)),
            metrics: metrics.clone(),
        };
        mount = mount.merge(ops::mount(&config.ops, readiness));
        let server = match &config.server {
            Some(server) => Some(
                AuthorizationServer::start(
                    store.clone(),
                    server,
                    &loaded.public_url,
                    &config.proxy.trusted_proxies,
                )
                .await?,
            ),
            None => None,
        };
        let client = crate::client::ClientRole::start(&loaded, store.clone()).await?;
        let tokens = client.as_ref().map(|role| role.client().tokens());
        let egress_routes = client.as_ref().and_then(|role| role.egress_routes());
        // `upstream_token` rules send the client role's tokens to the upstream.
        let provider_tokens = tokens.clone().map(|t| t as Arc<dyn crate::proxy::ProviderTokens>);
        let origins = OriginIndex::default();
        let (front, token_cors, gate_tasks, forward_auth) =
            build_front(&loaded, store.clone(), server.as_ref(), &origins, provider_tokens.clone()).await?;
        let live: LiveFront = Arc::new(arc_swap::ArcSwap::from_pointee(front));
        // The forward-auth endpoint decides with the live front's gate, so a
        // reload changes its decisions as it changes the proxy path's.
        let gate = match forward_auth {
            Some(settings) => {
                let live = live.clone();
                gate::ForwardAuth::following(settings, move || {
                    let front = live.load();
                    front.gate.as_ref().map(|(_, bearer)| (bearer.clone(), front.identity.clone()))
                })
                .mount()
            }
            None => Mount::new(),
        };
        let token_cors = reload::LiveTokenCors::new(token_cors);
        if let Some(server) = &server {
            mount = mount.merge(server.mount().layer(token_cors.clone()));
        }
        if let Some(role) = client {
            mount = mount.merge(role.mount());
        }
        let admin = crate::admin::AdminSite::start(&loaded, store.clone(), tokens).await?;
        if let Some(admin) = &admin {
            mount = mount.merge(admin.mount());
        }
        // Last, so that a forward-auth path another role's route takes is
        // named instead of clashing in the router.
        if let Some(path) = gate.routes().first()
            && mount.routes().iter().any(|route| route_clash(route, path))
        {
            return Err(StartError::Gate(GateConfigError::PathTaken(path.clone())));
        }
        mount = mount.merge(gate);
        let tasks = mount.take_tasks();
        let dispatch = Dispatch::new(mount, proxy, live.clone());
        let reloader = reload::Reloader {
            running: loaded.clone(),
            store: store.clone(),
            server,
            origins,
            live,
            gate_tasks,
            egress_routes,
            token_cors,
            admin,
            provider_tokens,
            triggers,
        };
        Ok(Sidecar { loaded, listener, dispatch, metrics, store, upstream: upstream_addr, tasks, reloader })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, drains in-flight requests for at
    /// most `shutdown_grace`, then closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Sidecar { loaded, listener, dispatch, metrics, store, upstream, tasks, reloader } = self;
        let config = &loaded.config;
        let addr = listener.local_addr();
        let scheme = if listener.is_tls() { "https" } else { "http" };
        tracing::info!(
            addr = %addr,
            url = %format!("{scheme}://{addr}"),
            public_url = %loaded.public_url,
            upstream = %config.upstream,
            upstream_addr = %upstream,
            store = %loaded.store,
            "listening"
        );
        let upkeep = ops::spawn_upkeep();
        let reloading = Task::aborted(tokio::spawn(reloader.run()));
        let observe = ObserveLayer::new(metrics, config.log.access);
        listener::serve(
            listener,
            |conn| observe.layer(dispatch.for_connection(conn)),
            listener::Limits::from_config(config),
            shutdown,
            config.shutdown_grace.0,
        )
        .await;
        drop(reloading);
        Task::stop_all(tasks, config.shutdown_grace.0).await;
        store.close().await;
        if let Some(task) = upkeep {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// True when `route` would take requests for the forward-auth endpoint at
/// `path` or below it (where Envoy appends the original path), or `path`
/// lies under a route's parameter.
fn route_clash(route: &str, path: &str) -> bool {
    route == path
        || route.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'))
        || route.find('{').is_some_and(|at| path.starts_with(&route[..at]))
}

/// The layers in front of the proxy, the token endpoint's CORS layer, and
/// the background tasks the gate needs: at start, and again from the new
/// file on every reload. `origins` is the consumers' origins index, one for
/// the process, so the token endpoint's CORS layer (built once) follows it;
/// `provider_tokens` is the client role's token store for `upstream_token`
/// rules.
async fn build_front(
    loaded: &Loaded,
    store: Arc<dyn Store>,
    server: Option<&AuthorizationServer>,
    origins: &OriginIndex,
    provider_tokens: Option<Arc<dyn crate::proxy::ProviderTokens>>,
) -> Result<BuiltFront, GateConfigError> {
    let upstream_token =
        provider_tokens.map_or_else(gate::UpstreamTokenLayer::without_tokens, gate::UpstreamTokenLayer::new);
    let Some(config) = loaded.config.gate.as_ref() else {
        let identity = IdentityHeadersLayer::new(gate::default_identity());
        return Ok((Front { identity, gate: None, upstream_token }, None, Vec::new(), None));
    };
    let configured = gate::configured(config, loaded)?;
    let forward_auth = configured.forward_auth.clone();
    let identity = IdentityHeadersLayer::new(configured.identity.clone());
    let origins = origins.clone();
    // Subscribed before the first read, so no change falls between.
    let origin_changes = store.changes();
    if let Err(e) = origins.refresh_from(store.as_ref()).await {
        tracing::warn!(error = %e, "cannot read the consumers' allowed origins; retrying in the background");
    }
    let local = server.map(|server| {
        let keys = server.clone();
        // The server's tokens name its issuer as their audience too.
        gate::local_issuer(server.issuer(), server.issuer(), move || keys.jwks(), store.clone())
    });
    let layers = GateLayers::new(configured, local, origins)?;
    let mut tasks = Vec::new();
    if let Some(changes) = store.changes() {
        tasks.push(Task::aborted(layers.bearer.spawn_follow(changes)));
    }
    tasks.push(Task::aborted(layers.origins.spawn_refresh(store, config.cors.refresh.0, origin_changes)));
    let bearer = layers.bearer.clone();
    tasks.push(Task::aborted(tokio::spawn(async move { bearer.prefetch_keys().await })));
    let front = Front { identity, gate: Some((layers.cors, layers.bearer)), upstream_token };
    Ok((front, Some(layers.token_cors), tasks, forward_auth))
}

/// What [`build_front`] builds: the front, the token endpoint's CORS layer,
/// the gate's background tasks and the forward-auth endpoint's settings
/// (when enabled; its route is mounted once, at start).
type BuiltFront = (Front, Option<gate::ClientCorsLayer>, Vec<Task>, Option<gate::ForwardAuthSettings>);

/// The roles' conversions of their sections, run on every file the binary
/// loads: `check-config` reports what they refuse, and `serve` starts only
/// a file they accept.
const SECTION_CHECKS: &[SectionCheck] = &[gate::check_config];

/// Reads a configuration file and checks it completely: the file's own
/// checks ([`crate::config::load`]) and every role's conversion of its
/// section, each problem with its `file:line:column`.
pub fn load_config(path: &std::path::Path) -> Result<Loaded, ConfigErrors> {
    crate::config::load_with(path, SECTION_CHECKS)
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when
/// this is called, not when the future is first polled, so a signal that
/// arrives while the sidecar is still starting is not lost. Call it inside
/// the Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                },
                (Err(err), _) | (_, Err(err)) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received; shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request path a route answers: each `{parameter}` filled in.
    fn concrete(route: &str) -> String {
        route
            .split('/')
            .map(|segment| if segment.starts_with('{') { "x" } else { segment })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn a_forward_auth_path_clashes_with_routes_at_under_or_around_it() {
        for route in ["/oauth/check", "/oauth/check/x", "/oauth/{x}", "/admin/{*rest}"] {
            let path = if route.starts_with("/admin") { "/admin/check" } else { "/oauth/check" };
            assert!(route_clash(route, path), "{route} {path}");
        }
        for route in ["/oauth/checks", "/oauth/token", "/oauth/start/{client}", "/healthz"] {
            assert!(!route_clash(route, "/oauth/check"), "{route}");
        }
    }

    #[tokio::test]
    async fn every_role_route_is_among_the_owned_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sidecar.yaml");
        let yaml = format!(
            "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:9\nstore: sqlite://{}/sidecar.db\n\
             server:\n  roles:\n    viewer: {{ label: Viewer }}\n\
             gate:\n  default: deny\n\
             client:\n  token_key: 3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\n  return_path: /civicrm/oauth-client/return\n\
             admin:\n  path: /manage/\n",
            dir.path().display()
        );
        std::fs::write(&file, yaml).unwrap();
        let loaded = crate::config::load(&file).unwrap();
        let config = &loaded.config;
        let store = store::open_for(&loaded).await.unwrap();
        let readiness = Readiness {
            store: store.clone(),
            upstream: "127.0.0.1:9".into(),
            timeout: Duration::from_secs(1),
            metrics: Metrics::register(),
        };
        let server = AuthorizationServer::start(
            store.clone(),
            config.server.as_ref().unwrap(),
            &loaded.public_url,
            &config.proxy.trusted_proxies,
        )
        .await
        .unwrap();
        let client = crate::client::ClientRole::start(&loaded, store.clone()).await.unwrap().unwrap();
        let admin = crate::admin::AdminSite::start(&loaded, store.clone(), None).await.unwrap().unwrap();
        let roles = [
            ("ops", ops::mount(&config.ops, readiness)),
            ("server", server.mount()),
            ("client", client.mount()),
            ("admin", admin.mount()),
        ];
        for (role, mount) in &roles {
            assert!(!mount.routes().is_empty(), "{role} has routes");
            for route in mount.routes() {
                let path = concrete(route);
                assert!(mount.owned().contains(&path), "{role}: route {route} ({path}) is not an owned path");
            }
        }
        let all = roles.into_iter().fold(Mount::new(), |all, (_, mount)| all.merge(mount));
        for path in
            ["/healthz", "/oauth/token", "/oauth/start/mail", "/civicrm/oauth-client/return", "/manage"]
        {
            assert!(all.owned().contains(path), "{path}");
        }
        assert!(!all.owned().contains("/api/records"));
        drop(all);
        store.close().await;
    }
}
