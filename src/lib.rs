//! oauth-sidecar: a reverse-proxy sidecar and Tower layers that give a legacy
//! application OAuth2 on both sides, without changing the application.
//!
//! # Layout
//!
//! Dependencies point down only, from the command line to the
//! configuration (`tests/layering.rs` checks it on the source):
//!
//! - [`cli`] and [`Sidecar`]: the command line and the assembly that puts
//!   every role behind one listener, as the binary runs it;
//!   [`load_config`] reads a file and runs every role's conversion of its
//!   section, so `check-config` and `serve` judge a file alike.
//! - [`admin`]: the admin pages and JSON API, above the roles they
//!   administer.
//! - The three roles, which never import each other:
//!   - [`server`]: the authorization server (farmOS model): consumers,
//!     users and roles, the scope policy, signing keys, the token endpoint,
//!     consent, JWKS and metadata, under `/oauth/` and `/.well-known/`.
//!   - [`gate`]: the resource gate in front of the upstream: its section's
//!     one conversion into plain settings, route rules, bearer tokens checked
//!     against each issuer's JWKS (the local server's in process),
//!     per-consumer CORS and identity headers, and the provider tokens of
//!     `upstream_token` rules (from the client role, through
//!     [`proxy::ProviderTokens`]), as Tower layers.
//!   - [`client`]: the OAuth client (CiviCRM model): providers, client
//!     registrations, `/oauth/start/{client}` and the return path, the
//!     encrypted token store with refresh, [`client::InjectTokenLayer`] and
//!     the egress listener.
//! - What they share: [`web`] (sign-in sessions, CSRF, the sign-in page,
//!   passwords, the throttle and templates, for `/oauth/authorize`,
//!   `/oauth/start` and the admin pages alike), [`mount`] (what each role
//!   hands the sidecar: its routes, the paths they own and its background
//!   tasks), [`proxy`] (the streaming reverse proxy), [`ops`] (`/healthz`,
//!   `/readyz`, `/metrics`, request ids, spans), [`demo`] (the demo upstream),
//!   and the listener (crate-private, one for the public and the egress
//!   side: TLS, HTTP/1.1 and HTTP/2, the connection cap and the header,
//!   body and idle timeouts of the `listener:` section).
//! - [`store`]: role-sized store traits ([`store::GateStore`],
//!   [`store::ServerStore`], [`store::ClientStore`], ...; [`store::Store`] is
//!   their union) and one SQL implementation for SQLite (embedded default)
//!   and PostgreSQL (replicas), with migrations applied at start.
//! - [`config`]: the YAML file: schema, defaults, `${VAR}` and `*_file`
//!   secrets, `file:line:column` errors; it imports nothing of the crate.
//!
//! # Crate features
//!
//! `default` is `sidecar`: everything, with the command line and the binary.
//! `gate` alone gives the gate's Tower layers without the databases,
//! password hashing, templates or token encryption; `server`, `client`,
//! `admin`, `sqlite` and `postgres` add the rest piece by piece; `otlp`
//! (in `sidecar`) exports OpenTelemetry traces ([`ops::trace`]).
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
#[cfg(any(feature = "sidecar", feature = "client"))]
mod listener;
pub mod mount;
pub mod ops;
mod outbound;
#[cfg(all(test, feature = "sidecar"))]
mod proptests;
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
