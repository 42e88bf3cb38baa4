//! The SQL behind [`Store`], written once in the dialect SQLite and PostgreSQL share
//! (`$N` parameters, `RETURNING`, 64-bit integers, text documents) over sqlx's `Any` driver.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Acquire, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    ChangeKind, ChangeRecord, Collection, Endpoint, FeedKey, ItemRecord, ItemWrite, Principal, Result, Store,
    StoreError, TokenInfo, User,
};
use super::{DueDelivery, Follow, FollowState, HubRequest, Subscription, TopicContent, TopicFetch};
use crate::domain::entry::StoredItem;
use crate::domain::{CollectionName, DeviceName, Timestamp, UserName};
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
    async fn create_user(&self, name: &UserName) -> Result<User> {
        let row = sqlx::query("INSERT INTO users (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at")
            .bind(name.as_str())
            .bind(now())
            .fetch_one(&self.writer)
            .await
            .map_err(insert_err("user"))?;
        user_row(&row)
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM users ORDER BY name")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(user_row).collect()
    }

    async fn user(&self, name: &str) -> Result<User> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_row(&row)
    }

    async fn user_by_id(&self, id: i64) -> Result<User> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_row(&row)
    }

    async fn add_token(
        &self,
        user: &UserName,
        device: &DeviceName,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenInfo> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = match self.backend {
            // Take the write lock now, so the busy timeout applies (a read upgraded later fails at once).
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        sqlx::query(
            "INSERT INTO endpoints (user_id, name, kind, created_at) VALUES ($1, $2, 'device', $3) \
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(user_id)
        .bind(device.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let endpoint_id: i64 = sqlx::query_scalar("SELECT id FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(device.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (endpoint_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(endpoint_id)
        .bind(token_hash)
        .bind(prefix)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(insert_err("token"))?;
        tx.commit().await?;
        Ok(TokenInfo {
            id,
            device: device.to_string(),
            prefix: prefix.to_string(),
            created_at: Timestamp::now(),
            revoked: false,
        })
    }

    async fn tokens(&self, user: &UserName) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT t.id, e.name AS device, t.prefix, t.created_at, t.revoked_at FROM tokens t \
             JOIN endpoints e ON e.id = t.endpoint_id JOIN users u ON u.id = e.user_id \
             WHERE u.name = $1 ORDER BY t.id",
        )
        .bind(user.as_str())
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_token(&self, user: &UserName, token_id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND endpoint_id IN \
             (SELECT e.id FROM endpoints e JOIN users u ON u.id = e.user_id WHERE u.name = $3)",
        )
        .bind(now())
        .bind(token_id)
        .bind(user.as_str())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("live token"));
        }
        Ok(())
    }

    async fn principal(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT u.id AS user_id, u.name AS user_name, e.id AS endpoint_id, e.name AS endpoint_name \
             FROM tokens t JOIN endpoints e ON e.id = t.endpoint_id JOIN users u ON u.id = e.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            Ok(Principal {
                token_hash: token_hash.to_string(),
                user_id: r.try_get("user_id")?,
                user: r.try_get("user_name")?,
                endpoint_id: r.try_get("endpoint_id")?,
                endpoint: r.try_get("endpoint_name")?,
            })
        })
        .transpose()
    }

    async fn endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint> {
        let row = sqlx::query("SELECT id, name FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("endpoint"))?;
        Ok(Endpoint {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
        })
    }

    async fn add_feed_key(&self, user_id: i64, feed_path: &str, key_hash: &str) -> Result<FeedKey> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO feed_keys (user_id, feed_path, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(feed_path)
        .bind(key_hash)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(insert_err("feed key"))?;
        let row = sqlx::query(key_select!("WHERE k.id = $1"))
            .bind(id)
            .fetch_one(&self.writer)
            .await?;
        key_row(&row)
    }

    async fn feed_keys(&self, user_id: i64) -> Result<Vec<FeedKey>> {
        let rows = sqlx::query(key_select!("WHERE k.user_id = $1 ORDER BY k.id"))
            .bind(user_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(key_row).collect()
    }

    async fn self_key(
        &self,
        user_id: i64,
        feed_path: &str,
        hash_of: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<i64> {
        let last = sqlx::query(
            "SELECT self_generation, revoked_at FROM feed_keys WHERE user_id = $1 AND feed_path = $2 \
             AND self_generation IS NOT NULL ORDER BY self_generation DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(feed_path)
        .fetch_optional(&self.writer)
        .await?;
        let generation = match last {
            Some(r) if r.try_get::<Option<i64>, _>("revoked_at")?.is_none() => return Ok(r.try_get("self_generation")?),
            Some(r) => r.try_get::<i64, _>("self_generation")? + 1,
            None => 1,
        };
        // Derived keys are the same in every process: a concurrent insert of this
        // generation inserted the same hash, which is as good.
        sqlx::query(
            "INSERT INTO feed_keys (user_id, feed_path, key_hash, created_at, self_generation) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(user_id)
        .bind(feed_path)
        .bind(hash_of(generation))
        .bind(now())
        .bind(generation)
        .execute(&self.writer)
        .await?;
        Ok(generation)
    }

    async fn server_secret(&self, name: &str, fresh: &str) -> Result<String> {
        let stored = self.server_secret_raw(name, &self.seal(fresh)?).await?;
        Ok(self.sealer.reveal(stored))
    }

    async fn revoke_feed_key(&self, user_id: i64, key_id: i64) -> Result<()> {
        let done =
            sqlx::query("UPDATE feed_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now())
                .bind(key_id)
                .bind(user_id)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("live feed key"));
        }
        Ok(())
    }

    async fn feed_key(&self, key_hash: &str) -> Result<Option<FeedKey>> {
        let row = sqlx::query(key_select!("WHERE k.key_hash = $1 AND k.revoked_at IS NULL"))
            .bind(key_hash)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn create_collection(&self, user_id: i64, name: &CollectionName) -> Result<Collection> {
        let row = sqlx::query(
            "INSERT INTO collections (user_id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, user_id, name, created_at",
        )
        .bind(user_id)
        .bind(name.as_str())
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(insert_err("collection"))?;
        collection_row(&row)
    }

    async fn collections(&self, user_id: i64) -> Result<Vec<Collection>> {
        let rows =
            sqlx::query("SELECT id, user_id, name, created_at FROM collections WHERE user_id = $1 ORDER BY name")
                .bind(user_id)
                .fetch_all(&self.readers)
                .await?;
        rows.iter().map(collection_row).collect()
    }

    async fn collection(&self, user_id: i64, name: &str) -> Result<Collection> {
        let row = sqlx::query("SELECT id, user_id, name, created_at FROM collections WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("collection"))?;
        collection_row(&row)
    }

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
        insert_change(&mut tx, w.user_id, &row, w.endpoint_id, w.kind, &version).await?;
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
            "SELECT c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version \
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
        Ok(rows
            .into_iter()
            .map(|p| {
                let mut d = DueDelivery::from(p);
                d.secret = self.reveal(d.secret);
                d.topic = self.sealer.reveal(d.topic);
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

    async fn add_follow(
        &self,
        user_id: i64,
        collection_id: i64,
        url: &str,
        callback_token: &str,
        secret: &str,
    ) -> Result<Follow> {
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
        let sql = format!("SELECT {FOLLOW_COLUMNS} FROM follows WHERE user_id = $1 ORDER BY id");
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
        let sql = format!("DELETE FROM follows WHERE user_id = $1 AND id = $2 RETURNING {FOLLOW_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or(StoreError::NotFound("follow"))?;
        self.follow_row(&row)
    }

    async fn follows_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<Follow>> {
        let rows = self.claim(&FOLLOWS, now_ms, lease_ms, limit).await?;
        rows.iter().map(|r| self.follow_row(r)).collect()
    }

    async fn update_follow(&self, f: &Follow) -> Result<()> {
        sqlx::query(
            "UPDATE follows SET topic = $2, hub = $3, state = $4, lease_expires_at = $5, next_at = $6, etag = $7, \
             last_modified = $8, last_error = $9, claimed_until = 0 WHERE id = $1",
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
        .execute(&self.writer)
        .await?;
        Ok(())
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
            "UPDATE follows SET state = 'polling', lease_expires_at = 0, next_at = $2, last_error = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(next_at)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn feed_endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint> {
        sqlx::query(
            "INSERT INTO endpoints (user_id, name, kind, created_at) VALUES ($1, $2, 'feed', $3) \
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(user_id)
        .bind(name)
        .bind(now())
        .execute(&self.writer)
        .await?;
        let row = sqlx::query("SELECT id, name FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_one(&self.writer)
            .await?;
        Ok(Endpoint {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
        })
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

    async fn changes_after(
        &self,
        user_id: i64,
        endpoint_id: Option<i64>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>> {
        let rows = sqlx::query(
            "SELECT c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version \
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
