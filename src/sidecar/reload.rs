//! Configuration reload without a restart: on SIGHUP, and with
//! `reload.watch: true` when the file's content changes.
//!
//! The new file gets the full check of `check-config` ([`super::load_config`]).
//! A file that fails it is refused: every problem is logged with its
//! `file:line:column` and the running configuration stays. A file that
//! passes is applied in this order, so that a failure part way leaves the
//! old rules deciding:
//!
//! 1. the gate's front is built from the new file by the code the start
//!    uses ([`super::build_front`]), with new background tasks;
//! 2. the file's consumers and users are synced and its roles replaced
//!    ([`AuthorizationServer::reload`], and for the admin pages'
//!    checks [`AdminSite::reload`]);
//! 3. the front is swapped whole (each request reads it once, see
//!    [`crate::dispatch`]) and the old front's tasks are stopped;
//! 4. the egress routes and the log level are replaced.
//!
//! Settings a running process cannot change (listen addresses, the store,
//! keys, ...) keep their values; the log names each one the file changed
//! ([`crate::config::reload`]). `oauth_sidecar_config_reload_total{outcome}`
//! counts reloads: `applied`, `rejected` (the file fails the check) and
//! `failed` (the file is good, applying it failed, e.g. the store is down).
//!
//! The file is watched by reading it twice a second and comparing its
//! content, not through file system events: a content check sees every way
//! a file is replaced (an editor's write-and-rename, a Kubernetes ConfigMap's
//! symlink swap, a network file system without inotify), and a small file
//! read twice a second costs nothing worth counting. A change is applied
//! once the content has stayed the same for one more read, so a file caught
//! half-written is not refused for it.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::admin::AdminSite;
use crate::client::egress::EgressRoutes;
use crate::config::{Loaded, reload};
use crate::dispatch::LiveFront;
use crate::gate::{ClientCorsLayer, OriginIndex};
use crate::mount::Task;
use crate::server::AuthorizationServer;
use crate::store::Store;

/// The metric counting reloads by outcome.
const RELOADS: &str = "oauth_sidecar_config_reload_total";

/// How often a watched file is read.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// What asks for a reload: SIGHUP, and the file's content when watched.
pub(super) struct Triggers {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    /// The watched file, with `reload.watch: true`, and its content when
    /// installed (so a change made while the sidecar starts is seen).
    watch: Option<(PathBuf, Option<Vec<u8>>)>,
}

impl Triggers {
    /// Installs the SIGHUP handler now (its default action ends the
    /// process), and notes the file to watch. Call inside the Tokio runtime.
    pub(super) fn install(loaded: &Loaded) -> Self {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the configuration reloads only with a restart");
                None
            }
        };
        Triggers {
            #[cfg(unix)]
            hangup,
            watch: loaded.config.reload.watch.then(|| {
                let path = PathBuf::from(&loaded.file);
                let content = std::fs::read(&path).ok();
                (path, content)
            }),
        }
    }

    /// Waits for the next SIGHUP; forever without a handler.
    async fn hangup(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.hangup {
            if signal.recv().await.is_some() {
                return;
            }
            self.hangup = None;
        }
        std::future::pending::<()>().await;
    }
}

/// Everything a reload replaces, and the running configuration it starts from.
pub(super) struct Reloader {
    /// The configuration in effect: the start's, with the reloadable
    /// settings of the last file applied.
    pub(super) running: Loaded,
    pub(super) store: Arc<dyn Store>,
    pub(super) server: Option<AuthorizationServer>,
    /// The consumers' origins, one index for the process.
    pub(super) origins: OriginIndex,
    pub(super) live: LiveFront,
    /// The tasks of the front in use, stopped when it is replaced.
    pub(super) gate_tasks: Vec<Task>,
    pub(super) egress_routes: Option<EgressRoutes>,
    pub(super) token_cors: LiveTokenCors,
    pub(super) admin: Option<AdminSite>,
    /// The client role's token store, for the `upstream_token` rules of a
    /// reloaded gate.
    pub(super) provider_tokens: Option<Arc<dyn crate::proxy::ProviderTokens>>,
    pub(super) triggers: Triggers,
}

/// The token endpoint's CORS layer (built with the gate, from its `cors:`
/// settings), replaced on reload like the front; none without a `gate:`.
#[derive(Clone)]
pub(super) struct LiveTokenCors(Arc<ArcSwapOption<ClientCorsLayer>>);

impl LiveTokenCors {
    /// Starts with `layer`.
    pub(super) fn new(layer: Option<ClientCorsLayer>) -> Self {
        LiveTokenCors(Arc::new(ArcSwapOption::new(layer.map(Arc::new))))
    }
}

impl<S> Layer<S> for LiveTokenCors {
    type Service = LiveTokenCorsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LiveTokenCorsService { inner, live: self.0.clone() }
    }
}

/// The service [`LiveTokenCors`] wraps around the authorization server's routes.
#[derive(Clone)]
pub(super) struct LiveTokenCorsService<S> {
    inner: S,
    live: Arc<ArcSwapOption<ClientCorsLayer>>,
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for LiveTokenCorsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> BoxResponse {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        match &*self.live.load() {
            Some(cors) => cors.layer(inner).call(req),
            None => {
                let mut inner = inner;
                Box::pin(inner.call(req))
            }
        }
    }
}

/// How a reload ended, as the metric's `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Rejected,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

impl Reloader {
    /// Reloads on every trigger until the task is aborted (at shutdown).
    pub(super) async fn run(mut self) {
        for outcome in [Outcome::Applied, Outcome::Rejected, Outcome::Failed] {
            metrics::counter!(RELOADS, "outcome" => outcome.label()).absolute(0);
        }
        metrics::describe_counter!(RELOADS, "Configuration reloads (SIGHUP or a watched file), by outcome.");
        let (watched, mut seen) = match self.triggers.watch.take() {
            Some((path, content)) => (Some(path), content),
            None => (None, None),
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The content read last, while it waits to stay the same for one more read.
        let mut settling: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                () = self.triggers.hangup() => {
                    tracing::info!("SIGHUP received; reloading the configuration");
                    if let Some(path) = &watched {
                        seen = tokio::fs::read(path).await.ok();
                        settling = None;
                    }
                    self.reload().await;
                }
                _ = tick.tick(), if watched.is_some() => {
                    let Some(path) = &watched else { continue };
                    let Ok(now) = tokio::fs::read(path).await else { continue };
                    if seen.as_ref() == Some(&now) {
                        settling = None;
                    } else if settling.as_ref() == Some(&now) {
                        tracing::info!(file = %path.display(), "the configuration file changed; reloading");
                        seen = Some(now);
                        settling = None;
                        self.reload().await;
                    } else {
                        settling = Some(now);
                    }
                }
            }
        }
    }

    /// Reads, checks and applies the file once; counts and logs the outcome.
    async fn reload(&mut self) {
        let outcome = self.try_reload().await;
        metrics::counter!(RELOADS, "outcome" => outcome.label()).increment(1);
    }

    async fn try_reload(&mut self) -> Outcome {
        let path = PathBuf::from(&self.running.file);
        let new = match super::load_config(&path) {
            Ok(new) => new,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    problems = errors.0.len(),
                    "the configuration file was refused; the running configuration stays"
                );
                return Outcome::Rejected;
            }
        };
        let next = reload::reloadable(&self.running, &new);
        let fixed = reload::fixed_changes(&next, &new);
        if !fixed.is_empty() {
            tracing::warn!(
                settings = %fixed.join(", "),
                "these settings change only with a restart; they keep their running values"
            );
        }
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let built = super::build_front(
            &next,
            self.store.clone(),
            self.server.as_ref(),
            &self.origins,
            self.provider_tokens.clone(),
        )
        .await;
        let (front, token_cors, tasks, _) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the resource gate from the new file; the running configuration stays");
                return Outcome::Failed;
            }
        };
        if let (Some(server), Some(section)) = (&self.server, &next.config.server)
            && let Err(e) = server.reload(section).await
        {
            tracing::error!(error = %e, "cannot apply the file's consumers, users and roles; the running configuration stays");
            return Outcome::Failed;
        }
        if let Some(admin) = &self.admin {
            admin.reload(&next.config);
        }
        if let Err(e) = self.origins.refresh_from(self.store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read the consumers' allowed origins; keeping the previous ones");
        }
        self.live.store(Arc::new(front));
        self.token_cors.0.store(token_cors.map(Arc::new));
        // The old front's tasks stop here; requests still using it finish.
        self.gate_tasks = tasks;
        if let (Some(routes), Some(egress)) = (&self.egress_routes, &next.config.egress)
            && let Err(e) = routes.replace(&egress.routes)
        {
            tracing::error!(error = %e, "cannot build the new egress routes; the old ones stay");
        }
        if let Err(e) = crate::telemetry::set_level(&next.config.log.level.value) {
            tracing::error!(error = %e, "cannot change the log level");
        }
        let rules = next.config.gate.as_ref().map_or(0, |g| g.rules.len());
        tracing::info!(file = %path.display(), gate_rules = rules, "configuration reloaded");
        self.running = next;
        Outcome::Applied
    }
}
