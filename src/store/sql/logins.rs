//! Account passwords, browser sessions and app passwords: `SqlStore`'s `LoginStore`.

use super::*;

use crate::store::{AppPassword, Login, LoginStore};

fn app_password_row(r: &AnyRow) -> Result<AppPassword> {
    Ok(AppPassword {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
        last_used: r.try_get::<Option<i64>, _>("last_used")?.map(Timestamp::from_unix),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

fn login_row(r: &AnyRow) -> Result<Login> {
    Ok(Login {
        user_id: r.try_get("user_id")?,
        user: r.try_get("user_name")?,
    })
}

#[async_trait]
impl LoginStore for SqlStore {
    async fn set_password(&self, user_id: i64, phc: &str) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO passwords (user_id, phc, changed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET phc = excluded.phc, changed_at = excluded.changed_at",
        )
        .bind(user_id)
        .bind(phc)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn password(&self, user_id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT phc FROM passwords WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn add_session(&self, user_id: i64, token_hash: &str, expires_at: i64) -> Result<()> {
        let now = now();
        let mut tx = self.writer.begin().await?;
        // Each login sweeps the user's expired sessions: no worker needed, nothing piles up.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(token_hash)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(insert_err("session"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: i64) -> Result<Option<Login>> {
        let row = sqlx::query(
            "SELECT s.user_id, u.name AS user_name FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(login_row).transpose()
    }

    async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn add_app_password(
        &self,
        user_id: i64,
        name: &str,
        hash: &str,
        fever_hash: &str,
        prefix: &str,
    ) -> Result<AppPassword> {
        let row = sqlx::query(
            "INSERT INTO app_passwords (user_id, name, hash, fever_hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id, name, prefix, created_at, last_used, revoked_at",
        )
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(fever_hash)
        .bind(prefix)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(insert_err("app password"))?;
        app_password_row(&row)
    }

    async fn app_passwords(&self, user_id: i64) -> Result<Vec<AppPassword>> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, created_at, last_used, revoked_at FROM app_passwords \
             WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(app_password_row).collect()
    }

    async fn revoke_app_password(&self, user_id: i64, id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE app_passwords SET revoked_at = $1 WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(user_id)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("live app password"));
        }
        Ok(())
    }

    async fn app_password(&self, hash: &str, fever: bool) -> Result<Option<Login>> {
        let sql = match fever {
            true => {
                "SELECT a.id, a.user_id, a.last_used, u.name AS user_name FROM app_passwords a \
                     JOIN users u ON u.id = a.user_id WHERE a.fever_hash = $1 AND a.revoked_at IS NULL"
            }
            false => {
                "SELECT a.id, a.user_id, a.last_used, u.name AS user_name FROM app_passwords a \
                      JOIN users u ON u.id = a.user_id WHERE a.hash = $1 AND a.revoked_at IS NULL"
            }
        };
        let row = sqlx::query(sql).bind(hash).fetch_optional(&self.readers).await?;
        let Some(row) = row else { return Ok(None) };
        // "Last used" to the minute is enough, and spares a write on every call.
        let now = now();
        if row
            .try_get::<Option<i64>, _>("last_used")?
            .is_none_or(|t| now - t >= 60)
        {
            sqlx::query("UPDATE app_passwords SET last_used = $1 WHERE user_id = $2 AND id = $3")
                .bind(now)
                .bind(row.try_get::<i64, _>("user_id")?)
                .bind(row.try_get::<i64, _>("id")?)
                .execute(&self.writer)
                .await?;
        }
        Ok(Some(login_row(&row)?))
    }
}
