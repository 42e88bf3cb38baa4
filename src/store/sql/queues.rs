//! The claimable queues (verifications, deliveries, follows, topic fetches): which rows are
//! due, and claiming them for a lease so a crashed worker's jobs come due again.

use super::*;
use crate::store::DueDelivery;
use crate::store::{Result, StoreError};
use sqlx::Connection;
use sqlx::any::AnyRow;

/// A queue whose rows workers claim for a while: which rows are due, how they are marked.
/// All parts are fixed SQL; `$1` is now (Unix ms), and the claimable table is aliased `s`.
pub(super) struct Queue {
    table: &'static str,
    from: &'static str,
    due: &'static str,
    order: &'static str,
    /// Assignments made when claiming, besides `claimed_until`.
    also_set: &'static str,
    returning: &'static str,
}

pub(super) const VERIFICATIONS: Queue = Queue {
    table: "websub_requests",
    from: "websub_requests s",
    due: "s.run_at <= $1 AND s.claimed_until <= $1",
    order: "s.run_at",
    also_set: ", attempts = attempts + 1",
    returning: "id, mode, topic, callback, user_id, feed, key_hash, secret, lease_seconds, attempts, topic_sealed",
};

/// Subscribers of outside topics (open hub) behind the topic's version.
pub(super) const OUTSIDE_DELIVERIES: Queue = Queue {
    table: "websub_subscriptions",
    from: "websub_topics t CROSS JOIN websub_subscriptions s",
    due: "s.topic = t.url AND s.user_id IS NULL AND s.delivered_seq < t.version AND s.expires_at > $1 AND s.next_attempt_at <= $1 \
          AND s.claimed_until <= $1",
    order: "",
    also_set: "",
    returning: "id, topic, callback, user_id, feed, key_hash, secret, delivered_seq, attempts, topic_sealed",
};

/// Follows whose next look is due.
pub(super) const FOLLOWS: Queue = Queue {
    table: "follows",
    from: "follows s",
    due: "s.next_at <= $1 AND s.claimed_until <= $1",
    order: "s.next_at",
    also_set: "",
    returning: FOLLOW_COLUMNS,
};

pub(super) const FOLLOW_COLUMNS: &str = "id, user_id, collection_id, url, topic, hub, callback_token, secret, state, \
    lease_expires_at, next_at, etag, last_modified, last_error, connector_id";

/// Connectors whose next run is due (paused ones and those waiting for their user are not).
pub(super) const CONNECTORS: Queue = Queue {
    table: "connectors",
    from: "connectors s",
    due: "s.next_at <= $1 AND s.claimed_until <= $1 AND s.state IN ('active', 'failing')",
    order: "s.next_at",
    also_set: "",
    returning: CONNECTOR_COLUMNS,
};

pub(super) const CONNECTOR_COLUMNS: &str = "id, user_id, kind, collection_id, outbox_id, account, options,     secrets_sealed, state, cursor, next_at, failures, last_sync_at, last_error, created_at, provider, tokens_sealed, outbox_seq, listener_owner, listener_until, listening_at";

/// Outside topics pinged since their last fetch.
pub(super) const TOPIC_FETCHES: Queue = Queue {
    table: "websub_topics",
    from: "websub_topics s",
    due: "s.fetch_due > 0 AND s.fetch_due <= $1 AND s.claimed_until <= $1",
    order: "s.fetch_due",
    also_set: "",
    returning: "id, url, content_type",
};

/// Users first (CROSS JOIN keeps SQLite's order), then the index on (user_id, delivered_seq)
/// finds only subscribers behind: a claim never scans the ones that are up to date.
pub(super) const DELIVERIES: Queue = Queue {
    table: "websub_subscriptions",
    from: "users u CROSS JOIN websub_subscriptions s",
    due: "s.user_id = u.id AND s.delivered_seq < u.head_seq AND s.expires_at > $1 AND s.next_attempt_at <= $1 \
          AND s.claimed_until <= $1",
    order: "",
    also_set: "",
    returning: "id, topic, callback, user_id, feed, key_hash, secret, delivered_seq, attempts, topic_sealed",
};

impl Queue {
    pub(super) fn order_by(&self) -> String {
        match self.order {
            "" => String::new(),
            o => format!(" ORDER BY {o}"),
        }
    }
}

impl SqlStore {
    /// Whether a queue has a due row: an idle worker only reads.
    pub(super) async fn any_due(&self, q: &Queue, now_ms: i64) -> Result<bool> {
        // Every part of these statements is a constant of this module.
        let probe = format!("SELECT s.id FROM {} WHERE {} LIMIT 1", q.from, q.due);
        let due: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(probe))
            .bind(now_ms)
            .fetch_optional(&self.readers)
            .await?;
        Ok(due.is_some())
    }

    /// Claims up to `limit` due rows of a queue for `lease_ms`. An idle worker only reads;
    /// claiming is one UPDATE, with SKIP LOCKED on PostgreSQL so processes never share a row.
    pub(super) async fn claim(&self, q: &Queue, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<AnyRow>> {
        if !self.any_due(q, now_ms).await? {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF s SKIP LOCKED",
        };
        let order = q.order_by();
        let sql = format!(
            "UPDATE {table} SET claimed_until = $1 + $2{also} WHERE id IN \
             (SELECT s.id FROM {from} WHERE {due}{order} LIMIT $3{lock}) RETURNING {returning}",
            table = q.table,
            also = q.also_set,
            from = q.from,
            due = q.due,
            returning = q.returning,
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(lease_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?)
    }
}

impl SqlStore {
    /// `claim`, with the claimed rows packed into one JSON array of arrays (`returning`'s
    /// columns in order): one row back from the database however many are claimed.
    pub(super) async fn claim_packed<T: serde::de::DeserializeOwned>(
        &self,
        q: &Queue,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<T>> {
        if !self.any_due(q, now_ms).await? {
            return Ok(Vec::new());
        }
        let order = q.order_by();
        let packed: Option<String> = match self.backend {
            Backend::Sqlite => {
                let mut conn = self.writer.acquire().await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                // Picked and packed in one pass; the write lock keeps them as read until
                // the claim is marked.
                let pick = format!(
                    "SELECT json_group_array(json_array({returning})) FROM \
                     (SELECT s.* FROM {from} WHERE {due}{order} LIMIT $2)",
                    returning = q.returning,
                    from = q.from,
                    due = q.due
                );
                let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(pick))
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .fetch_one(&mut *tx)
                    .await?;
                // Each packed row starts with its id.
                let set = format!(
                    "UPDATE {table} SET claimed_until = $1 + $2{also} WHERE id IN \
                     (SELECT json_extract(value, '$[0]') FROM json_each($3))",
                    table = q.table,
                    also = q.also_set
                );
                sqlx::query(sqlx::AssertSqlSafe(set))
                    .bind(now_ms)
                    .bind(lease_ms)
                    .bind(&rows)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows
            }
            Backend::Postgres => {
                let sql = format!(
                    "WITH c AS (UPDATE {table} SET claimed_until = $1 + $2{also} WHERE id IN \
                     (SELECT s.id FROM {from} WHERE {due}{order} LIMIT $3 FOR UPDATE OF s SKIP LOCKED) RETURNING {returning}) \
                     SELECT json_agg(json_build_array({returning}))::text FROM c",
                    table = q.table,
                    also = q.also_set,
                    from = q.from,
                    due = q.due,
                    returning = q.returning,
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms)
                    .bind(lease_ms)
                    .bind(i64::from(limit))
                    .fetch_one(&self.writer)
                    .await?
            }
        };
        match packed {
            None => Ok(Vec::new()),
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("claimed {} rows: {e}", q.table)))
            }
        }
    }
}

/// A claimed delivery as packed by `claim_packed`: `DELIVERIES.returning`'s columns, in order.
#[derive(serde::Deserialize)]
pub(super) struct PackedDelivery(
    i64,
    pub(super) String,
    String,
    Option<i64>,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
);

impl From<PackedDelivery> for DueDelivery {
    fn from(p: PackedDelivery) -> Self {
        let PackedDelivery(id, topic, callback, user_id, feed, key_hash, secret, delivered_seq, attempts, sealed) = p;
        DueDelivery {
            id,
            topic: sealed.unwrap_or(topic),
            callback,
            user_id,
            feed,
            key_hash,
            secret,
            delivered_seq: seq(delivered_seq),
            attempts,
        }
    }
}
