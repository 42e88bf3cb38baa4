//! Items and their changes: the FeedSync state of every collection, and the change log that feeds and streams read.
//! `SqlStore`'s implementation of `ItemStore`.

use super::*;

use async_trait::async_trait;
use sqlx::Acquire;
use tokio::sync::oneshot;

use crate::domain::entry::StoredItem;
use crate::store::ItemStore;
use crate::store::{ChangeRecord, ItemRecord, ItemWrite, Result, StoreError};

#[async_trait]
impl ItemStore for SqlStore {
    async fn item(&self, collection_id: i64, sync_id: &str) -> Result<Option<ItemRecord>> {
        // A stale read is harmless: the write that follows is compare-and-swap on `seq`.
        let row = sqlx::query("SELECT seq, changed_at, document FROM items WHERE collection_id = $1 AND sync_id = $2")
            .bind(collection_id)
            .bind(sync_id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(item_row).transpose()
    }

    async fn write_item(&self, w: ItemWrite<'_>) -> Result<u64> {
        let item: &StoredItem = w.item;
        let document = serde_json::to_string(item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let version = serde_json::to_string(&item.current).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sync = &item.current.sync;
        if let Some(batcher) = &self.batcher {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                user_id: w.user_id,
                collection_id: w.collection_id,
                sync_id: sync.id.clone(),
                expected_seq: w.expected_seq,
                deleted: sync.deleted,
                conflicts: item.conflicts.len() as i64,
                document,
                version,
                kind: w.kind,
                endpoint_id: w.endpoint_id,
                at: w.at.unix(),
                live_token: w.live_token.map(str::to_string),
                activity: w.activity.clone(),
                reply,
            };
            batcher
                .send(job)
                .await
                .map_err(|_| StoreError::Batch("the writer has stopped".into()))?;
            return answer
                .await
                .map_err(|_| StoreError::Batch("the writer has stopped".into()))?;
        }
        // PostgreSQL: one transaction per write; the user's row lock orders sequence numbers.
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        if let Some(token) = w.live_token {
            let live: Option<i64> =
                sqlx::query_scalar("SELECT id FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                    .bind(token)
                    .fetch_optional(&mut *tx)
                    .await?;
            if live.is_none() {
                tx.rollback().await?;
                return Err(StoreError::Revoked);
            }
        }
        let seq_new: i64 =
            sqlx::query_scalar("UPDATE users SET head_seq = head_seq + 1 WHERE id = $1 RETURNING head_seq")
                .bind(w.user_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("user"))?;
        let row = ItemRow {
            collection_id: w.collection_id,
            sync_id: &sync.id,
            expected_seq: w.expected_seq,
            seq_new,
            deleted: sync.deleted,
            conflicts: item.conflicts.len() as i64,
            document: &document,
            at: w.at.unix(),
        };
        if write_item_row(&mut tx, &row).await? == 0 {
            tx.rollback().await?;
            return Err(StoreError::Conflict);
        }
        insert_change(&mut tx, w.user_id, &row, w.endpoint_id, w.kind, &version, w.activity).await?;
        // Delivered to every listening process when (and only if) this commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(w.user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq(seq_new))
    }

    async fn items_since(&self, collection_id: i64, after: u64, limit: u32) -> Result<Vec<ItemRecord>> {
        let rows = sqlx::query(
            "SELECT seq, changed_at, document FROM items WHERE collection_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(collection_id)
        .bind(sql_seq(after))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(item_row).collect()
    }

    async fn conflicted(&self, user_id: i64, limit: u32) -> Result<Vec<(String, ItemRecord)>> {
        let rows = sqlx::query(
            "SELECT c.name AS collection, i.seq, i.changed_at, i.document FROM items i \
             JOIN collections c ON c.id = i.collection_id \
             WHERE c.user_id = $1 AND i.conflicts > 0 ORDER BY i.seq DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("collection")?, item_row(r)?)))
            .collect()
    }

    async fn conflict_count(&self, user_id: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM items i JOIN collections c ON c.id = i.collection_id \
             WHERE c.user_id = $1 AND i.conflicts > 0",
        )
        .bind(user_id)
        .fetch_one(&self.readers)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn collection_head(&self, collection_id: i64) -> Result<u64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM items WHERE collection_id = $1")
            .bind(collection_id)
            .fetch_one(&self.readers)
            .await?;
        Ok(seq(head.unwrap_or(0)))
    }

    async fn changes(
        &self,
        user_id: i64,
        endpoint_id: Option<i64>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>> {
        let rows = sqlx::query(
            "SELECT c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version, \
             c.verb, c.object_type \
             FROM changes c JOIN collections col ON col.id = c.collection_id \
             LEFT JOIN endpoints e ON e.id = c.endpoint_id \
             WHERE c.user_id = $1 AND ($2 < 0 OR c.endpoint_id = $2) AND c.seq < $3 \
             ORDER BY c.seq DESC LIMIT $4",
        )
        .bind(user_id)
        .bind(endpoint_id.unwrap_or(-1))
        .bind(before.map(sql_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(change_row).collect()
    }

    async fn user_head(&self, user_id: i64) -> Result<u64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head_seq FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.readers)
            .await?;
        head.map(seq).ok_or(StoreError::NotFound("user"))
    }

    async fn changes_after(
        &self,
        user_id: i64,
        endpoint_id: Option<i64>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>> {
        let rows = sqlx::query(
            "SELECT c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version, \
             c.verb, c.object_type \
             FROM changes c JOIN collections col ON col.id = c.collection_id \
             LEFT JOIN endpoints e ON e.id = c.endpoint_id \
             WHERE c.user_id = $1 AND ($2 < 0 OR c.endpoint_id = $2) AND c.seq > $3 \
             ORDER BY c.seq LIMIT $4",
        )
        .bind(user_id)
        .bind(endpoint_id.unwrap_or(-1))
        .bind(sql_seq(after))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(change_row).collect()
    }

    fn changes_elsewhere(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.notified.clone()
    }
}
