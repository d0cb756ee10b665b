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
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and the layer that gives
//!   every request an id, a log span and its metrics.
//! - [`demo`]: the demo upstream behind `upstream: demo`.
//! - [`Sidecar`]: all of it behind one listener, as the binary runs it.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]

pub mod admin;
pub mod client;
pub mod config;
pub mod demo;
mod dispatch;
pub mod gate;
mod listener;
pub mod ops;
pub mod proxy;
pub mod server;
mod sidecar;
mod signin;
pub mod store;
pub mod telemetry;

pub use sidecar::{Sidecar, StartError, shutdown_signal};
