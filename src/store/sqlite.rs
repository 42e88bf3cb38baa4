//! SQLite backend: one file in WAL mode, two writer connections (item writes on a thread of
//! their own, group-committed; everything else through sqlx) and a small reader pool.
//! `synchronous=NORMAL` in WAL mode keeps every committed transaction across a process
//! crash (`kill -9`); only a power loss can take the last commits.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::sql::{Backend, SqlStore, spawn_sqlite_writer};
use crate::seal::Sealer;

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
                       PRAGMA foreign_keys = ON; PRAGMA cache_size = -8000; PRAGMA temp_store = MEMORY; \
                       PRAGMA journal_size_limit = 67108864;";
/// The writer checkpoints (and so restarts the WAL) only every 10,000 pages written, and
/// finds most of that work done: a background task checkpoints passively from a reader
/// connection in between (`sql::checkpoints`), so commits seldom wait for the file's sync.
const WRITER_PRAGMAS: &str = "PRAGMA wal_autocheckpoint = 10000;";

pub async fn open(path: &str, sealer: Arc<Sealer>) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let url = format!("sqlite://{path}?mode=rwc");
    let options = AnyConnectOptions::from_str(&url)?;
    let pool = |max: u32, writer: bool| {
        AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(PRAGMAS).await?;
                    if writer {
                        conn.execute(WRITER_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
    };
    let writer = pool(1, true)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open SQLite database {path}: {e}"))?;
    sqlx::migrate!("migrations/sqlite").run(&writer).await?;
    // Statistics for the planner, gathered where they are missing or stale (cheap, bounded);
    // the checkpoint task refreshes them hourly while the hub runs.
    writer.execute("PRAGMA optimize = 0x10002").await?;
    let readers = pool(4, false).await?;
    let open_writer = || -> anyhow::Result<_> {
        let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        db.execute_batch(PRAGMAS)?;
        db.execute_batch(WRITER_PRAGMAS)?;
        Ok(spawn_sqlite_writer(db)?)
    };
    let batcher = open_writer().map_err(|e| anyhow::anyhow!("cannot open SQLite database {path} for writing: {e}"))?;
    Ok(SqlStore::new(Backend::Sqlite, writer, readers, Some(batcher), sealer))
}
