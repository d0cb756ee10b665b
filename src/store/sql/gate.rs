//! What the resource gate reads: consumers (for their origins) and the
//! access-token revocation list.

use async_trait::async_trait;

use super::{Dialect, SqlStore, query_err, rows};
use crate::store::{ConsumerRecord, GateStore, StoreError};

#[async_trait]
impl<D: Dialect> GateStore for SqlStore<D> {
    async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM consumers ORDER BY client_id")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(rows::consumer).collect::<Result<_, _>>().map_err(query_err)
    }

    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let hit = sqlx::query("SELECT 1 FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.readers)
            .await
            .map_err(query_err)?;
        Ok(hit.is_some())
    }
}
