//! The WebSub hub: queued verifications, subscriptions and their delivery cursors, outside topics (open hub).
//! `SqlStore`'s implementation of `WebSubStore`.

use super::*;

use async_trait::async_trait;
use sqlx::Row;

use crate::store::WebSubStore;
use crate::store::{DueDelivery, HubRequest, Subscription, TopicContent, TopicFetch};
use crate::store::{Result, StoreError};

#[async_trait]
impl WebSubStore for SqlStore {
    async fn hub_enqueue(&self, r: &HubRequest, run_at: i64) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO websub_requests \
             (mode, topic, callback, user_id, feed, secret, lease_seconds, run_at, created_at, key_hash, topic_sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(if r.subscribe { "subscribe" } else { "unsubscribe" })
        .bind(stored_topic(&r.topic, r.user_id).into_owned())
        .bind(&r.callback)
        .bind(r.user_id)
        .bind(&r.feed)
        .bind(self.seal_opt(r.secret.as_deref())?)
        .bind(r.lease_seconds)
        .bind(run_at)
        .bind(now())
        .bind(&r.key_hash)
        .bind(self.sealed_topic(&r.topic, r.user_id)?)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    async fn hub_claim(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<HubRequest>> {
        let rows = self.claim(&VERIFICATIONS, now_ms, lease_ms, limit).await?;
        rows.iter()
            .map(|r| {
                let mode: String = r.try_get("mode")?;
                Ok(HubRequest {
                    id: r.try_get("id")?,
                    subscribe: mode == "subscribe",
                    topic: self.topic_of(r)?,
                    callback: r.try_get("callback")?,
                    user_id: r.try_get("user_id")?,
                    feed: r.try_get("feed")?,
                    key_hash: r.try_get("key_hash")?,
                    secret: self.reveal(r.try_get("secret")?),
                    lease_seconds: r.try_get("lease_seconds")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    async fn hub_done(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM websub_requests WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn hub_retry(&self, id: i64, run_at: i64) -> Result<()> {
        sqlx::query("UPDATE websub_requests SET run_at = $1, claimed_until = 0 WHERE id = $2")
            .bind(run_at)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn subscribe(&self, s: &Subscription) -> Result<()> {
        if s.user_id.is_none() {
            sqlx::query("INSERT INTO websub_topics (url) VALUES ($1) ON CONFLICT (url) DO NOTHING")
                .bind(&s.topic)
                .execute(&self.writer)
                .await?;
        }
        // A new subscriber starts at the present: the user's head, or the topic's version.
        sqlx::query(
            "INSERT INTO websub_subscriptions \
             (topic, callback, user_id, feed, secret, lease_seconds, expires_at, delivered_seq, created_at, key_hash, \
             topic_sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE((SELECT head_seq FROM users WHERE id = $3), \
             (SELECT version FROM websub_topics WHERE url = $1), 0), $8, $9, $10) \
             ON CONFLICT (topic, callback) DO UPDATE SET user_id = excluded.user_id, feed = excluded.feed, \
             key_hash = excluded.key_hash, topic_sealed = excluded.topic_sealed, \
             secret = excluded.secret, lease_seconds = excluded.lease_seconds, expires_at = excluded.expires_at",
        )
        .bind(stored_topic(&s.topic, s.user_id).into_owned())
        .bind(&s.callback)
        .bind(s.user_id)
        .bind(&s.feed)
        .bind(self.seal_opt(s.secret.as_deref())?)
        .bind(s.lease_seconds)
        .bind(s.expires_at)
        .bind(now())
        .bind(&s.key_hash)
        .bind(self.sealed_topic(&s.topic, s.user_id)?)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn unsubscribe(&self, topic: &str, callback: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM websub_subscriptions WHERE topic IN ($1, $3) AND callback = $2")
            .bind(topic)
            .bind(callback)
            .bind(stored_topic(topic, Some(0)).into_owned())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn subscription(&self, topic: &str, callback: &str) -> Result<Option<Subscription>> {
        let row = sqlx::query(
            "SELECT topic, topic_sealed, callback, user_id, feed, key_hash, secret, lease_seconds, expires_at \
             FROM websub_subscriptions WHERE topic IN ($1, $3) AND callback = $2",
        )
        .bind(topic)
        .bind(callback)
        .bind(stored_topic(topic, Some(0)).into_owned())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            Ok(Subscription {
                topic: self.topic_of(&r)?,
                callback: r.try_get("callback")?,
                user_id: r.try_get("user_id")?,
                feed: r.try_get("feed")?,
                key_hash: r.try_get("key_hash")?,
                secret: self.reveal(r.try_get("secret")?),
                lease_seconds: r.try_get("lease_seconds")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn deliveries_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let mut rows: Vec<PackedDelivery> = self.claim_packed(&DELIVERIES, now_ms, lease_ms, limit).await?;
        let room = limit.saturating_sub(u32::try_from(rows.len()).unwrap_or(limit));
        if room > 0 {
            rows.extend(self.claim_packed(&OUTSIDE_DELIVERIES, now_ms, lease_ms, room).await?);
        }
        // A fan-out claims many subscriptions of one topic: its sealed URL is opened once per
        // batch (rows with the same stored topic, which holds the key's hash, name one URL).
        let mut topics: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        Ok(rows
            .into_iter()
            .map(|p| {
                let stored = p.1.clone();
                let mut d = DueDelivery::from(p);
                d.secret = self.reveal(d.secret);
                d.topic = match topics.get(&stored) {
                    Some(url) => url.clone(),
                    None => {
                        let url = self.sealer.reveal(std::mem::take(&mut d.topic));
                        topics.insert(stored, url.clone());
                        url
                    }
                };
                d
            })
            .collect())
    }

    async fn delivered(&self, ids: &[i64], upto: u64) -> Result<()> {
        // The ids travel as one JSON array: one bind, however many there are.
        let list = match self.backend {
            Backend::Sqlite => "SELECT value FROM json_each($2)",
            Backend::Postgres => "SELECT value::bigint FROM json_array_elements_text($2::json)",
        };
        let sql = format!(
            "UPDATE websub_subscriptions SET delivered_seq = $1, attempts = 0, next_attempt_at = 0, claimed_until = 0 \
             WHERE delivered_seq < $1 AND id IN ({list})"
        );
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Batch(e.to_string()))?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sql_seq(upto))
            .bind(ids)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delivery_failed(&self, id: i64, next_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE websub_subscriptions SET attempts = attempts + 1, next_attempt_at = $1, claimed_until = 0 WHERE id = $2",
        )
        .bind(next_at)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn drop_subscription(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM websub_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn revoked_subscriptions(&self, limit: u32) -> Result<Vec<(i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT s.id, s.topic, s.topic_sealed, s.callback FROM websub_subscriptions s WHERE s.user_id IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM feed_keys k WHERE k.key_hash = s.key_hash AND k.revoked_at IS NULL) ORDER BY s.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, self.topic_of(r)?, r.try_get("callback")?)))
            .collect()
    }

    async fn subscriptions_to(&self, topic: &str) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT id, callback FROM websub_subscriptions WHERE topic = $1 AND user_id IS NULL ORDER BY id",
        )
        .bind(topic)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("callback")?)))
            .collect()
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM websub_subscriptions WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "DELETE FROM websub_topics WHERE NOT EXISTS \
             (SELECT 1 FROM websub_subscriptions s WHERE s.topic = websub_topics.url AND s.user_id IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM websub_requests r WHERE r.topic = websub_topics.url AND r.user_id IS NULL)",
        )
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn topic_ping(&self, url: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE websub_topics SET fetch_due = $2 WHERE url = $1 AND EXISTS \
             (SELECT 1 FROM websub_subscriptions s WHERE s.topic = $1 AND s.user_id IS NULL)",
        )
        .bind(url)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn topic_fetches_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<TopicFetch>> {
        let rows = self.claim(&TOPIC_FETCHES, now_ms, lease_ms, limit).await?;
        rows.iter()
            .map(|r| {
                Ok(TopicFetch {
                    id: r.try_get("id")?,
                    url: r.try_get("url")?,
                    content_type: r.try_get("content_type")?,
                })
            })
            .collect()
    }

    async fn topic_fetched(&self, id: i64, claimed_at: i64, content: Option<TopicContent>) -> Result<bool> {
        let clear = "fetch_due = CASE WHEN fetch_due <= $2 THEN 0 ELSE fetch_due END, claimed_until = 0";
        let Some(c) = content else {
            let sql = format!("UPDATE websub_topics SET {clear} WHERE id = $1");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(claimed_at)
                .execute(&self.writer)
                .await?;
            return Ok(false);
        };
        // The hash is compared in the same statement, so two fetchers cannot both bump.
        let sql = format!(
            "UPDATE websub_topics SET {clear}, version = version + 1, content_type = $3, body = $4, hash = $5, \
             fetched_at = $6 WHERE id = $1 AND hash <> $5"
        );
        let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(claimed_at)
            .bind(&c.content_type)
            .bind(c.body)
            .bind(&c.hash)
            .bind(now())
            .execute(&self.writer)
            .await?
            .rows_affected()
            > 0;
        if !changed {
            let sql = format!("UPDATE websub_topics SET {clear}, fetched_at = $3 WHERE id = $1");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(claimed_at)
                .bind(now())
                .execute(&self.writer)
                .await?;
        }
        Ok(changed)
    }

    async fn topic_content(&self, url: &str) -> Result<Option<TopicContent>> {
        let row =
            sqlx::query("SELECT content_type, body, hash, version FROM websub_topics WHERE url = $1 AND version > 0")
                .bind(url)
                .fetch_optional(&self.readers)
                .await?;
        row.map(|r| {
            Ok(TopicContent {
                content_type: r.try_get("content_type")?,
                body: r.try_get("body")?,
                hash: r.try_get("hash")?,
                version: seq(r.try_get("version")?),
            })
        })
        .transpose()
    }
}
