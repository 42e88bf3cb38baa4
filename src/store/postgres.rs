//! PostgreSQL backend: one pool shared by reads and writes; several hub processes may share
//! one database (a user's writes serialise on the user's row).

use std::time::Duration;

use sqlx::any::AnyPoolOptions;

use super::sql::{Backend, SqlStore};

pub async fn open(url: &str) -> anyhow::Result<SqlStore> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(SqlStore::new(Backend::Postgres, pool.clone(), pool))
}
