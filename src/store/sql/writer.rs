//! Item writes: on SQLite one task commits them in batches (group commit), each write a
//! compare-and-swap on the item's sequence number, its change recorded in the same
//! transaction; on PostgreSQL each write is its own transaction.

use super::*;
use crate::store::{ActivityRow, ChangeKind, Result, StoreError};
use sqlx::AnyPool;
use sqlx::Connection;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// One item write, owned, waiting for the group commit.
pub(super) struct Job {
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

pub(super) const BATCH: usize = 512;

pub(super) const LINGER_TURNS: usize = 4;

/// SQLite group commit: every item write waiting when a transaction starts joins it, so one
/// commit acknowledges many writes. A write is answered only after its commit.
pub(super) async fn group_commit(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
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
pub(super) async fn write_batch(pool: &AnyPool, jobs: &[Job]) -> Result<Vec<Result<u64>>> {
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
            "INSERT INTO changes (user_id, seq, collection_id, sync_id, endpoint_id, kind, at, version, verb, object_type) ",
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
                .push_bind(job.version.clone())
                .push_bind(job.activity.verb.clone())
                .push_bind(job.activity.object_type.clone());
        });
        q.build().execute(&mut *tx).await?;
        let indexed: Vec<(i64, i64, &ActivityRow)> = done
            .iter()
            .map(|&i| (jobs[i].user_id, seqs[i].unwrap_or_default(), &jobs[i].activity))
            .collect();
        super::people::index_activities(&mut tx, Backend::Sqlite, &indexed).await?;
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
