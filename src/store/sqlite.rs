//! The embedded SQLite store: one file in WAL mode, one writer connection and
//! a few readers. sqlx runs each connection on its own thread, so queries never
//! block the async runtime.
//!
//! Every write, and every read that decides a write (redeeming a code,
//! rotating a refresh token), runs on the single writer connection, so those
//! are serialized; plain reads go to the read-only pool. The queries live by
//! concept in `directory` (consumers, users, keys) and `grants` (codes,
//! tokens, sessions, revocations); the schema is in `migrations/sqlite/`.

mod admin;
mod client;
mod directory;
mod grants;
mod migrate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

pub use migrate::migrations;

use super::Migration;

use super::{
    AdminTokenRecord, AuthCodeRecord, ClientRegistrationRecord, ClientStateRecord, CodeRedemption,
    ConsumerRecord, ProviderTokenRecord, RefreshGrace, RefreshRotation, RefreshTokenRecord, SessionRecord,
    SigningKeyRecord, Store, StoreError, UserRecord,
};

/// The SQLite backend of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection that writes: SQLite allows one writer at a time.
    writer: SqlitePool,
    /// Connections for reads, which WAL lets run beside the writer.
    readers: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates, with its folder) the store file and applies the
    /// embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_migrations(path, migrations()).await
    }

    /// Opens the store with the given migrations: [`SqliteStore::open`] with
    /// [`migrations`]; other sets are for tests and tools.
    pub async fn open_with_migrations(path: &Path, migrations: Vec<Migration>) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open { location: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create folder {}: {e}", dir.display())))?;
        }
        let existed = path.exists();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let store = async {
            migrate::run(&writer, &migrations).await?;
            let readers = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| open_err(e.to_string()))?;
            Ok(SqliteStore { writer: writer.clone(), readers, path: path.to_path_buf() })
        }
        .await;
        if store.is_err() {
            writer.close().await;
            if !existed {
                // We created the file for nothing: leave the disk as it was.
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            }
        }
        store
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The read-only connections, for `store copy`.
    pub(super) fn reader_pool(&self) -> &SqlitePool {
        &self.readers
    }

    /// Closes both pools (what [`Store::close`] does).
    pub(super) async fn close_pools(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// A failed query, as the store reports it. SQLite's messages name tables
/// and columns, never the values bound to a query.
fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Lists of strings are stored as JSON arrays.
fn encode_list(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Query(format!("cannot encode a list: {e}")))
}

fn decode_list(row: &SqliteRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map(drop).map_err(query_err)
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(query_err)).collect()
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        directory::meta_get_or_insert(&self.writer, key, value).await
    }

    async fn put_consumer(&self, consumer: &ConsumerRecord) -> Result<(), StoreError> {
        directory::put_consumer(&self.writer, consumer).await
    }

    async fn consumer(&self, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        directory::consumer(&self.readers, client_id).await
    }

    async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        directory::consumers(&self.readers).await
    }

    async fn delete_consumer(&self, client_id: &str) -> Result<bool, StoreError> {
        directory::delete_consumer(&self.writer, client_id).await
    }

    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        directory::put_user(&self.writer, user).await
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        directory::user(&self.readers, username).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        directory::users(&self.readers).await
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        directory::add_signing_key(&self.writer, key).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        directory::signing_keys(&self.readers).await
    }

    async fn add_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        directory::add_first_signing_key(&self.writer, key).await
    }

    async fn add_auth_code(&self, code: &AuthCodeRecord) -> Result<(), StoreError> {
        grants::add_auth_code(&self.writer, code).await
    }

    async fn redeem_auth_code(&self, code_hash: &str) -> Result<CodeRedemption, StoreError> {
        grants::redeem_auth_code(&self.writer, code_hash).await
    }

    async fn record_code_issue(
        &self,
        code_hash: &str,
        family_id: Option<&str>,
        access_jti: &str,
        access_exp: i64,
    ) -> Result<(), StoreError> {
        grants::record_code_issue(&self.writer, code_hash, family_id, access_jti, access_exp).await
    }

    async fn add_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        grants::add_refresh_token(&self.writer, token).await
    }

    async fn rotate_refresh_token_with_grace(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        grace: Option<&RefreshGrace>,
        now: i64,
    ) -> Result<RefreshRotation, StoreError> {
        grants::rotate_refresh_token(&self.writer, token_hash, next, grace, now).await
    }

    async fn refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        grants::refresh_token(&self.readers, token_hash, now).await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        grants::revoke_refresh_family(&self.writer, family_id).await
    }

    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        grants::add_session(&self.writer, session).await
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        grants::session(&self.readers, id_hash, now).await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        grants::delete_session(&self.writer, id_hash).await
    }

    async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<(), StoreError> {
        admin::touch_session(&self.writer, id_hash, expires_at).await
    }

    async fn add_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        admin::add_token(&self.writer, token).await
    }

    async fn admin_token(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin::token(&self.readers, token_hash).await
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        admin::tokens(&self.readers).await
    }

    async fn delete_admin_token(&self, id: &str) -> Result<bool, StoreError> {
        admin::delete_token(&self.writer, id).await
    }

    async fn current_refresh_tokens(&self, now: i64) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        admin::current_refresh_tokens(&self.readers, now).await
    }

    async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), StoreError> {
        grants::revoke_access_token(&self.writer, jti, exp).await
    }

    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        grants::is_access_token_revoked(&self.readers, jti).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        grants::purge_expired(&self.writer, now).await
    }

    async fn put_client_registration(&self, c: &ClientRegistrationRecord) -> Result<(), StoreError> {
        client::put_registration(&self.writer, c).await
    }

    async fn client_registrations(&self) -> Result<Vec<ClientRegistrationRecord>, StoreError> {
        client::registrations(&self.readers).await
    }

    async fn delete_client_registration(&self, name: &str) -> Result<bool, StoreError> {
        client::delete_registration(&self.writer, name).await
    }

    async fn save_provider_token(&self, token: &ProviderTokenRecord) -> Result<i64, StoreError> {
        client::save_token(&self.writer, token).await
    }

    async fn provider_token(&self, id: i64) -> Result<Option<ProviderTokenRecord>, StoreError> {
        client::token_by_id(&self.readers, id).await
    }

    async fn provider_token_by_tag(
        &self,
        client: &str,
        tag: &str,
    ) -> Result<Option<ProviderTokenRecord>, StoreError> {
        // From the writer: a refresh reads what the last refresh wrote.
        client::token_by_tag(&self.writer, client, tag).await
    }

    async fn provider_tokens(&self) -> Result<Vec<ProviderTokenRecord>, StoreError> {
        client::tokens(&self.readers).await
    }

    async fn delete_provider_token(&self, id: i64) -> Result<bool, StoreError> {
        client::delete_token(&self.writer, id).await
    }

    async fn set_provider_token_status(
        &self,
        id: i64,
        status: &str,
        last_error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        client::set_token_status(&self.writer, id, status, last_error, now).await
    }

    async fn lease_provider_token(
        &self,
        id: i64,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        client::lease_token(&self.writer, id, holder, until, now).await
    }

    async fn release_provider_token(&self, id: i64, holder: &str) -> Result<(), StoreError> {
        client::release_token(&self.writer, id, holder).await
    }

    async fn add_client_state(&self, state: &ClientStateRecord) -> Result<(), StoreError> {
        client::add_state(&self.writer, state).await
    }

    async fn take_client_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<ClientStateRecord>, StoreError> {
        client::take_state(&self.writer, state_hash, now).await
    }
}
