//! Follows of outside feeds (the subscriber side of WebSub, and the feed connector's cursor).
//! `SqlStore`'s implementation of `FollowStore`.

use super::*;

use async_trait::async_trait;

use crate::store::Follow;
use crate::store::{FollowState, FollowStore};
use crate::store::{Result, StoreError};

#[async_trait]
impl FollowStore for SqlStore {
    async fn add_follow(
        &self,
        user_id: i64,
        collection_id: i64,
        url: &str,
        callback_token: &str,
        secret: &str,
    ) -> Result<Follow> {
        // A removed follow still telling its hub makes room: its callback then answers 410.
        sqlx::query("DELETE FROM follows WHERE user_id = $1 AND url = $2 AND state = 'leaving'")
            .bind(user_id)
            .bind(url)
            .execute(&self.writer)
            .await?;
        let sql = format!(
            "INSERT INTO follows (user_id, collection_id, url, callback_token, secret, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'polling', $6) RETURNING {FOLLOW_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(collection_id)
            .bind(url)
            .bind(callback_token)
            .bind(self.seal(secret)?)
            .bind(now())
            .fetch_one(&self.writer)
            .await
            .map_err(insert_err("a follow of this URL"))?;
        self.follow_row(&row)
    }

    async fn follows(&self, user_id: i64) -> Result<Vec<Follow>> {
        let sql = format!(
            "SELECT {FOLLOW_COLUMNS} FROM follows WHERE user_id = $1 AND state <> 'leaving' AND connector_id IS NULL ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(|r| self.follow_row(r)).collect()
    }

    async fn follow_by_token(&self, callback_token: &str) -> Result<Option<Follow>> {
        let sql = format!("SELECT {FOLLOW_COLUMNS} FROM follows WHERE callback_token = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(callback_token)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(|r| self.follow_row(r)).transpose()
    }

    async fn remove_follow(&self, user_id: i64, id: i64) -> Result<Follow> {
        // One the hub pushes to leaves through the worker, which tells the hub first.
        let sql = format!(
            "UPDATE follows SET state = 'leaving', next_at = 0, claimed_until = 0 \
             WHERE user_id = $1 AND id = $2 AND state IN ('subscribing', 'subscribed') AND hub <> '' \
             RETURNING {FOLLOW_COLUMNS}"
        );
        let leaving = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        if let Some(row) = leaving {
            return self.follow_row(&row);
        }
        let sql = format!(
            "DELETE FROM follows WHERE user_id = $1 AND id = $2 AND state <> 'leaving' RETURNING {FOLLOW_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or(StoreError::NotFound("follow"))?;
        self.follow_row(&row)
    }

    async fn drop_follow(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM follows WHERE id = $1 AND state = 'leaving'")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn follows_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<Follow>> {
        let rows = self.claim(&FOLLOWS, now_ms, lease_ms, limit).await?;
        rows.iter().map(|r| self.follow_row(r)).collect()
    }

    async fn update_follow(&self, f: &Follow, was: FollowState) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE follows SET topic = $2, hub = $3, state = $4, lease_expires_at = $5, next_at = $6, etag = $7, \
             last_modified = $8, last_error = $9, claimed_until = 0 WHERE id = $1 AND state = $10",
        )
        .bind(f.id)
        .bind(&f.topic)
        .bind(&f.hub)
        .bind(f.state.as_str())
        .bind(f.lease_expires_at)
        .bind(f.next_at)
        .bind(f.etag.as_deref())
        .bind(f.last_modified.as_deref())
        .bind(f.last_error.as_deref())
        .bind(was.as_str())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Changed meanwhile (a hub's verification or denial, a removal): that change stands,
        // and the follow is free for the next look at once.
        sqlx::query("UPDATE follows SET claimed_until = 0 WHERE id = $1")
            .bind(f.id)
            .execute(&self.writer)
            .await?;
        Ok(false)
    }

    async fn follow_verified(&self, id: i64, lease_expires_at: i64, next_at: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE follows SET state = 'subscribed', lease_expires_at = $2, next_at = $3, last_error = NULL \
             WHERE id = $1 AND state IN ('subscribing', 'subscribed')",
        )
        .bind(id)
        .bind(lease_expires_at)
        .bind(next_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn follow_fallback(&self, id: i64, reason: &str, next_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE follows SET state = 'polling', lease_expires_at = 0, next_at = $2, last_error = $3 \
             WHERE id = $1 AND state <> 'leaving'",
        )
        .bind(id)
        .bind(next_at)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn link_follow(&self, user_id: i64, id: i64, connector_id: i64, topic: &str, hub: &str) -> Result<()> {
        sqlx::query(
            "UPDATE follows SET connector_id = $3, topic = $4, hub = $5, next_at = 0 WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(id)
        .bind(connector_id)
        .bind(topic)
        .bind(hub)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn follow_of_connector(&self, user_id: i64, connector_id: i64) -> Result<Option<Follow>> {
        let sql = format!("SELECT {FOLLOW_COLUMNS} FROM follows WHERE user_id = $1 AND connector_id = $2 LIMIT 1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(connector_id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(|r| self.follow_row(r)).transpose()
    }
}
