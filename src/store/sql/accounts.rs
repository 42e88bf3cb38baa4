//! Users, their devices (endpoints and tokens), feed keys, collections and server secrets.
//! `SqlStore`'s implementation of `AccountStore`.

use super::*;

use async_trait::async_trait;
use sqlx::{Acquire, Connection, Row};

use crate::domain::{CollectionName, DeviceName, Timestamp, UserName};
use crate::store::AccountStore;
use crate::store::{Collection, Endpoint, FeedKey, Principal, Result, StoreError, TokenInfo, User};

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_user(&self, name: &UserName) -> Result<User> {
        let row = sqlx::query("INSERT INTO users (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at")
            .bind(name.as_str())
            .bind(now())
            .fetch_one(&self.writer)
            .await
            .map_err(insert_err("user"))?;
        user_row(&row)
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM users ORDER BY name")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(user_row).collect()
    }

    async fn user(&self, name: &str) -> Result<User> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_row(&row)
    }

    async fn user_by_id(&self, id: i64) -> Result<User> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_row(&row)
    }

    async fn add_token(
        &self,
        user: &UserName,
        device: &DeviceName,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenInfo> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = match self.backend {
            // Take the write lock now, so the busy timeout applies (a read upgraded later fails at once).
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        sqlx::query(
            "INSERT INTO endpoints (user_id, name, kind, created_at) VALUES ($1, $2, 'device', $3) \
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(user_id)
        .bind(device.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let endpoint_id: i64 = sqlx::query_scalar("SELECT id FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(device.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (endpoint_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(endpoint_id)
        .bind(token_hash)
        .bind(prefix)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(insert_err("token"))?;
        tx.commit().await?;
        Ok(TokenInfo {
            id,
            device: device.to_string(),
            prefix: prefix.to_string(),
            created_at: Timestamp::now(),
            revoked: false,
        })
    }

    async fn tokens(&self, user: &UserName) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT t.id, e.name AS device, t.prefix, t.created_at, t.revoked_at FROM tokens t \
             JOIN endpoints e ON e.id = t.endpoint_id JOIN users u ON u.id = e.user_id \
             WHERE u.name = $1 ORDER BY t.id",
        )
        .bind(user.as_str())
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_token(&self, user: &UserName, token_id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND endpoint_id IN \
             (SELECT e.id FROM endpoints e JOIN users u ON u.id = e.user_id WHERE u.name = $3)",
        )
        .bind(now())
        .bind(token_id)
        .bind(user.as_str())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("live token"));
        }
        Ok(())
    }

    async fn principal(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT u.id AS user_id, u.name AS user_name, e.id AS endpoint_id, e.name AS endpoint_name \
             FROM tokens t JOIN endpoints e ON e.id = t.endpoint_id JOIN users u ON u.id = e.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            Ok(Principal {
                token_hash: token_hash.to_string(),
                user_id: r.try_get("user_id")?,
                user: r.try_get("user_name")?,
                endpoint_id: r.try_get("endpoint_id")?,
                endpoint: r.try_get("endpoint_name")?,
            })
        })
        .transpose()
    }

    async fn endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint> {
        let row = sqlx::query("SELECT id, name FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("endpoint"))?;
        Ok(Endpoint {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
        })
    }

    async fn add_feed_key(&self, user_id: i64, feed_path: &str, key_hash: &str) -> Result<FeedKey> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO feed_keys (user_id, feed_path, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(feed_path)
        .bind(key_hash)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(insert_err("feed key"))?;
        let row = sqlx::query(key_select!("WHERE k.id = $1"))
            .bind(id)
            .fetch_one(&self.writer)
            .await?;
        key_row(&row)
    }

    async fn feed_keys(&self, user_id: i64) -> Result<Vec<FeedKey>> {
        let rows = sqlx::query(key_select!("WHERE k.user_id = $1 ORDER BY k.id"))
            .bind(user_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(key_row).collect()
    }

    async fn self_key(
        &self,
        user_id: i64,
        feed_path: &str,
        hash_of: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<i64> {
        let last = sqlx::query(
            "SELECT self_generation, revoked_at FROM feed_keys WHERE user_id = $1 AND feed_path = $2 \
             AND self_generation IS NOT NULL ORDER BY self_generation DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(feed_path)
        .fetch_optional(&self.writer)
        .await?;
        let generation = match last {
            Some(r) if r.try_get::<Option<i64>, _>("revoked_at")?.is_none() => return Ok(r.try_get("self_generation")?),
            Some(r) => r.try_get::<i64, _>("self_generation")? + 1,
            None => 1,
        };
        // Derived keys are the same in every process: a concurrent insert of this
        // generation inserted the same hash, which is as good.
        sqlx::query(
            "INSERT INTO feed_keys (user_id, feed_path, key_hash, created_at, self_generation) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(user_id)
        .bind(feed_path)
        .bind(hash_of(generation))
        .bind(now())
        .bind(generation)
        .execute(&self.writer)
        .await?;
        Ok(generation)
    }

    async fn server_secret(&self, name: &str, fresh: &str) -> Result<String> {
        let stored = self.server_secret_raw(name, &self.seal(fresh)?).await?;
        Ok(self.sealer.reveal(stored))
    }

    async fn revoke_feed_key(&self, user_id: i64, key_id: i64) -> Result<()> {
        let done =
            sqlx::query("UPDATE feed_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now())
                .bind(key_id)
                .bind(user_id)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("live feed key"));
        }
        Ok(())
    }

    async fn feed_key(&self, key_hash: &str) -> Result<Option<FeedKey>> {
        let row = sqlx::query(key_select!("WHERE k.key_hash = $1 AND k.revoked_at IS NULL"))
            .bind(key_hash)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn create_collection(&self, user_id: i64, name: &CollectionName) -> Result<Collection> {
        let row = sqlx::query(
            "INSERT INTO collections (user_id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, user_id, name, created_at",
        )
        .bind(user_id)
        .bind(name.as_str())
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(insert_err("collection"))?;
        collection_row(&row)
    }

    async fn collections(&self, user_id: i64) -> Result<Vec<Collection>> {
        let rows =
            sqlx::query("SELECT id, user_id, name, created_at FROM collections WHERE user_id = $1 ORDER BY name")
                .bind(user_id)
                .fetch_all(&self.readers)
                .await?;
        rows.iter().map(collection_row).collect()
    }

    async fn collection(&self, user_id: i64, name: &str) -> Result<Collection> {
        let row = sqlx::query("SELECT id, user_id, name, created_at FROM collections WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?
            .ok_or(StoreError::NotFound("collection"))?;
        collection_row(&row)
    }

    async fn feed_endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint> {
        sqlx::query(
            "INSERT INTO endpoints (user_id, name, kind, created_at) VALUES ($1, $2, 'feed', $3) \
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(user_id)
        .bind(name)
        .bind(now())
        .execute(&self.writer)
        .await?;
        let row = sqlx::query("SELECT id, name FROM endpoints WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_one(&self.writer)
            .await?;
        Ok(Endpoint {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
        })
    }
}
