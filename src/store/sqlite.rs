//! SQLite backend: one file in WAL mode, a single writer connection and a small reader pool.
//! `synchronous=NORMAL` in WAL mode keeps every committed transaction across a process
//! crash (`kill -9`); only a power loss can take the last commits.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::sql::{Backend, SqlStore};
use crate::seal::Sealer;

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
                       PRAGMA foreign_keys = ON; PRAGMA cache_size = -8000; PRAGMA temp_store = MEMORY;";

pub async fn open(path: &str, sealer: Arc<Sealer>) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let url = format!("sqlite://{path}?mode=rwc");
    let options = AnyConnectOptions::from_str(&url)?;
    let pool = |max: u32| {
        AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
    };
    let writer = pool(1)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open SQLite database {path}: {e}"))?;
    sqlx::migrate!("migrations/sqlite").run(&writer).await?;
    let readers = pool(4).await?;
    Ok(SqlStore::new(Backend::Sqlite, writer, readers, sealer))
}
