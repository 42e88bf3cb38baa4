//! Connectors: each user's connections to outside services, their sealed secrets, cursors
//! and run state. `SqlStore`'s implementation of `ConnectorStore`.

use super::*;

use async_trait::async_trait;

use crate::store::{ConnectorRow, ConnectorRun, ConnectorState, ConnectorStore};
use crate::store::{Result, StoreError};

impl SqlStore {
    fn connector_row(&self, r: &AnyRow) -> Result<ConnectorRow> {
        let state: String = r.try_get("state")?;
        Ok(ConnectorRow {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            kind: r.try_get("kind")?,
            collection_id: r.try_get("collection_id")?,
            outbox_id: r.try_get("outbox_id")?,
            account: r.try_get("account")?,
            options: r.try_get("options")?,
            secrets: self.reveal(r.try_get("secrets_sealed")?),
            state: ConnectorState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("connector state {state}")))?,
            cursor: r.try_get("cursor")?,
            next_at: r.try_get("next_at")?,
            failures: r.try_get("failures")?,
            last_sync_at: r.try_get("last_sync_at")?,
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

#[async_trait]
impl ConnectorStore for SqlStore {
    async fn add_connector(
        &self,
        user_id: i64,
        kind: &str,
        collection_id: i64,
        outbox_id: Option<i64>,
        options: &str,
        secrets: Option<&str>,
        state: ConnectorState,
    ) -> Result<ConnectorRow> {
        let sql = format!(
            "INSERT INTO connectors (user_id, kind, collection_id, outbox_id, options, secrets_sealed, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CONNECTOR_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(kind)
            .bind(collection_id)
            .bind(outbox_id)
            .bind(options)
            .bind(self.seal_opt(secrets)?)
            .bind(state.as_str())
            .bind(crate::jobs::now_ms())
            .fetch_one(&self.writer)
            .await?;
        self.connector_row(&row)
    }

    async fn connectors(&self, user_id: i64) -> Result<Vec<ConnectorRow>> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE user_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(|r| self.connector_row(r)).collect()
    }

    async fn connector(&self, user_id: i64, id: i64) -> Result<ConnectorRow> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE user_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("connector"))?;
        self.connector_row(&row)
    }

    async fn remove_connector(&self, user_id: i64, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM connectors WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("connector"));
        }
        Ok(())
    }

    async fn set_connector_state(&self, user_id: i64, id: i64, state: ConnectorState, next_at: i64) -> Result<()> {
        let done = sqlx::query("UPDATE connectors SET state = $3, next_at = $4 WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .bind(state.as_str())
            .bind(next_at)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("connector"));
        }
        Ok(())
    }

    async fn connectors_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<ConnectorRow>> {
        let rows = self.claim(&CONNECTORS, now_ms, lease_ms, limit).await?;
        rows.iter().map(|r| self.connector_row(r)).collect()
    }

    async fn finish_connector_run(&self, c: &ConnectorRow, was: ConnectorState, run: &ConnectorRun) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET account = $3, state = $4, cursor = $5, next_at = $6, failures = $7, \
             last_sync_at = $8, last_error = $9, claimed_until = 0 WHERE user_id = $1 AND id = $2 AND state = $10",
        )
        .bind(c.user_id)
        .bind(c.id)
        .bind(&run.account)
        .bind(run.state.as_str())
        .bind(run.cursor.as_deref())
        .bind(run.next_at)
        .bind(run.failures)
        .bind(run.last_sync_at)
        .bind(run.last_error.as_deref())
        .bind(was.as_str())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        sqlx::query("UPDATE connectors SET claimed_until = 0 WHERE user_id = $1 AND id = $2")
            .bind(c.user_id)
            .bind(c.id)
            .execute(&self.writer)
            .await?;
        Ok(false)
    }
}
