//! Item writes: on SQLite one thread commits them in batches (group commit, through
//! rusqlite), each write a compare-and-swap on the item's sequence number, its change and
//! activity index recorded in the same transaction; on PostgreSQL each write is its own
//! transaction (sqlx).

use super::*;
use crate::store::{ActivityRow, ChangeKind, Result, StoreError};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// One item write, owned, waiting for the group commit.
pub struct Job {
    pub(super) user_id: i64,
    pub(super) collection_id: i64,
    pub(super) sync_id: String,
    pub(super) expected_seq: Option<u64>,
    pub(super) deleted: bool,
    pub(super) conflicts: i64,
    pub(super) document: String,
    pub(super) version: String,
    pub(super) kind: ChangeKind,
    pub(super) endpoint_id: Option<i64>,
    pub(super) at: i64,
    pub(super) live_token: Option<String>,
    pub(super) activity: ActivityRow,
    pub(super) reply: oneshot::Sender<Result<u64>>,
}

/// The most writes one transaction takes.
pub(super) const BATCH: usize = 512;

/// Starts SQLite's writer: a thread of its own with a connection of its own, which takes
/// every write waiting and commits them in one transaction (group commit). The whole batch
/// is one hand-off between the async side and the thread, not one per statement; each
/// write runs under a savepoint, so a write that fails fails alone. A write is answered
/// only after its commit. The thread ends when the store (every sender) is dropped.
pub fn spawn_sqlite_writer(db: rusqlite::Connection) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, mut rx) = mpsc::channel::<Job>(4 * BATCH);
    std::thread::Builder::new()
        .name("feedmesh-writer".into())
        .spawn(move || {
            let mut db = db;
            while let Some(first) = rx.blocking_recv() {
                let mut jobs = vec![first];
                while jobs.len() < BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                match write_batch(&mut db, &jobs) {
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
        })?;
    Ok(tx)
}

const TOKEN_LIVE: &str = "SELECT 1 FROM tokens WHERE token_hash = ?1 AND revoked_at IS NULL";
const USER_HEAD: &str = "SELECT head_seq FROM users WHERE id = ?1";
const SET_HEAD: &str = "UPDATE users SET head_seq = ?1 WHERE id = ?2 AND head_seq < ?1";
const INSERT_ITEM: &str = "INSERT INTO items (collection_id, sync_id, seq, deleted, conflicts, document, changed_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (collection_id, sync_id) DO NOTHING";
const SWAP_ITEM: &str = "UPDATE items SET seq = ?1, deleted = ?2, conflicts = ?3, document = ?4, changed_at = ?5 \
     WHERE collection_id = ?6 AND sync_id = ?7 AND seq = ?8";
const INSERT_CHANGE: &str = "INSERT INTO changes \
     (user_id, seq, collection_id, sync_id, endpoint_id, kind, at, version, verb, object_type) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const INSERT_PERSON: &str = "INSERT INTO activity_people (user_id, identity, seq, role, name) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
const INSERT_WORDS: &str = "INSERT INTO activity_text (rowid, body) VALUES (?1, ?2)";

/// Writes a batch in one transaction. Each write takes the next sequence number of its
/// user when it succeeds (so a lost compare-and-swap leaves no gap); credentials are checked
/// at commit time, once per token.
fn write_batch(db: &mut rusqlite::Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Result<u64>>> {
    use rusqlite::OptionalExtension;
    let mut tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut live: HashMap<&str, bool> = HashMap::new();
    let mut heads: HashMap<i64, Option<i64>> = HashMap::new();
    let mut moved: HashMap<i64, i64> = HashMap::new();
    let mut words: Vec<(i64, &str)> = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(token) = job.live_token.as_deref() {
            let ok = match live.get(token) {
                Some(ok) => *ok,
                None => *live
                    .entry(token)
                    .or_insert(tx.prepare_cached(TOKEN_LIVE)?.exists([token])?),
            };
            if !ok {
                results.push(Err(StoreError::Revoked));
                continue;
            }
        }
        let head = match heads.get(&job.user_id) {
            Some(h) => *h,
            None => *heads.entry(job.user_id).or_insert(
                tx.prepare_cached(USER_HEAD)?
                    .query_row([job.user_id], |r| r.get::<_, i64>(0))
                    .optional()?,
            ),
        };
        let Some(head) = head else {
            results.push(Err(StoreError::NotFound("user")));
            continue;
        };
        let next = head + 1;
        let sp = tx.savepoint()?;
        match write_one(&sp, job, next) {
            Ok(true) => {
                sp.commit()?;
                if !job.activity.text.is_empty() {
                    words.push((super::people::fts_rowid(job.user_id, next), job.activity.text.as_str()));
                }
                heads.insert(job.user_id, Some(next));
                moved.insert(job.user_id, next);
                results.push(Ok(seq(next)));
            }
            Ok(false) => results.push(Err(StoreError::Conflict)),
            Err(e) => {
                tracing::warn!(error = %e, "an item write failed (the rest of its batch goes on)");
                results.push(Err(StoreError::Batch(e.to_string())));
            }
        }
    }
    // The words last, outside every savepoint: FTS5 turns what it holds into a new segment
    // at each savepoint, so once per batch instead of once per write.
    for (rowid, text) in words {
        tx.prepare_cached(INSERT_WORDS)?
            .execute(rusqlite::params![rowid, text])?;
    }
    for (user_id, head) in &moved {
        tx.prepare_cached(SET_HEAD)?.execute([*head, *user_id])?;
    }
    tx.commit()?;
    Ok(results)
}

/// One write under its savepoint: the item (inserted, or swapped if still at the expected
/// sequence number), its change and its activity's index rows but its words (which the
/// batch adds after the last savepoint). False: it lost its race.
fn write_one(db: &rusqlite::Connection, job: &Job, next: i64) -> rusqlite::Result<bool> {
    use rusqlite::params;
    let written = match job.expected_seq {
        None => db.prepare_cached(INSERT_ITEM)?.execute(params![
            job.collection_id,
            job.sync_id,
            next,
            i64::from(job.deleted),
            job.conflicts,
            job.document,
            job.at
        ])?,
        Some(expected) => db.prepare_cached(SWAP_ITEM)?.execute(params![
            next,
            i64::from(job.deleted),
            job.conflicts,
            job.document,
            job.at,
            job.collection_id,
            job.sync_id,
            sql_seq(expected)
        ])?,
    };
    if written == 0 {
        return Ok(false);
    }
    let a = &job.activity;
    db.prepare_cached(INSERT_CHANGE)?.execute(params![
        job.user_id,
        next,
        job.collection_id,
        job.sync_id,
        job.endpoint_id,
        job.kind.as_str(),
        job.at,
        job.version,
        a.verb,
        a.object_type
    ])?;
    for (identity, role, name) in &a.parties {
        db.prepare_cached(INSERT_PERSON)?
            .execute(params![job.user_id, identity, next, role, name])?;
    }
    if let Some(c) = &a.contact {
        for q in super::people::contact_statements(job.user_id, next, c) {
            q.run(db)?;
        }
    }
    Ok(true)
}

/// The item row a write puts down.
pub(super) struct ItemRow<'a> {
    pub(super) collection_id: i64,
    pub(super) sync_id: &'a str,
    /// None: insert; Some(seq): update only if the row is still at seq.
    pub(super) expected_seq: Option<u64>,
    pub(super) seq_new: i64,
    pub(super) deleted: bool,
    pub(super) conflicts: i64,
    pub(super) document: &'a str,
    pub(super) at: i64,
}

/// Returns the rows written: 0 when someone else wrote first.
pub(super) async fn write_item_row(conn: &mut sqlx::AnyConnection, r: &ItemRow<'_>) -> Result<u64> {
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

pub(super) async fn insert_change(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    r: &ItemRow<'_>,
    endpoint_id: Option<i64>,
    kind: ChangeKind,
    version: &str,
    activity: &ActivityRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO changes (user_id, seq, collection_id, sync_id, endpoint_id, kind, at, version, verb, object_type) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(user_id)
    .bind(r.seq_new)
    .bind(r.collection_id)
    .bind(r.sync_id)
    .bind(endpoint_id)
    .bind(kind.as_str())
    .bind(r.at)
    .bind(version)
    .bind(&activity.verb)
    .bind(&activity.object_type)
    .execute(&mut *conn)
    .await?;
    super::people::index_activities(conn, Backend::Postgres, &[(user_id, r.seq_new, activity)]).await?;
    Ok(())
}
