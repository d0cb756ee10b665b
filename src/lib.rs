//! oauth-sidecar: a reverse-proxy sidecar and Tower layers that give a legacy
//! application OAuth2 on both sides, without changing the application.
//!
//! # Layout
//!
//! - [`config`]: the YAML file: schema, defaults, `${VAR}` and `*_file`
//!   secrets, validation with `file:line:column` errors.
//! - [`store`]: role-sized store traits ([`store::GateStore`],
//!   [`store::ServerStore`], [`store::ClientStore`], ...; [`store::Store`] is
//!   their union) and one SQL implementation for SQLite (embedded default)
//!   and PostgreSQL (replicas), with migrations applied at start.
//! - [`proxy`]: the streaming reverse proxy to the upstream app.
//! - [`server`]: the authorization server (farmOS model): consumers,
//!   users and roles, the scope policy, signing keys, the token endpoint,
//!   JWKS and metadata, mounted under `/oauth/` and `/.well-known/`.
//! - [`client`]: the OAuth client (CiviCRM model): providers, client
//!   registrations, `/oauth/start/{client}` and the return path, the
//!   encrypted token store with refresh, [`client::InjectTokenLayer`] and the
//!   egress listener.
//! - [`gate`]: the resource gate in front of the upstream: route rules,
//!   bearer tokens checked against each issuer's JWKS (the local server's in
//!   process), per-consumer CORS and identity headers, as Tower layers.
//! - [`web`]: what every page shares: sign-in sessions, CSRF, the sign-in
//!   page, password checks, the throttle and the page templates, used by
//!   `/oauth/authorize`, `/oauth/start` and the admin pages alike.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and the layer that gives
//!   every request an id, a log span and its metrics.
//! - [`demo`]: the demo upstream behind `upstream: demo`.
//! - [`cli`]: the `oauth-sidecar` command line, one file per command group.
//! - [`mount`]: what each role hands the sidecar: its routes, the paths
//!   they own and its background tasks, in one [`mount::Mount`].
//! - [`Sidecar`]: all of it behind one listener, as the binary runs it.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "sidecar")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
mod clock;
pub mod config;
pub mod demo;
#[cfg(feature = "sidecar")]
mod dispatch;
#[cfg(feature = "gate")]
pub mod gate;
#[cfg(feature = "sidecar")]
mod listener;
pub mod mount;
pub mod ops;
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "sidecar")]
mod sidecar;
pub mod store;
pub mod telemetry;
#[cfg(feature = "web")]
pub mod web;

#[cfg(feature = "sidecar")]
pub use sidecar::{Sidecar, StartError, load_config, shutdown_signal};
