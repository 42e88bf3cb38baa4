//! The SQL behind [`Store`], written once in the dialect SQLite and PostgreSQL share
//! (`$N` parameters, `RETURNING`, 64-bit integers, text documents) over sqlx's `Any` driver.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{ChangeKind, ChangeRecord, Collection, FeedKey, ItemRecord, Result, Store, StoreError, TokenInfo, User};
use super::{DueDelivery, Follow, FollowState};
use crate::domain::{Timestamp, UserName};
use crate::seal::Sealer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    backend: Backend,
    /// PostgreSQL: ticks on every NOTIFY of a committed item write, from any process.
    notified: Option<tokio::sync::watch::Receiver<u64>>,
    /// SQLite: one connection, so writers never fight over the lock. PostgreSQL: the pool.
    writer: AnyPool,
    readers: AnyPool,
    /// SQLite only: item writes go through one task that commits them in batches.
    batcher: Option<mpsc::Sender<Job>>,
    /// Seals the secrets kept for later use (WebSub and follow secrets, server secrets).
    sealer: Arc<Sealer>,
}

/// One item write, owned, waiting for the group commit.
struct Job {
    user_id: i64,
    collection_id: i64,
    sync_id: String,
    expected_seq: Option<u64>,
    deleted: bool,
    conflicts: i64,
    document: String,
    version: String,
    kind: ChangeKind,
    endpoint_id: Option<i64>,
    at: i64,
    live_token: Option<String>,
    reply: oneshot::Sender<Result<u64>>,
}

const BATCH: usize = 512;
const LINGER_TURNS: usize = 4;

/// A queue whose rows workers claim for a while: which rows are due, how they are marked.
/// All parts are fixed SQL; `$1` is now (Unix ms), and the claimable table is aliased `s`.
struct Queue {
    table: &'static str,
    from: &'static str,
    due: &'static str,
    order: &'static str,
    /// Assignments made when claiming, besides `claimed_until`.
    also_set: &'static str,
    returning: &'static str,
}

const VERIFICATIONS: Queue = Queue {
    table: "websub_requests",
    from: "websub_requests s",
    due: "s.run_at <= $1 AND s.claimed_until <= $1",
    order: "s.run_at",
    also_set: ", attempts = attempts + 1",
    returning: "id, mode, topic, callback, user_id, feed, key_hash, secret, lease_seconds, attempts, topic_sealed",
};

/// Subscribers of outside topics (open hub) behind the topic's version.
const OUTSIDE_DELIVERIES: Queue = Queue {
    table: "websub_subscriptions",
    from: "websub_topics t CROSS JOIN websub_subscriptions s",
    due: "s.topic = t.url AND s.user_id IS NULL AND s.delivered_seq < t.version AND s.expires_at > $1 AND s.next_attempt_at <= $1 \
          AND s.claimed_until <= $1",
    order: "",
    also_set: "",
    returning: "id, topic, callback, user_id, feed, key_hash, secret, delivered_seq, attempts, topic_sealed",
};

/// Follows whose next look is due.
const FOLLOWS: Queue = Queue {
    table: "follows",
    from: "follows s",
    due: "s.next_at <= $1 AND s.claimed_until <= $1",
    order: "s.next_at",
    also_set: "",
    returning: FOLLOW_COLUMNS,
};

const FOLLOW_COLUMNS: &str = "id, user_id, collection_id, url, topic, hub, callback_token, secret, state, \
    lease_expires_at, next_at, etag, last_modified, last_error";

/// Outside topics pinged since their last fetch.
const TOPIC_FETCHES: Queue = Queue {
    table: "websub_topics",
    from: "websub_topics s",
    due: "s.fetch_due > 0 AND s.fetch_due <= $1 AND s.claimed_until <= $1",
    order: "s.fetch_due",
    also_set: "",
    returning: "id, url, content_type",
};

/// Users first (CROSS JOIN keeps SQLite's order), then the index on (user_id, delivered_seq)
/// finds only subscribers behind: a claim never scans the ones that are up to date.
const DELIVERIES: Queue = Queue {
    table: "websub_subscriptions",
    from: "users u CROSS JOIN websub_subscriptions s",
    due: "s.user_id = u.id AND s.delivered_seq < u.head_seq AND s.expires_at > $1 AND s.next_attempt_at <= $1 \
          AND s.claimed_until <= $1",
    order: "",
    also_set: "",
    returning: "id, topic, callback, user_id, feed, key_hash, secret, delivered_seq, attempts, topic_sealed",
};

impl Queue {
    fn order_by(&self) -> String {
        match self.order {
            "" => String::new(),
            o => format!(" ORDER BY {o}"),
        }
    }
}

impl SqlStore {
    /// Whether a queue has a due row: an idle worker only reads.
    async fn any_due(&self, q: &Queue, now_ms: i64) -> Result<bool> {
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
    async fn claim(&self, q: &Queue, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<AnyRow>> {
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
    async fn claim_packed<T: serde::de::DeserializeOwned>(
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

impl SqlStore {
    pub fn new(backend: Backend, writer: AnyPool, readers: AnyPool, sealer: Arc<Sealer>) -> Self {
        let batcher = (backend == Backend::Sqlite).then(|| {
            let (tx, rx) = mpsc::channel(4 * BATCH);
            tokio::spawn(group_commit(writer.clone(), rx));
            tx
        });
        SqlStore {
            backend,
            notified: None,
            writer,
            readers,
            batcher,
            sealer,
        }
    }

    fn seal(&self, secret: &str) -> Result<String> {
        self.sealer.seal(secret).map_err(|e| StoreError::Seal(e.to_string()))
    }

    fn seal_opt(&self, secret: Option<&str>) -> Result<Option<String>> {
        secret.map(|s| self.seal(s)).transpose()
    }

    fn reveal(&self, stored: Option<String>) -> Option<String> {
        stored.map(|s| self.sealer.reveal(s))
    }

    /// The sealed whole URL of a hosted topic whose stored form differs (it holds a key).
    fn sealed_topic(&self, topic: &str, user_id: Option<i64>) -> Result<Option<String>> {
        match stored_topic(topic, user_id) {
            Cow::Owned(_) => self.seal(topic).map(Some),
            Cow::Borrowed(_) => Ok(None),
        }
    }

    /// A row's topic URL as the subscriber gave it: opened from `topic_sealed` when there.
    fn topic_of(&self, r: &AnyRow) -> Result<String> {
        match r.try_get::<Option<String>, _>("topic_sealed")? {
            Some(sealed) => Ok(self.sealer.reveal(sealed)),
            None => Ok(r.try_get("topic")?),
        }
    }

    /// Checks that the database's secrets were sealed with this key (the first process to
    /// open it leaves a check value), then seals any secret still stored in clear (from
    /// before sealing). Safe to run by several processes at once: each value is swapped
    /// only if it is still the one read.
    pub async fn prepare_sealing(&self) -> anyhow::Result<()> {
        let check = self.server_secret_raw(SEAL_CHECK, &self.seal(SEAL_CHECK)?).await?;
        if self.sealer.open(&check).as_deref() != Some(SEAL_CHECK) {
            anyhow::bail!(
                "this database's secrets were sealed with another key: start with the key it was made \
                 with, in FEEDMESH_SECRET_KEY or in DATA_DIR/{}",
                crate::seal::KEY_FILE
            );
        }
        for (table, key, column) in SEALED_COLUMNS {
            let sql =
                format!("SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} NOT LIKE 'v1.%'");
            let rows: Vec<(String, String)> = if key == "id" {
                sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.writer)
                    .await?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect()
            } else {
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.writer).await?
            };
            let cast = match (self.backend, key) {
                (Backend::Postgres, "id") => "$2::bigint",
                (Backend::Sqlite, "id") => "CAST($2 AS INTEGER)",
                _ => "$2",
            };
            let swap = format!("UPDATE {table} SET {column} = $1 WHERE {key} = {cast} AND {column} = $3");
            for (k, plain) in &rows {
                sqlx::query(sqlx::AssertSqlSafe(swap.clone()))
                    .bind(self.seal(plain)?)
                    .bind(k)
                    .bind(plain)
                    .execute(&self.writer)
                    .await?;
            }
            if !rows.is_empty() {
                tracing::info!(
                    table,
                    count = rows.len(),
                    "sealed secrets kept in clear by an earlier version"
                );
            }
        }
        self.seal_legacy_topics().await
    }

    /// Hosted topics an earlier version stored whole, feed key and all: the key is replaced
    /// by its hash and the URL sealed, each row swapped only if it still holds what was read.
    async fn seal_legacy_topics(&self) -> anyhow::Result<()> {
        for table in ["websub_subscriptions", "websub_requests"] {
            let sql = format!(
                "SELECT id, topic FROM {table} WHERE user_id IS NOT NULL AND topic_sealed IS NULL AND topic LIKE '%key=%'"
            );
            let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.writer).await?;
            let swap = format!("UPDATE {table} SET topic = $1, topic_sealed = $2 WHERE id = $3 AND topic = $4");
            let mut count = 0;
            for (id, topic) in &rows {
                let Cow::Owned(stored) = stored_topic(topic, Some(0)) else {
                    continue;
                };
                sqlx::query(sqlx::AssertSqlSafe(swap.clone()))
                    .bind(stored)
                    .bind(self.seal(topic)?)
                    .bind(id)
                    .bind(topic)
                    .execute(&self.writer)
                    .await?;
                count += 1;
            }
            if count > 0 {
                tracing::info!(table, count, "feed keys kept in topics by an earlier version sealed");
            }
        }
        Ok(())
    }

    async fn server_secret_raw(&self, name: &str, fresh: &str) -> Result<String> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(&self.writer)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.writer)
            .await?)
    }

    fn follow_row(&self, r: &AnyRow) -> Result<Follow> {
        Ok(Follow {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            collection_id: r.try_get("collection_id")?,
            url: r.try_get("url")?,
            topic: r.try_get("topic")?,
            hub: r.try_get("hub")?,
            callback_token: r.try_get("callback_token")?,
            secret: self.sealer.reveal(r.try_get("secret")?),
            state: FollowState::parse(&r.try_get::<String, _>("state")?),
            lease_expires_at: r.try_get("lease_expires_at")?,
            next_at: r.try_get("next_at")?,
            etag: r.try_get("etag")?,
            last_modified: r.try_get("last_modified")?,
            last_error: r.try_get("last_error")?,
        })
    }
}

/// The server secret whose value tells whether a key is the database's.
const SEAL_CHECK: &str = "sealing-key-check";

/// Where sealed secrets are kept: table, key column, secret column.
const SEALED_COLUMNS: [(&str, &str, &str); 4] = [
    ("websub_requests", "id", "secret"),
    ("websub_subscriptions", "id", "secret"),
    ("follows", "id", "secret"),
    ("server_secrets", "name", "value"),
];

impl SqlStore {
    /// Attaches the LISTEN side (PostgreSQL).
    pub fn with_notifications(mut self, rx: tokio::sync::watch::Receiver<u64>) -> Self {
        self.notified = Some(rx);
        self
    }
}

/// The channel item writes NOTIFY on (PostgreSQL).
pub const CHANGES_CHANNEL: &str = "feedmesh_changes";

/// SQLite group commit: every item write waiting when a transaction starts joins it, so one
/// commit acknowledges many writes. A write is answered only after its commit.
async fn group_commit(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        // Give requests already in flight a moment to join: a few scheduler turns, not a timer.
        for _ in 0..LINGER_TURNS {
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if jobs.len() >= BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        match write_batch(&pool, &jobs).await {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = jobs.len(), "batch of item writes failed");
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Batch(e.to_string())));
                }
            }
        }
    }
}

/// Writes a batch in one transaction with few statements: one multi-row insert for new
/// items, one compare-and-swap update per edited item, one multi-row insert for changes.
/// Each job gets the next sequence number of its user in job order; a job that loses its
/// race (the item exists, or moved on) leaves a gap, which cursors do not mind.
async fn write_batch(pool: &AnyPool, jobs: &[Job]) -> Result<Vec<Result<u64>>> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    // One query checks every credential of the batch at commit time.
    let tokens: Vec<&str> = jobs.iter().filter_map(|j| j.live_token.as_deref()).collect();
    let mut live: Vec<String> = Vec::new();
    if !tokens.is_empty() {
        let mut q = sqlx::QueryBuilder::<sqlx::Any>::new(
            "SELECT token_hash FROM tokens WHERE revoked_at IS NULL AND token_hash IN (",
        );
        let mut list = q.separated(", ");
        for t in &tokens {
            list.push_bind(t.to_string());
        }
        q.push(")");
        live = q.build_query_scalar().fetch_all(&mut *tx).await?;
    }
    let allowed: Vec<bool> = jobs
        .iter()
        .map(|j| j.live_token.as_ref().is_none_or(|t| live.contains(t)))
        .collect();
    let mut heads: HashMap<i64, i64> = HashMap::new();
    for job in jobs {
        if let std::collections::hash_map::Entry::Vacant(slot) = heads.entry(job.user_id) {
            let head: Option<i64> = sqlx::query_scalar("SELECT head_seq FROM users WHERE id = $1")
                .bind(job.user_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(h) = head {
                slot.insert(h);
            }
        }
    }
    let seqs: Vec<Option<i64>> = jobs
        .iter()
        .zip(&allowed)
        .map(|(j, ok)| {
            heads.get_mut(&j.user_id).filter(|_| *ok).map(|h| {
                *h += 1;
                *h
            })
        })
        .collect();

    let mut written: Vec<bool> = vec![false; jobs.len()];
    let inserts: Vec<usize> = (0..jobs.len())
        .filter(|&i| seqs[i].is_some() && jobs[i].expected_seq.is_none())
        .collect();
    if !inserts.is_empty() {
        let mut q = sqlx::QueryBuilder::<sqlx::Any>::new(
            "INSERT INTO items (collection_id, sync_id, seq, deleted, conflicts, document, changed_at) ",
        );
        q.push_values(&inserts, |mut b, &i| {
            let job = &jobs[i];
            b.push_bind(job.collection_id)
                .push_bind(job.sync_id.clone())
                .push_bind(seqs[i].unwrap_or_default())
                .push_bind(i64::from(job.deleted))
                .push_bind(job.conflicts)
                .push_bind(job.document.clone())
                .push_bind(job.at);
        });
        q.push(" ON CONFLICT (collection_id, sync_id) DO NOTHING RETURNING seq");
        let inserted: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        for &i in &inserts {
            written[i] = seqs[i].is_some_and(|s| inserted.contains(&s));
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        if let (Some(seq_new), Some(_)) = (seqs[i], job.expected_seq) {
            let row = ItemRow {
                collection_id: job.collection_id,
                sync_id: &job.sync_id,
                expected_seq: job.expected_seq,
                seq_new,
                deleted: job.deleted,
                conflicts: job.conflicts,
                document: &job.document,
                at: job.at,
            };
            written[i] = write_item_row(&mut tx, &row).await? == 1;
        }
    }
    let done: Vec<usize> = (0..jobs.len()).filter(|&i| written[i]).collect();
    if !done.is_empty() {
        let mut q = sqlx::QueryBuilder::<sqlx::Any>::new(
            "INSERT INTO changes (user_id, seq, collection_id, sync_id, endpoint_id, kind, at, version) ",
        );
        q.push_values(&done, |mut b, &i| {
            let job = &jobs[i];
            b.push_bind(job.user_id)
                .push_bind(seqs[i].unwrap_or_default())
                .push_bind(job.collection_id)
                .push_bind(job.sync_id.clone())
                .push_bind(job.endpoint_id)
                .push_bind(job.kind.as_str())
                .push_bind(job.at)
                .push_bind(job.version.clone());
        });
        q.build().execute(&mut *tx).await?;
    }
    for (user_id, head) in &heads {
        sqlx::query("UPDATE users SET head_seq = $1 WHERE id = $2 AND head_seq < $1")
            .bind(*head)
            .bind(*user_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((0..jobs.len())
        .map(|i| match (seqs[i], written[i]) {
            (None, _) if !allowed[i] => Err(StoreError::Revoked),
            (None, _) => Err(StoreError::NotFound("user")),
            (Some(s), true) => Ok(seq(s)),
            (Some(_), false) => Err(StoreError::Conflict),
        })
        .collect())
}

/// The item row a write puts down.
struct ItemRow<'a> {
    collection_id: i64,
    sync_id: &'a str,
    /// None: insert; Some(seq): update only if the row is still at seq.
    expected_seq: Option<u64>,
    seq_new: i64,
    deleted: bool,
    conflicts: i64,
    document: &'a str,
    at: i64,
}

/// Returns the rows written: 0 when someone else wrote first.
async fn write_item_row(conn: &mut sqlx::AnyConnection, r: &ItemRow<'_>) -> Result<u64> {
    let done = match r.expected_seq {
        None => {
            sqlx::query(
                "INSERT INTO items (collection_id, sync_id, seq, deleted, conflicts, document, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (collection_id, sync_id) DO NOTHING",
            )
            .bind(r.collection_id)
            .bind(r.sync_id)
            .bind(r.seq_new)
            .bind(i64::from(r.deleted))
            .bind(r.conflicts)
            .bind(r.document)
            .bind(r.at)
            .execute(&mut *conn)
            .await?
        }
        Some(expected) => {
            sqlx::query(
                "UPDATE items SET seq = $1, deleted = $2, conflicts = $3, document = $4, changed_at = $8 \
             WHERE collection_id = $5 AND sync_id = $6 AND seq = $7",
            )
            .bind(r.seq_new)
            .bind(i64::from(r.deleted))
            .bind(r.conflicts)
            .bind(r.document)
            .bind(r.collection_id)
            .bind(r.sync_id)
            .bind(sql_seq(expected))
            .bind(r.at)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(done.rows_affected())
}

async fn insert_change(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    r: &ItemRow<'_>,
    endpoint_id: Option<i64>,
    kind: ChangeKind,
    version: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO changes (user_id, seq, collection_id, sync_id, endpoint_id, kind, at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user_id)
    .bind(r.seq_new)
    .bind(r.collection_id)
    .bind(r.sync_id)
    .bind(endpoint_id)
    .bind(kind.as_str())
    .bind(r.at)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn now() -> i64 {
    Timestamp::now().unix()
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn insert_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if unique_violation(&e) {
            StoreError::AlreadyExists(what)
        } else {
            StoreError::Database(e)
        }
    }
}

/// A claimed delivery as packed by `claim_packed`: `DELIVERIES.returning`'s columns, in order.
#[derive(serde::Deserialize)]
struct PackedDelivery(
    i64,
    String,
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

/// A topic as the `topic` column keeps it: a hosted topic's (`user_id` set) feed key replaced
/// by its hash, so no key is stored in clear; outside topics as they are (they are fetched).
fn stored_topic(topic: &str, user_id: Option<i64>) -> Cow<'_, str> {
    let Some((base, query)) = topic.split_once('?') else {
        return Cow::Borrowed(topic);
    };
    if user_id.is_none() || !query.split('&').any(|p| p.starts_with("key=")) {
        return Cow::Borrowed(topic);
    }
    let query: Vec<String> = query
        .split('&')
        .map(|p| match p.strip_prefix("key=") {
            Some(key) => format!("key=sha256.{}", crate::secrets::hash(key)),
            None => p.to_string(),
        })
        .collect();
    Cow::Owned(format!("{base}?{}", query.join("&")))
}

fn seq(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn sql_seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn user_row(r: &AnyRow) -> Result<User> {
    let name: String = r.try_get("name")?;
    Ok(User {
        id: r.try_get("id")?,
        name: UserName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
    })
}

fn token_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        device: r.try_get("device")?,
        prefix: r.try_get("prefix")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

fn key_row(r: &AnyRow) -> Result<FeedKey> {
    Ok(FeedKey {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        user: r.try_get("user_name")?,
        feed_path: r.try_get("feed_path")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        derived: r.try_get::<Option<i64>, _>("self_generation")?.is_some(),
    })
}

fn collection_row(r: &AnyRow) -> Result<Collection> {
    Ok(Collection {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
    })
}

fn item_row(r: &AnyRow) -> Result<ItemRecord> {
    let doc: String = r.try_get("document")?;
    Ok(ItemRecord {
        seq: seq(r.try_get("seq")?),
        changed_at: Timestamp::from_unix(r.try_get("changed_at")?),
        item: serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("item document: {e}")))?,
    })
}

fn change_row(r: &AnyRow) -> Result<ChangeRecord> {
    let version: String = r.try_get("version")?;
    let kind: String = r.try_get("kind")?;
    Ok(ChangeRecord {
        seq: seq(r.try_get("seq")?),
        collection: r.try_get("collection")?,
        sync_id: r.try_get("sync_id")?,
        endpoint: r.try_get("endpoint")?,
        kind: ChangeKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
        at: Timestamp::from_unix(r.try_get("at")?),
        version: serde_json::from_str(&version).map_err(|e| StoreError::Corrupt(format!("change version: {e}")))?,
    })
}

macro_rules! key_select {
    ($where:literal) => {
        concat!(
            "SELECT k.id, k.user_id, u.name AS user_name, k.feed_path, k.created_at, k.revoked_at, k.self_generation ",
            "FROM feed_keys k JOIN users u ON u.id = k.user_id ",
            $where
        )
    };
}

#[async_trait]
impl Store for SqlStore {
    async fn release_claims(&self) -> Result<()> {
        sqlx::query("UPDATE websub_subscriptions SET claimed_until = 0 WHERE claimed_until > 0")
            .execute(&self.writer)
            .await?;
        sqlx::query("UPDATE websub_requests SET claimed_until = 0 WHERE claimed_until > 0")
            .execute(&self.writer)
            .await?;
        for table in ["websub_topics", "follows"] {
            let sql = format!("UPDATE {table} SET claimed_until = 0 WHERE claimed_until > 0");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.writer).await?;
        }
        Ok(())
    }
}

// After the macros above: `macro_rules!` are seen only by the modules declared after them.
mod accounts;
mod blobs;
mod follows;
mod items;
mod websub;
