//! Which user uploaded which file (the bytes live on disk, see `crate::blobs`).
//! `SqlStore`'s implementation of `BlobStore`.

use super::*;

use async_trait::async_trait;
use sqlx::{Acquire, Connection};

use crate::store::BlobStore;
use crate::store::Result;

#[async_trait]
impl BlobStore for SqlStore {
    async fn record_blobs(&self, user_id: i64, blobs: &[(String, u64)]) -> Result<Vec<bool>> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let mut new = Vec::with_capacity(blobs.len());
        for (sha256, size) in blobs {
            sqlx::query(
                "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(sha256.as_str())
            .bind(sql_seq(*size))
            .bind(now())
            .execute(&mut *tx)
            .await?;
            let added: Option<i64> = sqlx::query_scalar(
                "INSERT INTO user_blobs (user_id, sha256, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, sha256) DO NOTHING RETURNING user_id",
            )
            .bind(user_id)
            .bind(sha256.as_str())
            .bind(now())
            .fetch_optional(&mut *tx)
            .await?;
            new.push(added.is_some());
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn blob_size(&self, user_id: i64, sha256: &str) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM user_blobs u JOIN blobs b ON b.sha256 = u.sha256 WHERE u.user_id = $1 AND u.sha256 = $2",
        )
        .bind(user_id)
        .bind(sha256)
        .fetch_optional(&self.readers)
        .await?;
        Ok(size.map(seq))
    }
}
