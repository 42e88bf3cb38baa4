//! The agent's local index (`DIR/.feedmesh/index.db`, SQLite): for every item, where it is on
//! disk, the content hash and size and modification time last seen there, the FeedSync item
//! as last merged, and whether it has local changes the hub has not taken yet. A restart
//! neither re-uploads nor re-downloads anything: unchanged files are recognised by size and
//! modification time. This is the agent's own store, apart from the hub's `store/`.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::OptionalExtension;

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

/// What the index last saw of a file on disk, without the item (what a scan compares).
pub struct Stat {
    pub sync_id: String,
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub seen_ns: i64,
}

pub struct Index {
    db: std::sync::Mutex<rusqlite::Connection>,
    /// The `conflicts` table, once read.
    copies: std::sync::Mutex<Option<std::collections::BTreeMap<String, String>>>,
}

const COLUMNS: &str = "sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty";

/// The index is read and written in place, on the agent's thread: its statements take
/// microseconds, less than handing each to another thread would. The methods stay `async`
/// so callers need not care.
impl Index {
    pub async fn open(state_dir: &Path) -> anyhow::Result<Index> {
        std::fs::create_dir_all(state_dir)?;
        let db = rusqlite::Connection::open(state_dir.join("index.db"))?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        for s in SCHEMA {
            db.execute(s, [])?;
        }
        Ok(Index {
            db: std::sync::Mutex::new(db),
            copies: std::sync::Mutex::new(None),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn select(&self, filter: &str, params: impl rusqlite::Params) -> anyhow::Result<Vec<Row>> {
        let db = self.conn();
        let mut stmt = db.prepare_cached(&format!("SELECT {COLUMNS} FROM items {filter}"))?;
        let rows = stmt.query_map(params, raw)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(row).collect()
    }

    pub async fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        let db = self.conn();
        let mut stmt = db.prepare_cached("SELECT value FROM meta WHERE key = ?")?;
        Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    pub async fn rows(&self) -> anyhow::Result<Vec<Row>> {
        self.select("", [])
    }

    /// Rows changed here and not yet taken by the hub.
    pub async fn dirty(&self) -> anyhow::Result<Vec<Row>> {
        self.select("WHERE dirty", [])
    }

    pub async fn row(&self, sync_id: &str) -> anyhow::Result<Option<Row>> {
        Ok(self.select("WHERE sync_id = ?", [sync_id])?.pop())
    }

    /// The rows of several items at once (those the index has).
    pub async fn rows_of(&self, ids: &[&str]) -> anyhow::Result<Vec<Row>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            out.extend(self.select(
                &format!("WHERE sync_id IN ({marks})"),
                rusqlite::params_from_iter(chunk.iter()),
            )?);
        }
        Ok(out)
    }

    /// Every file the index placed on disk, as last seen there.
    pub async fn stats(&self) -> anyhow::Result<Vec<Stat>> {
        let db = self.conn();
        let mut stmt =
            db.prepare_cached("SELECT sync_id, path, size, mtime_ns, ino, seen_ns FROM items WHERE path IS NOT NULL")?;
        let rows = stmt.query_map([], |r| {
            Ok(Stat {
                sync_id: r.get(0)?,
                path: r.get(1)?,
                size: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                mtime_ns: r.get(3)?,
                ino: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                seen_ns: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The content each of these items has on disk, for those that have a file (no item is
    /// parsed: a pulled page asks this of every item).
    pub async fn on_disk(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, String>> {
        let db = self.conn();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut stmt = db.prepare_cached(&format!(
                "SELECT sync_id, sha256 FROM items WHERE sha256 IS NOT NULL AND sync_id IN ({marks})"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in rows {
                let (id, sha): (String, String) = row?;
                out.insert(id, sha);
            }
        }
        Ok(out)
    }

    /// The item whose file is at `path`, if any.
    pub async fn row_at(&self, path: &str) -> anyhow::Result<Option<Row>> {
        Ok(self.select("WHERE path = ?", [path])?.pop())
    }

    /// Writes a row; another row holding the same path gives it up (it moved or was replaced).
    pub async fn put(&self, r: &Row) -> anyhow::Result<()> {
        upsert(&self.conn(), r)
    }

    /// Writes many rows in one transaction (a scan's findings).
    pub async fn put_many(&self, rows: &[Row]) -> anyhow::Result<()> {
        let mut db = self.conn();
        let tx = db.transaction()?;
        for r in rows {
            upsert(&tx, r)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Other items whose live current version names `path`.
    pub async fn claiming(&self, path: &str, except: &str) -> anyhow::Result<Vec<Row>> {
        self.select("WHERE claimed = ? AND sync_id <> ?", [path, except])
    }

    /// Items on disk somewhere other than the path they name (shown under a conflict-copy
    /// name because another item held their path).
    pub async fn displaced(&self) -> anyhow::Result<Vec<Row>> {
        self.select("WHERE claimed IS NOT NULL AND path IS NOT NULL AND path <> claimed", [])
    }

    /// Conflict copies on disk: (path, sync id of their item), in path order. Read from the
    /// database once, then kept in memory alongside it (the agent is its only writer).
    pub async fn conflicts(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if copies.is_none() {
            let db = self.conn();
            let mut stmt = db.prepare_cached("SELECT path, sync_id FROM conflicts")?;
            let all = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<_, _>>()?;
            *copies = Some(all);
        }
        Ok(copies.iter().flatten().map(|(p, id)| (p.clone(), id.clone())).collect())
    }

    /// Records a conflict copy; the item that wrote a name last owns it.
    pub async fn add_conflict(&self, path: &str, sync_id: &str) -> anyhow::Result<()> {
        self.conflicts().await?; // loaded, so the cache stays whole
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if copies.as_ref().and_then(|c| c.get(path)).map(String::as_str) == Some(sync_id) {
            return Ok(());
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO conflicts (path, sync_id) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET sync_id = excluded.sync_id",
            )?
            .execute([path, sync_id])?;
        if let Some(c) = copies.as_mut() {
            c.insert(path.to_string(), sync_id.to_string());
        }
        Ok(())
    }

    pub async fn drop_conflicts(&self, sync_id: &str) -> anyhow::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM conflicts WHERE sync_id = ?")?
            .execute([sync_id])?;
        if let Some(c) = self.copies.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.retain(|_, id| id != sync_id);
        }
        Ok(())
    }
}

fn upsert(db: &rusqlite::Connection, r: &Row) -> anyhow::Result<()> {
    db.prepare_cached(UPSERT)?.execute(rusqlite::params![
        r.sync_id,
        r.path,
        r.sha256,
        i64::try_from(r.size).unwrap_or(i64::MAX),
        r.mtime_ns,
        i64::try_from(r.ino).unwrap_or(i64::MAX),
        r.seen_ns,
        serde_json::to_string(&r.item)?,
        r.dirty,
        claimed(&r.item),
    ])?;
    Ok(())
}

/// A row's columns as read, before the item's JSON is parsed.
type RawRow = (String, Option<String>, Option<String>, i64, i64, i64, i64, String, bool);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

/// The path an item's live current version names, if it is a file.
pub fn claimed(item: &StoredItem) -> Option<&str> {
    shown(item)
        .and_then(|v| v.payload.media.as_ref())
        .and_then(|m| m.slug.as_deref())
}

fn row(r: RawRow) -> anyhow::Result<Row> {
    let (sync_id, path, sha256, size, mtime_ns, ino, seen_ns, item, dirty) = r;
    Ok(Row {
        sync_id,
        path,
        sha256,
        size: u64::try_from(size).unwrap_or(0),
        mtime_ns,
        ino: u64::try_from(ino).unwrap_or(0),
        seen_ns,
        item: serde_json::from_str(&item)?,
        dirty,
    })
}

/// The version of an item the folder shows: the current one, or, when a deletion won over
/// concurrent edits, the best of those edits (by FeedSync's winner rule).
pub fn shown(item: &StoredItem) -> Option<&crate::domain::feedsync::Version<crate::domain::entry::Entry>> {
    if !item.current.sync.deleted {
        return Some(&item.current);
    }
    item.conflicts
        .iter()
        .filter(|c| !c.sync.deleted && c.payload.media.is_some())
        .reduce(|best, c| {
            if crate::domain::feedsync::beats(&c.sync, &best.sync) {
                c
            } else {
                best
            }
        })
}
