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
//!                              -> identity headers -> reverse proxy -> upstream app
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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tower::Layer;

use crate::config::{ConfigErrors, Loaded, SectionCheck, Upstream};
use crate::dispatch::{Dispatch, Front, OwnedPaths};
use crate::gate::{self, GateConfigError, GateLayers, IdentityHeadersLayer, OriginIndex};
use crate::listener::{self, Listener};
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
    demo: Option<JoinHandle<()>>,
    client: Option<crate::client::ClientRole>,
    /// Background tasks (origin refresh, key prefetch), stopped at shutdown.
    tasks: Vec<JoinHandle<()>>,
}

impl Sidecar {
    /// Opens the store (applying migrations), starts the demo upstream when
    /// configured, binds the listener and builds the router.
    pub async fn build(loaded: Loaded) -> Result<Self, StartError> {
        let store = store::open_with(&loaded.store, loaded.store_options()).await?;
        let config = &loaded.config;
        let (upstream, demo) = match &config.upstream {
            Upstream::Url(uri) => (uri.clone(), None),
            Upstream::Demo => {
                let (addr, task) = crate::demo::spawn().await.map_err(StartError::Demo)?;
                let uri = format!("http://{addr}")
                    .parse()
                    .map_err(|_| StartError::Demo(std::io::Error::other("the demo address is not a URI")))?;
                (uri, Some(task))
            }
        };
        let authority = upstream.authority().map(|a| a.to_string()).unwrap_or_default();
        let upstream_addr = if upstream.port().is_some() { authority } else { format!("{authority}:80") };

        let listener = match Listener::bind(config.listen, config.tls.as_ref()).await {
            Ok(l) => l,
            Err(e) => {
                store.close().await;
                return Err(StartError::Listener(e));
            }
        };

        let metrics = Metrics::register();
        let proxy =
            ReverseProxy::with_metrics(ProxySettings::from_config(&config.proxy, upstream), metrics.clone());
        let readiness = Readiness {
            store: store.clone(),
            upstream: upstream_addr.clone(),
            timeout: config.proxy.connect_timeout.0.min(Duration::from_secs(5)),
            metrics: metrics.clone(),
        };
        let ops = &config.ops;
        let mut owned = OwnedPaths::default().exact(&ops.health.0).exact(&ops.ready.0).exact(&ops.metrics.0);
        let mut router = ops::router(ops, readiness);
        let mut server = None;
        if let Some(server_config) = &config.server {
            let started = match AuthorizationServer::start(
                store.clone(),
                server_config,
                &loaded.public_url,
                &config.proxy.trusted_proxies,
            )
            .await
            {
                Ok(server) => server,
                Err(e) => {
                    store.close().await;
                    return Err(e.into());
                }
            };
            for prefix in started.owned_prefixes() {
                owned = owned.prefix(prefix);
            }
            server = Some(started);
        }
        let (front, token_cors, tasks) = match build_front(&loaded, store.clone(), server.as_ref()).await {
            Ok(built) => built,
            Err(e) => {
                store.close().await;
                return Err(e.into());
            }
        };
        if let Some(server) = &server {
            router = match token_cors {
                Some(cors) => router.merge(server.router().layer(cors)),
                None => router.merge(server.router()),
            };
        }
        let client = match crate::client::ClientRole::start(&loaded, store.clone()).await {
            Ok(client) => client,
            Err(e) => {
                for task in &tasks {
                    task.abort();
                }
                store.close().await;
                return Err(e.into());
            }
        };
        if let Some(role) = &client {
            let (prefix, return_path) = role.client().owned_paths();
            owned = owned.prefix(prefix).exact(return_path);
            router = router.merge(role.client().router());
        }
        let tokens = client.as_ref().map(|role| role.client().tokens());
        match crate::admin::AdminSite::start(&loaded, store.clone(), tokens).await {
            Ok(Some(admin)) => {
                let (prefix, exact) = admin.owned_paths();
                owned = owned.prefix(&prefix).exact(&exact);
                router = router.merge(admin.router());
            }
            Ok(None) => {}
            Err(e) => {
                for task in &tasks {
                    task.abort();
                }
                store.close().await;
                return Err(e.into());
            }
        }
        let dispatch = Dispatch::new(router, proxy, owned, front);
        Ok(Sidecar {
            loaded,
            listener,
            dispatch,
            metrics,
            store,
            upstream: upstream_addr,
            demo,
            client,
            tasks,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, drains in-flight requests for at
    /// most `shutdown_grace`, then closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Sidecar { loaded, listener, dispatch, metrics, store, upstream, demo, client, tasks } = self;
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
        let client = client.map(crate::client::ClientRole::spawn);
        let observe = ObserveLayer::new(metrics, config.log.access);
        listener::serve(
            listener,
            |conn| observe.layer(dispatch.for_connection(conn)),
            config.proxy.max_header_size.0 as usize,
            shutdown,
            config.shutdown_grace.0,
        )
        .await;
        if let Some(client) = client {
            client.stop(config.shutdown_grace.0).await;
        }
        store.close().await;
        if let Some(task) = upkeep {
            task.abort();
        }
        if let Some(task) = demo {
            task.abort();
        }
        for task in tasks {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// The layers in front of the proxy, the token endpoint's CORS layer, and
/// the background tasks they need.
async fn build_front(
    loaded: &Loaded,
    store: Arc<dyn Store>,
    server: Option<&AuthorizationServer>,
) -> Result<(Front, Option<gate::ClientCorsLayer>, Vec<JoinHandle<()>>), GateConfigError> {
    let Some(config) = loaded.config.gate.as_ref() else {
        let identity = IdentityHeadersLayer::new(gate::default_identity());
        return Ok((Front { identity, gate: None }, None, Vec::new()));
    };
    let configured = gate::configured(config, loaded)?;
    let identity = IdentityHeadersLayer::new(configured.identity.clone());
    let origins = OriginIndex::default();
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
        tasks.push(layers.bearer.spawn_follow(changes));
    }
    tasks.push(layers.origins.spawn_refresh(store, config.cors.refresh.0, origin_changes));
    let bearer = layers.bearer.clone();
    tasks.push(tokio::spawn(async move { bearer.prefetch_keys().await }));
    let front = Front { identity, gate: Some((layers.cors, layers.bearer)) };
    Ok((front, Some(layers.token_cors), tasks))
}

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
