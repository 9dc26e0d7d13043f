//! [`Operators`] on PostgreSQL.

use async_trait::async_trait;
use trailmark_domain::Timestamp;

use super::PostgresStore;
use crate::operator::{NewOperatorSession, OperatorRecord, OperatorSession};
use crate::{Operators, StoreError};

#[async_trait]
impl Operators for PostgresStore {
    async fn insert_operator(&self, operator: OperatorRecord) -> Result<(), StoreError> {
        // The unique index decides between racing instances.
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO operators (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (email) DO NOTHING",
                &[
                    &operator.id,
                    &operator.email,
                    &operator.password_hash,
                    &operator.created_at.unix_millis(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict("email"));
        }
        Ok(())
    }

    async fn find_operator(&self, email: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, email, password_hash, created_at FROM operators WHERE email = $1",
                &[&email],
            )
            .await?;
        row.map(|row| {
            Ok(OperatorRecord {
                id: row.try_get(0)?,
                email: row.try_get(1)?,
                password_hash: row.try_get(2)?,
                created_at: Timestamp::from_unix_millis(row.try_get(3)?),
            })
        })
        .transpose()
    }

    async fn insert_operator_session(&self, session: NewOperatorSession) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO operator_sessions (secret_hash, id, operator_id, csrf_token, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &session.secret_hash.as_slice(),
                    &session.id,
                    &session.operator_id,
                    &session.csrf_token,
                    &session.created_at.unix_millis(),
                    &session.expires_at.unix_millis(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn touch_operator_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<OperatorSession>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE operator_sessions s SET expires_at = $3 FROM operators o
                 WHERE s.secret_hash = $1 AND s.expires_at > $2 AND o.id = s.operator_id
                 RETURNING s.id, s.operator_id, o.email, s.csrf_token, s.created_at",
                &[
                    &secret_hash.as_slice(),
                    &now.unix_millis(),
                    &renew_until.unix_millis(),
                ],
            )
            .await?;
        row.map(|row| {
            Ok(OperatorSession {
                id: row.try_get(0)?,
                operator_id: row.try_get(1)?,
                email: row.try_get(2)?,
                csrf_token: row.try_get(3)?,
                created_at: Timestamp::from_unix_millis(row.try_get(4)?),
                expires_at: renew_until,
            })
        })
        .transpose()
    }

    async fn operator_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM operator_sessions WHERE secret_hash = $1 AND expires_at > $2)",
                &[&secret_hash.as_slice(), &now.unix_millis()],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn delete_operator_session(&self, secret_hash: [u8; 32]) -> Result<bool, StoreError> {
        let deleted = self
            .client()
            .await?
            .execute(
                "DELETE FROM operator_sessions WHERE secret_hash = $1",
                &[&secret_hash.as_slice()],
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn purge_operator_sessions(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM operator_sessions WHERE expires_at < $1",
                &[&before.unix_millis()],
            )
            .await?)
    }
}
