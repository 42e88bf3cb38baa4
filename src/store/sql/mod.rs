//! The SQL behind [`Store`], written once in the dialect SQLite and PostgreSQL share
//! (`$N` parameters, `RETURNING`, 64-bit integers, text documents) over sqlx's `Any` driver.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;

use super::{Follow, FollowState};
use super::{Result, Store, StoreError};
use crate::domain::Timestamp;
use crate::seal::Sealer;
use queues::*;
use rows::*;
pub use writer::Job;
pub use writer::spawn_sqlite_writer;
use writer::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    backend: Backend,
    /// PostgreSQL: ticks on every NOTIFY of a committed item write, from any process.
    notified: Option<tokio::sync::watch::Receiver<u64>>,
    /// SQLite: one connection for every write but item writes (which go through `batcher`,
    /// the only other writer). PostgreSQL: the pool.
    writer: AnyPool,
    readers: AnyPool,
    /// SQLite only: item writes go through one thread that commits them in batches.
    batcher: Option<mpsc::Sender<Job>>,
    /// Seals the secrets kept for later use (WebSub and follow secrets, server secrets).
    sealer: Arc<Sealer>,
    /// SQLite: checkpoints the WAL beside the writer (see `checkpoints`); stopped on drop.
    _checkpoints: Option<AbortOnDrop>,
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SQLite: copies the WAL into the database file passively from a reader connection
/// (readers and the writer carry on meanwhile), so the writer's own checkpoint, seldom
/// (`wal_autocheckpoint`, see `sqlite.rs`), finds little left to do before it restarts the WAL.
async fn checkpoints(readers: AnyPool) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(250);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&readers).await {
            tracing::debug!(error = %e, "WAL checkpoint");
        }
        // Hourly: the planner's statistics, as tables grow (cheap, bounded work).
        if n % (3600 * 4) == 0
            && let Err(e) = sqlx::query("PRAGMA optimize").execute(&readers).await
        {
            tracing::debug!(error = %e, "PRAGMA optimize");
        }
    }
}

impl SqlStore {
    /// `batcher`: SQLite's group-commit writer (see `writer::spawn_sqlite_writer`), which
    /// every item write goes through; PostgreSQL has none.
    pub fn new(
        backend: Backend,
        writer: AnyPool,
        readers: AnyPool,
        batcher: Option<mpsc::Sender<Job>>,
        sealer: Arc<Sealer>,
    ) -> Self {
        let _checkpoints =
            (backend == Backend::Sqlite).then(|| AbortOnDrop(tokio::spawn(checkpoints(readers.clone()))));
        SqlStore {
            backend,
            notified: None,
            writer,
            readers,
            batcher,
            sealer,
            _checkpoints,
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
            connector_id: r.try_get("connector_id")?,
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
        for table in ["websub_topics", "follows", "connectors"] {
            let sql = format!("UPDATE {table} SET claimed_until = 0 WHERE claimed_until > 0");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.writer).await?;
        }
        // A dead process's listeners (a wait asked for, without an owner, stays).
        sqlx::query(
            "UPDATE connectors SET listener_owner = NULL, listener_until = 0, listening_at = NULL \
             WHERE listener_owner IS NOT NULL",
        )
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

// After the macros above: `macro_rules!` are seen only by the modules declared after them.
mod accounts;
mod blobs;
mod connectors;
mod follows;
mod items;
mod logins;
mod people;
mod queues;
mod reading;
mod rows;
mod websub;
mod writer;
