//! [`Operators`] on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use trailmark_domain::Timestamp;

use super::SqliteStore;
use crate::operator::{NewOperatorSession, OperatorRecord, OperatorSession};
use crate::{Operators, StoreError};

#[async_trait]
impl Operators for SqliteStore {
    async fn insert_operator(&self, operator: OperatorRecord) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                // One writer: the check and the insert cannot be raced.
                let taken = c
                    .query_row(
                        "SELECT 1 FROM operators WHERE email = ?1",
                        [&operator.email],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if taken {
                    return Err(StoreError::Conflict("email"));
                }
                c.execute(
                    "INSERT INTO operators (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        operator.id,
                        operator.email,
                        operator.password_hash,
                        operator.created_at.unix_millis()
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_operator(&self, email: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let email = email.to_owned();
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT id, email, password_hash, created_at FROM operators WHERE email = ?1",
                    [email],
                    |row| {
                        Ok(OperatorRecord {
                            id: row.get(0)?,
                            email: row.get(1)?,
                            password_hash: row.get(2)?,
                            created_at: Timestamp::from_unix_millis(row.get(3)?),
                        })
                    },
                )
                .optional()?)
            })
            .await
    }

    async fn insert_operator_session(&self, session: NewOperatorSession) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO operator_sessions (secret_hash, id, operator_id, csrf_token, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        session.secret_hash.as_slice(),
                        session.id,
                        session.operator_id,
                        session.csrf_token,
                        session.created_at.unix_millis(),
                        session.expires_at.unix_millis(),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn touch_operator_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<OperatorSession>, StoreError> {
        self.db
            .write(move |c| {
                let touched = c
                    .query_row(
                        "UPDATE operator_sessions SET expires_at = ?3 WHERE secret_hash = ?1 AND expires_at > ?2
                         RETURNING id, operator_id, csrf_token, created_at",
                        params![secret_hash.as_slice(), now.unix_millis(), renew_until.unix_millis()],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, String>(2)?,
                                row.get::<_, i64>(3)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((id, operator_id, csrf_token, created_at)) = touched else {
                    return Ok(None);
                };
                let email: String = c.query_row(
                    "SELECT email FROM operators WHERE id = ?1",
                    [&operator_id],
                    |row| row.get(0),
                )?;
                Ok(Some(OperatorSession {
                    id,
                    operator_id,
                    email,
                    csrf_token,
                    created_at: Timestamp::from_unix_millis(created_at),
                    expires_at: renew_until,
                }))
            })
            .await
    }

    async fn operator_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM operator_sessions WHERE secret_hash = ?1 AND expires_at > ?2)",
                    params![secret_hash.as_slice(), now.unix_millis()],
                    |row| row.get::<_, bool>(0),
                )?)
            })
            .await
    }

    async fn delete_operator_session(&self, secret_hash: [u8; 32]) -> Result<bool, StoreError> {
        self.db
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM operator_sessions WHERE secret_hash = ?1",
                    [secret_hash.as_slice()],
                )? == 1)
            })
            .await
    }

    async fn purge_operator_sessions(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.db
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM operator_sessions WHERE expires_at < ?1",
                    [before.unix_millis()],
                )? as u64)
            })
            .await
    }
}
