//! What a schema migration is, for every backend: a version, a description
//! and its SQL. Each backend embeds its own list (`migrations/sqlite/`,
//! `migrations/postgres/`) with the same versions; the SQL store applies
//! them with sqlx's migrator.

use std::borrow::Cow;

/// One schema change: a version number, a short description and its SQL.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Applied in ascending order; never reused.
    pub version: i64,
    /// A few words, shown in errors.
    pub description: &'static str,
    /// The SQL, run in one transaction.
    pub sql: Cow<'static, str>,
}
