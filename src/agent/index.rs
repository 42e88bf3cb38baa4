//! The agent's local index (`DIR/.feedmesh/index.db`, SQLite): for every item, where it is on
//! disk, the content hash and size and modification time last seen there, the FeedSync item
//! as last merged, and whether it has local changes the hub has not taken yet. A restart
//! neither re-uploads nor re-downloads anything: unchanged files are recognised by size and
//! modification time. This is the agent's own store, apart from the hub's `store/`.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::entry::StoredItem;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (
        sync_id  TEXT PRIMARY KEY,
        path     TEXT UNIQUE,
        sha256   TEXT,
        size     INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        -- The inode and when size and mtime were recorded (the racy-timestamp rule of sync.rs).
        ino      INTEGER NOT NULL DEFAULT 0,
        seen_ns  INTEGER NOT NULL DEFAULT 0,
        item     TEXT NOT NULL,
        dirty    INTEGER NOT NULL DEFAULT 0,
        -- The path the item's live current version names (several items may claim one).
        claimed  TEXT
    )",
    "CREATE INDEX IF NOT EXISTS items_by_claim ON items (claimed)",
    "CREATE TABLE IF NOT EXISTS conflicts (path TEXT PRIMARY KEY, sync_id TEXT NOT NULL)",
    // A row written with a path takes it from any other row (that one moved or was replaced),
    // so one statement writes a row.
    "CREATE TRIGGER IF NOT EXISTS items_take_path_on_insert BEFORE INSERT ON items WHEN NEW.path IS NOT NULL
     BEGIN UPDATE items SET path = NULL WHERE path = NEW.path AND sync_id <> NEW.sync_id; END",
    "CREATE TRIGGER IF NOT EXISTS items_take_path_on_update BEFORE UPDATE OF path ON items WHEN NEW.path IS NOT NULL
     BEGIN UPDATE items SET path = NULL WHERE path = NEW.path AND sync_id <> NEW.sync_id; END",
];

const UPSERT: &str = "INSERT INTO items (sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty, claimed) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (sync_id) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, size = excluded.size, \
     mtime_ns = excluded.mtime_ns, ino = excluded.ino, seen_ns = excluded.seen_ns, item = excluded.item, \
     dirty = excluded.dirty, claimed = excluded.claimed";

/// One item as the agent knows it.
#[derive(Clone, Debug)]
pub struct Row {
    pub sync_id: String,
    /// Where the current version is on disk; None when it is not (deleted, or not written).
    pub path: Option<String>,
    /// The content at `path` when it was last synced.
    pub sha256: Option<String>,
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    /// When `size`, `mtime_ns` and `ino` were recorded (Unix ns).
    pub seen_ns: i64,
    pub item: StoredItem,
    /// Changed here and not yet taken by the hub.
    pub dirty: bool,
}

pub struct Index {
    db: SqlitePool,
    /// The `conflicts` table, once read.
    copies: std::sync::Mutex<Option<std::collections::BTreeMap<String, String>>>,
}

impl Index {
    pub async fn open(state_dir: &Path) -> anyhow::Result<Index> {
        std::fs::create_dir_all(state_dir)?;
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", state_dir.join("index.db").display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let db = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
        for s in SCHEMA {
            sqlx::query(sqlx::AssertSqlSafe(*s)).execute(&db).await?;
        }
        Ok(Index {
            db,
            copies: std::sync::Mutex::new(None),
        })
    }

    pub async fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.db)
            .await?)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    pub async fn rows(&self) -> anyhow::Result<Vec<Row>> {
        let rows = sqlx::query("SELECT sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty FROM items")
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(row).collect()
    }

    pub async fn row(&self, sync_id: &str) -> anyhow::Result<Option<Row>> {
        let r = sqlx::query(
            "SELECT sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty FROM items WHERE sync_id = ?",
        )
        .bind(sync_id)
        .fetch_optional(&self.db)
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// The item whose file is at `path`, if any.
    pub async fn row_at(&self, path: &str) -> anyhow::Result<Option<Row>> {
        let r = sqlx::query(
            "SELECT sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty FROM items WHERE path = ?",
        )
        .bind(path)
        .fetch_optional(&self.db)
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// Writes a row; another row holding the same path gives it up (it moved or was replaced).
    pub async fn put(&self, r: &Row) -> anyhow::Result<()> {
        upsert(r)?.execute(&self.db).await?;
        Ok(())
    }

    /// Writes many rows in one transaction (a scan's findings).
    pub async fn put_many(&self, rows: &[Row]) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        for r in rows {
            upsert(r)?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Other items whose live current version names `path`.
    pub async fn claiming(&self, path: &str, except: &str) -> anyhow::Result<Vec<Row>> {
        let rows = sqlx::query(
            "SELECT sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty FROM items WHERE claimed = ? AND sync_id <> ?",
        )
        .bind(path)
        .bind(except)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(row).collect()
    }

    /// Items on disk somewhere other than the path they name (shown under a conflict-copy
    /// name because another item held their path).
    pub async fn displaced(&self) -> anyhow::Result<Vec<Row>> {
        let rows = sqlx::query(
            "SELECT sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty FROM items \
             WHERE claimed IS NOT NULL AND path IS NOT NULL AND path <> claimed",
        )
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(row).collect()
    }

    /// Conflict copies on disk: (path, sync id of their item), in path order. Read from the
    /// database once, then kept in memory alongside it (the agent is its only writer).
    pub async fn conflicts(&self) -> anyhow::Result<Vec<(String, String)>> {
        if let Some(c) = self.copies.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(c.iter().map(|(p, id)| (p.clone(), id.clone())).collect());
        }
        let rows = sqlx::query("SELECT path, sync_id FROM conflicts ORDER BY path")
            .fetch_all(&self.db)
            .await?;
        let all: std::collections::BTreeMap<String, String> = rows
            .iter()
            .map(|r| Ok((r.try_get("path")?, r.try_get("sync_id")?)))
            .collect::<anyhow::Result<_>>()?;
        let list = all.iter().map(|(p, id)| (p.clone(), id.clone())).collect();
        *self.copies.lock().unwrap_or_else(|e| e.into_inner()) = Some(all);
        Ok(list)
    }

    /// Records a conflict copy; the item that wrote a name last owns it.
    pub async fn add_conflict(&self, path: &str, sync_id: &str) -> anyhow::Result<()> {
        self.conflicts().await?; // loaded, so the cache stays whole
        let known = self
            .copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|c| c.get(path).cloned());
        if known.as_deref() == Some(sync_id) {
            return Ok(());
        }
        sqlx::query("INSERT INTO conflicts (path, sync_id) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET sync_id = excluded.sync_id")
            .bind(path)
            .bind(sync_id)
            .execute(&self.db)
            .await?;
        if let Some(c) = self.copies.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.insert(path.to_string(), sync_id.to_string());
        }
        Ok(())
    }

    pub async fn drop_conflicts(&self, sync_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM conflicts WHERE sync_id = ?")
            .bind(sync_id)
            .execute(&self.db)
            .await?;
        if let Some(c) = self.copies.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.retain(|_, id| id != sync_id);
        }
        Ok(())
    }
}

fn upsert(r: &Row) -> anyhow::Result<sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    Ok(sqlx::query(UPSERT)
        .bind(r.sync_id.clone())
        .bind(r.path.clone())
        .bind(r.sha256.clone())
        .bind(i64::try_from(r.size).unwrap_or(i64::MAX))
        .bind(r.mtime_ns)
        .bind(i64::try_from(r.ino).unwrap_or(i64::MAX))
        .bind(r.seen_ns)
        .bind(serde_json::to_string(&r.item)?)
        .bind(r.dirty)
        .bind(claimed(&r.item).map(str::to_string)))
}

/// The path an item's live current version names, if it is a file.
pub fn claimed(item: &StoredItem) -> Option<&str> {
    super::sync::shown(item)
        .and_then(|v| v.payload.media.as_ref())
        .and_then(|m| m.slug.as_deref())
}

fn row(r: &sqlx::sqlite::SqliteRow) -> anyhow::Result<Row> {
    Ok(Row {
        sync_id: r.try_get("sync_id")?,
        path: r.try_get("path")?,
        sha256: r.try_get("sha256")?,
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        mtime_ns: r.try_get("mtime_ns")?,
        ino: u64::try_from(r.try_get::<i64, _>("ino")?).unwrap_or(0),
        seen_ns: r.try_get("seen_ns")?,
        item: serde_json::from_str(&r.try_get::<String, _>("item")?)?,
        dirty: r.try_get("dirty")?,
    })
}
