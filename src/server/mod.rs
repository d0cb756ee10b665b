//! The authorization server role (farmOS model): consumers, users and roles,
//! the scope policy, signing keys and JWT access tokens.
//!
//! This version holds the parts the endpoints are built from; the
//! `/oauth/*` endpoints mount on them.

pub mod consumer;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod policy;
