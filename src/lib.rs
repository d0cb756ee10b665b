//! oauth-sidecar: a reverse-proxy sidecar and Tower layers that give a legacy
//! application OAuth2 on both sides.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]

pub mod config;
pub mod store;
