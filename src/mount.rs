//! [`Mount`]: what a role hands the sidecar, in one value: its routes, the
//! paths it owns, and its background tasks.
//!
//! A route and the path it owns are registered in one call
//! ([`Mount::route`]), so the paths the sidecar answers itself cannot drift
//! from the routes: a route `/oauth/token` owns that exact path, a route
//! with a parameter such as `/oauth/start/{client}` owns everything under
//! `/oauth/start/`. A role may claim a whole namespace on top
//! ([`Mount::prefix`]): its unknown paths are then answered by the role
//! (404), never sent to the upstream.
//!
//! ```
//! use axum::routing::get;
//! use oauth_sidecar::mount::Mount;
//!
//! let mount: Mount = Mount::new()
//!     .route("/healthz", get(|| async { "ok\n" }))
//!     .route("/oauth/start/{client}", get(|| async { "start" }));
//! assert!(mount.owned().contains("/healthz"));
//! assert!(mount.owned().contains("/oauth/start/mail"));
//! assert!(!mount.owned().contains("/api/records"));
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{Layer, Service};

/// Paths the sidecar answers itself: exact paths, and prefixes ending in `/`.
#[derive(Debug, Clone, Default)]
pub struct OwnedPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl OwnedPaths {
    /// Whether `path` (a request's path) is answered by the sidecar.
    pub fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|p| p == path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// The path a route owns: itself, or, with a `{parameter}`, everything
    /// under the segment before it.
    fn claim_route(&mut self, route: &str) {
        match route.find('{') {
            None => self.exact.push(route.to_owned()),
            Some(at) => {
                let end = route[..at].rfind('/').map_or(0, |slash| slash + 1);
                self.prefixes.push(route[..end].to_owned());
            }
        }
    }

    fn extend(&mut self, other: OwnedPaths) {
        self.exact.extend(other.exact);
        self.prefixes.extend(other.prefixes);
    }
}

/// A background task of a role: aborted when the sidecar stops (or when
/// the task is dropped, e.g. because a later role failed to start), or, for
/// a listener, told to stop and given the shutdown grace to drain.
#[derive(Debug)]
pub struct Task {
    handle: Option<JoinHandle<()>>,
    /// Told `true` at shutdown; the task then finishes on its own.
    drain: Option<(watch::Sender<bool>, &'static str)>,
}

impl Task {
    /// A task aborted at shutdown.
    pub fn aborted(handle: JoinHandle<()>) -> Self {
        Task { handle: Some(handle), drain: None }
    }

    /// A task that stops when `stop` says `true` and is awaited for at most
    /// the shutdown grace; `what` names it in the warning when it does not
    /// finish in time.
    pub fn drained(handle: JoinHandle<()>, stop: watch::Sender<bool>, what: &'static str) -> Self {
        Task { handle: Some(handle), drain: Some((stop, what)) }
    }

    /// Stops every task: the aborted ones at once, then the drained ones,
    /// each within `grace`.
    pub async fn stop_all(tasks: Vec<Task>, grace: Duration) {
        let mut draining = Vec::new();
        for mut task in tasks {
            match (task.drain.take(), task.handle.take()) {
                (Some((stop, what)), Some(handle)) => {
                    let _ = stop.send(true);
                    draining.push((handle, what));
                }
                (_, Some(handle)) => handle.abort(),
                (_, None) => {}
            }
        }
        for (handle, what) in draining {
            if tokio::time::timeout(grace, handle).await.is_err() {
                tracing::warn!("the {what} did not drain in time");
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// A role's routes, the paths they own, and its background tasks.
#[derive(Debug)]
pub struct Mount<S = ()> {
    router: Router<S>,
    owned: OwnedPaths,
    routes: Vec<String>,
    tasks: Vec<Task>,
}

impl<S: Clone + Send + Sync + 'static> Default for Mount<S> {
    fn default() -> Self {
        Mount { router: Router::new(), owned: OwnedPaths::default(), routes: Vec::new(), tasks: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> Mount<S> {
    /// No routes, no paths, no tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route and claims the path it owns (see the module docs).
    pub fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.owned.claim_route(path);
        self.routes.push(path.to_owned());
        self.router = self.router.route(path, method_router);
        self
    }

    /// Claims every path under `prefix` (ending in `/`), with or without a
    /// route: the role answers them, the upstream never sees them.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.owned.prefixes.push(prefix.to_owned());
        self
    }

    /// Adds a background task, stopped with the sidecar.
    pub fn task(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self
    }

    /// Adds the routes, paths and tasks of `other`.
    pub fn merge(mut self, other: Mount<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.owned.extend(other.owned);
        self.routes.extend(other.routes);
        self.tasks.extend(other.tasks);
        self
    }

    /// Gives the handlers their state (cf. [`Router::with_state`]).
    pub fn with_state<S2>(self, state: S) -> Mount<S2> {
        Mount {
            router: self.router.with_state(state),
            owned: self.owned,
            routes: self.routes,
            tasks: self.tasks,
        }
    }

    /// Wraps every route in `layer` (cf. [`Router::layer`]).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// The paths the routes own.
    pub fn owned(&self) -> &OwnedPaths {
        &self.owned
    }

    /// The route paths, as registered (with their `{parameters}`).
    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// Takes the background tasks out, for whoever stops them.
    pub fn take_tasks(&mut self) -> Vec<Task> {
        std::mem::take(&mut self.tasks)
    }

    /// The router and the paths it owns; the tasks, if any are left, are
    /// aborted (take them first with [`Mount::take_tasks`]).
    pub fn into_parts(self) -> (Router<S>, OwnedPaths) {
        (self.router, self.owned)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[test]
    fn a_route_owns_its_path_and_a_parameter_owns_its_segment() {
        let mount: Mount = Mount::new()
            .route("/healthz", get(|| async {}))
            .route("/admin", get(|| async {}))
            .route("/admin/{*rest}", get(|| async {}))
            .route("/oauth/start/{client}", get(|| async {}))
            .route("/a/{id}/delete", get(|| async {}));
        let owned = mount.owned();
        for path in
            ["/healthz", "/admin", "/admin/", "/admin/users/1", "/oauth/start/mail", "/a/1/delete", "/a/2"]
        {
            assert!(owned.contains(path), "{path}");
        }
        for path in ["/healthz/x", "/administrator", "/oauth/start", "/oauth/token", "/a", "/"] {
            assert!(!owned.contains(path), "{path}");
        }
    }

    #[test]
    fn a_claimed_prefix_owns_paths_without_a_route() {
        let mount: Mount = Mount::new().prefix("/oauth/").route("/oauth/token", get(|| async {}));
        let merged = Mount::new().route("/healthz", get(|| async {})).merge(mount);
        assert!(merged.owned().contains("/oauth/unknown"));
        assert!(merged.owned().contains("/healthz"));
        assert_eq!(merged.routes(), ["/healthz", "/oauth/token"]);
    }
}
