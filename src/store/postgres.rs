//! PostgreSQL backend: one pool shared by reads and writes; several hub processes may share
//! one database (a user's writes serialise on the user's row).

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;

use super::sql::{Backend, CHANGES_CHANNEL, SqlStore};
use crate::seal::Sealer;

pub async fn open(url: &str, sealer: Arc<Sealer>) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    let mut listener = sqlx::postgres::PgListener::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot LISTEN on PostgreSQL: {e}"))?;
    listener.listen(CHANGES_CHANNEL).await?;
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        // Ends when the store (every receiver) is gone; PgListener reconnects by itself.
        while !tx.is_closed() {
            match listener.recv().await {
                Ok(_) => tx.send_modify(|n| *n += 1),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(SqlStore::new(Backend::Postgres, pool.clone(), pool, None, sealer).with_notifications(rx))
}
