//! Connectors: each user's connections to outside services, their sealed secrets, cursors
//! and run state. `SqlStore`'s implementation of `ConnectorStore`.

use super::*;

use async_trait::async_trait;

use crate::store::{ConnectorPost, ConnectorRow, ConnectorRun, ConnectorState, ConnectorStore, OAuthClient, RouteRow};
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
            provider: r.try_get("provider")?,
            tokens: self.reveal(r.try_get("tokens_sealed")?),
            outbox_seq: r.try_get("outbox_seq")?,
            listener_owner: r.try_get("listener_owner")?,
            listener_until: r.try_get("listener_until")?,
            listening_at: r.try_get("listening_at")?,
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
        for sql in [
            "DELETE FROM connector_posts WHERE user_id = $1 AND connector_id = $2",
            "DELETE FROM route_copies WHERE user_id = $1 AND route_id IN \
             (SELECT id FROM routes WHERE user_id = $1 AND connector_id = $2)",
            "DELETE FROM routes WHERE user_id = $1 AND connector_id = $2",
        ] {
            sqlx::query(sql).bind(user_id).bind(id).execute(&self.writer).await?;
        }
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

    async fn set_connector_tokens(
        &self,
        user_id: i64,
        id: i64,
        provider: &str,
        tokens: Option<&str>,
        state: ConnectorState,
        next_at: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE connectors SET provider = $3, tokens_sealed = $4, state = $5, next_at = $6 \
             WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(id)
        .bind(provider)
        .bind(self.seal_opt(tokens)?)
        .bind(state.as_str())
        .bind(next_at)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("connector"));
        }
        Ok(())
    }

    async fn put_oauth_client(&self, user_id: i64, c: &OAuthClient) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_clients (user_id, provider, client_id, client_secret_sealed, authorize_url, token_url, \
             revoke_url, scope, created_at, registration_url, registered_redirect) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (user_id, provider) DO UPDATE SET client_id = excluded.client_id, \
             client_secret_sealed = excluded.client_secret_sealed, authorize_url = excluded.authorize_url, \
             token_url = excluded.token_url, revoke_url = excluded.revoke_url, scope = excluded.scope, \
             registration_url = excluded.registration_url, registered_redirect = excluded.registered_redirect",
        )
        .bind(user_id)
        .bind(&c.provider)
        .bind(&c.client_id)
        .bind(self.seal_opt(c.client_secret.as_deref())?)
        .bind(&c.authorize_url)
        .bind(&c.token_url)
        .bind(c.revoke_url.as_deref())
        .bind(&c.scope)
        .bind(crate::jobs::now_ms())
        .bind(c.registration_url.as_deref())
        .bind(c.registered_redirect.as_deref())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn oauth_client(&self, user_id: i64, provider: &str) -> Result<Option<OAuthClient>> {
        Ok(self
            .oauth_clients(user_id)
            .await?
            .into_iter()
            .find(|c| c.provider == provider))
    }

    async fn oauth_clients(&self, user_id: i64) -> Result<Vec<OAuthClient>> {
        let rows = sqlx::query(
            "SELECT provider, client_id, client_secret_sealed, authorize_url, token_url, revoke_url, scope, \
             registration_url, registered_redirect FROM oauth_clients WHERE user_id = $1 ORDER BY provider",
        )
        .bind(user_id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OAuthClient {
                    provider: r.try_get("provider")?,
                    client_id: r.try_get("client_id")?,
                    client_secret: self.reveal(r.try_get("client_secret_sealed")?),
                    authorize_url: r.try_get("authorize_url")?,
                    token_url: r.try_get("token_url")?,
                    revoke_url: r.try_get("revoke_url")?,
                    scope: r.try_get("scope")?,
                    registration_url: r.try_get("registration_url")?,
                    registered_redirect: r.try_get("registered_redirect")?,
                })
            })
            .collect()
    }

    async fn remove_oauth_client(&self, user_id: i64, provider: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM oauth_clients WHERE user_id = $1 AND provider = $2")
            .bind(user_id)
            .bind(provider)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("OAuth client"));
        }
        Ok(())
    }

    async fn add_oauth_pending(
        &self,
        user_id: i64,
        state_hash: &str,
        connector_id: i64,
        verifier: &str,
        expires_at: i64,
    ) -> Result<()> {
        // Waiting authorisations past their time go as new ones come.
        sqlx::query("DELETE FROM oauth_pending WHERE user_id = $1 AND expires_at < $2")
            .bind(user_id)
            .bind(crate::jobs::now_ms())
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_pending (user_id, state_hash, connector_id, verifier_sealed, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(state_hash)
        .bind(connector_id)
        .bind(self.seal(verifier)?)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn take_oauth_pending(&self, user_id: i64, state_hash: &str) -> Result<Option<(i64, String, i64)>> {
        let row = sqlx::query(
            "DELETE FROM oauth_pending WHERE user_id = $1 AND state_hash = $2 \
             RETURNING connector_id, verifier_sealed, expires_at",
        )
        .bind(user_id)
        .bind(state_hash)
        .fetch_optional(&self.writer)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                r.try_get("connector_id")?,
                self.sealer.reveal(r.try_get::<String, _>("verifier_sealed")?),
                r.try_get("expires_at")?,
            ))),
        }
    }

    async fn connector_post(&self, user_id: i64, connector_id: i64, sync_id: &str) -> Result<Option<ConnectorPost>> {
        let row = sqlx::query(
            "SELECT remote_id, remote_url, sent_seq, pulled_id FROM connector_posts \
             WHERE user_id = $1 AND connector_id = $2 AND sync_id = $3",
        )
        .bind(user_id)
        .bind(connector_id)
        .bind(sync_id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| {
            Ok(ConnectorPost {
                remote_id: r.try_get("remote_id")?,
                remote_url: r.try_get("remote_url")?,
                sent_seq: r.try_get("sent_seq")?,
                pulled_id: r.try_get("pulled_id")?,
            })
        })
        .transpose()
    }

    async fn put_connector_post(
        &self,
        user_id: i64,
        connector_id: i64,
        sync_id: &str,
        p: &ConnectorPost,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO connector_posts (user_id, connector_id, sync_id, remote_id, remote_url, sent_seq, pulled_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, connector_id, sync_id) DO UPDATE SET \
             remote_id = excluded.remote_id, remote_url = excluded.remote_url, sent_seq = excluded.sent_seq, \
             pulled_id = excluded.pulled_id",
        )
        .bind(user_id)
        .bind(connector_id)
        .bind(sync_id)
        .bind(&p.remote_id)
        .bind(p.remote_url.as_deref())
        .bind(p.sent_seq)
        .bind(p.pulled_id.as_deref())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn remove_connector_post(&self, user_id: i64, connector_id: i64, sync_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM connector_posts WHERE user_id = $1 AND connector_id = $2 AND sync_id = $3")
            .bind(user_id)
            .bind(connector_id)
            .bind(sync_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_outbox_seq(&self, user_id: i64, connector_id: i64, seq: i64) -> Result<()> {
        sqlx::query("UPDATE connectors SET outbox_seq = $3 WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(connector_id)
            .bind(seq)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn wake_outbox_connectors(&self, now_ms: i64) -> Result<u64> {
        // Each connector with its own outbox (the same user's rows: items are keyed by the
        // collection, which belongs to the connector's user). Only read, unless one is behind:
        // this runs after every burst of writes.
        // A route into a connector is behind when its collection has items it has not read.
        const BEHIND: &str = "outbox_id IS NOT NULL AND state IN ('active', 'failing') AND next_at > $1 \
             AND (EXISTS (SELECT 1 FROM items i WHERE i.collection_id = connectors.outbox_id \
             AND i.seq > connectors.outbox_seq) \
             OR EXISTS (SELECT 1 FROM routes r JOIN items i ON i.collection_id = r.from_collection_id \
             WHERE r.user_id = connectors.user_id AND r.connector_id = connectors.id AND i.seq > r.seq))";
        let any: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM connectors WHERE {BEHIND} LIMIT 1"
        )))
        .bind(now_ms)
        .fetch_optional(&self.readers)
        .await?;
        if any.is_none() {
            return Ok(0);
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE connectors SET next_at = $1 WHERE {BEHIND}"
        )))
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn connector_post_pulled(&self, user_id: i64, pulled_id: &str) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT connector_id, sync_id FROM connector_posts WHERE user_id = $1 AND pulled_id = $2 LIMIT 1",
        )
        .bind(user_id)
        .bind(pulled_id)
        .fetch_optional(&self.readers)
        .await?)
    }

    async fn add_route(
        &self,
        user_id: i64,
        from_collection_id: i64,
        connector_id: i64,
        filter: &str,
        seq: i64,
    ) -> Result<RouteRow> {
        let sql = format!(
            "INSERT INTO routes (user_id, from_collection_id, connector_id, filter, seq, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ROUTE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(from_collection_id)
            .bind(connector_id)
            .bind(filter)
            .bind(seq)
            .bind(crate::jobs::now_ms())
            .fetch_one(&self.writer)
            .await
            .map_err(insert_err("route"))?;
        route_row(&row)
    }

    async fn routes(&self, user_id: i64) -> Result<Vec<RouteRow>> {
        let sql = format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE user_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(route_row).collect()
    }

    async fn remove_route(&self, user_id: i64, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM route_copies WHERE user_id = $1 AND route_id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.writer)
            .await?;
        let done = sqlx::query("DELETE FROM routes WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("route"));
        }
        Ok(())
    }

    async fn set_route_seq(&self, user_id: i64, id: i64, seq: i64) -> Result<()> {
        sqlx::query("UPDATE routes SET seq = $3 WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .bind(seq)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn route_copy(&self, user_id: i64, route_id: i64, source_sync_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT copy_sync_id FROM route_copies WHERE user_id = $1 AND route_id = $2 AND source_sync_id = $3",
        )
        .bind(user_id)
        .bind(route_id)
        .bind(source_sync_id)
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn put_route_copy(
        &self,
        user_id: i64,
        route_id: i64,
        source_sync_id: &str,
        copy_sync_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO route_copies (user_id, route_id, source_sync_id, copy_sync_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, route_id, source_sync_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(route_id)
        .bind(source_sync_id)
        .bind(copy_sync_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn route_copy_source(&self, user_id: i64, copy_sync_id: &str) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT route_id, source_sync_id FROM route_copies WHERE user_id = $1 AND copy_sync_id = $2 LIMIT 1",
        )
        .bind(user_id)
        .bind(copy_sync_id)
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn claim_listeners(
        &self,
        owner: &str,
        kinds: &[&str],
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ConnectorRow>> {
        self.claim_listeners_sql(owner, kinds, now_ms, lease_ms, limit).await
    }

    async fn renew_listener(&self, user_id: i64, id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET listener_until = $4 WHERE user_id = $1 AND id = $2 AND listener_owner = $3 \
             AND state IN ('active', 'failing')",
        )
        .bind(user_id)
        .bind(id)
        .bind(owner)
        .bind(until_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_listening(&self, user_id: i64, id: i64, owner: &str, now_ms: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE connectors SET listening_at = $4 WHERE user_id = $1 AND id = $2 AND listener_owner = $3")
            .bind(user_id)
            .bind(id)
            .bind(owner)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        if let Some(now) = now_ms {
            sqlx::query(
                "UPDATE connectors SET next_at = $3 WHERE user_id = $1 AND id = $2 \
                 AND state IN ('active', 'failing') AND next_at > $3 AND next_at < $4",
            )
            .bind(user_id)
            .bind(id)
            .bind(now)
            .bind(i64::MAX)
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    async fn renew_connector_claim(&self, user_id: i64, id: i64, until_ms: i64) -> Result<()> {
        sqlx::query("UPDATE connectors SET claimed_until = $3 WHERE user_id = $1 AND id = $2 AND claimed_until > 0")
            .bind(user_id)
            .bind(id)
            .bind(until_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn release_listener(&self, user_id: i64, id: i64, owner: &str, not_before_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE connectors SET listener_owner = NULL, listener_until = $4, listening_at = NULL \
             WHERE user_id = $1 AND id = $2 AND listener_owner = $3",
        )
        .bind(user_id)
        .bind(id)
        .bind(owner)
        .bind(not_before_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

impl SqlStore {
    pub(super) async fn claim_listeners_sql(
        &self,
        owner: &str,
        kinds: &[&str],
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ConnectorRow>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        // Only read, unless one is free: every process looks every few seconds.
        let marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 2)).collect();
        let free = format!(
            "SELECT id FROM connectors WHERE state IN ('active', 'failing') AND listener_until < $1 \
             AND kind IN ({}) LIMIT 1",
            marks.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(free)).bind(now_ms);
        for k in kinds {
            q = q.bind(*k);
        }
        if q.fetch_optional(&self.readers).await?.is_none() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
        // The outer test again: a process that lost the race for a row (PostgreSQL re-reads
        // it after the winner's commit) finds it claimed and leaves it.
        let sql = format!(
            "UPDATE connectors SET listener_owner = $1, listener_until = $2, listening_at = NULL WHERE id IN \
             (SELECT id FROM connectors WHERE state IN ('active', 'failing') AND listener_until < $3 \
             AND kind IN ({}) ORDER BY id LIMIT $4) AND listener_until < $3 RETURNING {CONNECTOR_COLUMNS}",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit as i64);
        for k in kinds {
            q = q.bind(*k);
        }
        let rows = q.fetch_all(&self.writer).await?;
        rows.iter().map(|r| self.connector_row(r)).collect()
    }
}

const ROUTE_COLUMNS: &str = "id, user_id, from_collection_id, connector_id, filter, seq, created_at";

fn route_row(r: &AnyRow) -> Result<RouteRow> {
    Ok(RouteRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        from_collection_id: r.try_get("from_collection_id")?,
        connector_id: r.try_get("connector_id")?,
        filter: r.try_get("filter")?,
        seq: r.try_get("seq")?,
        created_at: r.try_get("created_at")?,
    })
}
