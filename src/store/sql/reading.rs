//! What reader apps keep: `SqlStore`'s `ReadingStore`. Every query is keyed by one user.

use super::people::{CHANGE_COLUMNS, Sql};
use super::*;

use crate::store::{ChangeRecord, ReadMark, ReaderFeed, ReadingStore};

/// Most sequence numbers put in one statement (SQLite allows 32,766 parameters).
const CHUNK: usize = 500;

fn feed_row(r: &AnyRow) -> Result<ReaderFeed> {
    Ok(ReaderFeed {
        id: r.try_get("feed_id")?,
        kind: r.try_get("kind")?,
        key: r.try_get("key")?,
    })
}

#[async_trait]
impl ReadingStore for SqlStore {
    async fn reader_feeds(&self, user_id: i64, wanted: &[(String, String)]) -> Result<Vec<ReaderFeed>> {
        let list = |rows: Vec<AnyRow>| -> Result<Vec<ReaderFeed>> { rows.iter().map(feed_row).collect() };
        let select = "SELECT feed_id, kind, key FROM reader_feeds WHERE user_id = $1 ORDER BY feed_id";
        let known = list(sqlx::query(select).bind(user_id).fetch_all(&self.readers).await?)?;
        let have: std::collections::HashSet<(&str, &str)> =
            known.iter().map(|f| (f.kind.as_str(), f.key.as_str())).collect();
        let missing: Vec<&(String, String)> = wanted
            .iter()
            .filter(|(kind, key)| !have.contains(&(kind.as_str(), key.as_str())))
            .collect();
        if missing.is_empty() {
            return Ok(known);
        }
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            // Two first listings at once would take the same next id: one at a time per user
            // (SQLite has one writer already).
            sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) l")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        for (kind, key) in missing {
            sqlx::query(
                "INSERT INTO reader_feeds (user_id, feed_id, kind, key) \
                 SELECT $1, COALESCE(MAX(feed_id), 0) + 1, $2, $3 FROM reader_feeds WHERE user_id = $1 \
                 ON CONFLICT (user_id, kind, key) DO NOTHING",
            )
            .bind(user_id)
            .bind(kind.as_str())
            .bind(key.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let all = list(sqlx::query(select).bind(user_id).fetch_all(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(all)
    }

    async fn reader_feed(&self, user_id: i64, feed_id: i64) -> Result<Option<ReaderFeed>> {
        let row = sqlx::query("SELECT feed_id, kind, key FROM reader_feeds WHERE user_id = $1 AND feed_id = $2")
            .bind(user_id)
            .bind(feed_id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(feed_row).transpose()
    }

    async fn reader_feed_id(&self, user_id: i64, kind: &str, key: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT feed_id FROM reader_feeds WHERE user_id = $1 AND kind = $2 AND key = $3")
                .bind(user_id)
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn read_upto(&self, user_id: i64) -> Result<u64> {
        let upto: Option<i64> = sqlx::query_scalar("SELECT read_upto FROM reader_state WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(upto.map(seq).unwrap_or(0))
    }

    async fn mark_read_upto(&self, user_id: i64, upto: u64) -> Result<()> {
        let upto = sql_seq(upto);
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO reader_state (user_id, read_upto) VALUES ($1, $2) ON CONFLICT (user_id) \
             DO UPDATE SET read_upto = CASE WHEN excluded.read_upto > reader_state.read_upto \
             THEN excluded.read_upto ELSE reader_state.read_upto END",
        )
        .bind(user_id)
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE reader_marks SET read = NULL WHERE user_id = $1 AND seq <= $2 AND read IS NOT NULL")
            .bind(user_id)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM reader_marks WHERE user_id = $1 AND seq <= $2 AND read IS NULL AND starred = 0")
            .bind(user_id)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_marks(&self, user_id: i64, seqs: &[u64]) -> Result<Vec<(u64, ReadMark)>> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(CHUNK) {
            let mut q = Sql::new("SELECT seq, read, starred FROM reader_marks WHERE user_id = ");
            q.push_bind(user_id)
                .push(" AND seq IN (")
                .push_list(chunk.iter().map(|s| sql_seq(*s)))
                .push(")");
            for r in q.build().fetch_all(&self.readers).await? {
                let read: Option<i64> = r.try_get("read")?;
                let starred: i64 = r.try_get("starred")?;
                out.push((
                    seq(r.try_get("seq")?),
                    ReadMark {
                        read: read.map(|v| v != 0),
                        starred: starred != 0,
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn set_marks(&self, user_id: i64, seqs: &[u64], read: Option<bool>, starred: Option<bool>) -> Result<()> {
        if seqs.is_empty() || (read.is_none() && starred.is_none()) {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        let upto: Option<i64> = sqlx::query_scalar("SELECT read_upto FROM reader_state WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let upto = upto.unwrap_or(0);
        for &s in seqs {
            let s = sql_seq(s);
            // A read mark the watermark already says is no mark.
            let (set_read, set_star) = (read.is_some(), starred.is_some());
            let read = read.map(i64::from).filter(|r| !(*r == 1 && s <= upto));
            sqlx::query(
                "INSERT INTO reader_marks (user_id, seq, read, starred) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, seq) DO UPDATE SET \
                 read = CASE WHEN $5 = 1 THEN excluded.read ELSE reader_marks.read END, \
                 starred = CASE WHEN $6 = 1 THEN excluded.starred ELSE reader_marks.starred END",
            )
            .bind(user_id)
            .bind(s)
            .bind(read)
            .bind(i64::from(starred.unwrap_or(false)))
            .bind(i64::from(set_read))
            .bind(i64::from(set_star))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM reader_marks WHERE user_id = $1 AND read IS NULL AND starred = 0")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn starred(&self, user_id: i64, before: Option<u64>, limit: u32) -> Result<Vec<u64>> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM reader_marks WHERE user_id = $1 AND starred = 1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(before.map(sql_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(seq).collect())
    }

    async fn lowest_kept_unread(&self, user_id: i64) -> Result<Option<u64>> {
        let low: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM reader_marks WHERE user_id = $1 AND read = 0")
            .bind(user_id)
            .fetch_one(&self.readers)
            .await?;
        Ok(low.map(seq))
    }

    async fn changes_at(&self, user_id: i64, seqs: &[u64]) -> Result<Vec<ChangeRecord>> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(CHUNK) {
            let mut q = Sql::new(format!(
                "SELECT {CHANGE_COLUMNS} FROM changes c JOIN collections col ON col.id = c.collection_id \
                 LEFT JOIN endpoints e ON e.id = c.endpoint_id WHERE c.user_id = "
            ));
            q.push_bind(user_id)
                .push(" AND c.seq IN (")
                .push_list(chunk.iter().map(|s| sql_seq(*s)))
                .push(")");
            out.extend(self.fetch_changes(q, true).await?);
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.seq));
        out.dedup_by_key(|c| c.seq);
        Ok(out)
    }
}
