//! Tablets and teachers getting their credentials: enrolment codes and device tokens,
//! revocation, teachers' passwords.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use cartable_protocol::device::{DesiredState, ToDevice};

use super::{Device, Hub, Reported, auth, lock};
use crate::store::StoreError;

impl Hub {
    /// Sets a teacher's password (PBKDF2 off the async threads); false for an unknown
    /// login.
    pub async fn set_password(&self, login: String, password: String) -> Result<bool, StoreError> {
        let (salt, hash) = tokio::task::spawn_blocking(move || {
            auth::hash_password(&password, auth::PBKDF2_ITERATIONS)
        })
        .await
        .map_err(|e| StoreError::Panicked(e.to_string()))?;
        self.store
            .write(move |t| {
                let Some(id) = t
                    .query_row("SELECT id FROM teachers WHERE login = ?1", [login], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()?
                else {
                    return Ok(false);
                };
                t.execute(
                    "INSERT INTO teacher_passwords(teacher_id, salt, hash, iterations) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(teacher_id) DO UPDATE SET salt = excluded.salt, hash = excluded.hash,
                       iterations = excluded.iterations",
                    params![id, salt, hash, auth::PBKDF2_ITERATIONS],
                )?;
                // A new password ends every session opened with the old one.
                t.execute("DELETE FROM teacher_sessions WHERE teacher_id = ?1", [id])?;
                Ok(true)
            })
            .await
    }

    /// The device a token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<i64> {
        lock(&self.registry)
            .by_token
            .get(&auth::token_hash(token))
            .copied()
    }

    /// Enrols a device with a one-use code; returns (device id, token).
    pub async fn enrol(
        &self,
        code: &str,
        model: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        self.enrol_with_token(code, model, auth::new_secret()).await
    }

    /// Enrols with `token` as the device's credential (Headwind agents present their
    /// device number, which is the enrolment code).
    pub async fn enrol_with_token(
        &self,
        code: &str,
        model: &str,
        token: String,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let code_hash = auth::token_hash(&code.trim().to_ascii_uppercase());
        let token_hash = auth::token_hash(&token);
        let model = model.chars().take(200).collect::<String>();
        let now = self.clock.unix();
        let done = self
            .store
            .write(move |t| {
                let found: Option<(Option<i64>, String)> = t
                    .query_row(
                        "DELETE FROM enrolment_codes WHERE code_hash = ?1 AND expires_at > ?2
                         RETURNING class_id, name",
                        params![code_hash.as_slice(), now],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                let Some((class_id, name)) = found else {
                    return Ok(None);
                };
                t.execute(
                    "INSERT INTO devices(name, token_hash, class_id, enrolled_at, model)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, token_hash.as_slice(), class_id, now, model],
                )?;
                Ok(Some((t.last_insert_rowid(), name, class_id)))
            })
            .await?;
        let Some((id, name, class_id)) = done else {
            return Ok(None);
        };
        let mut reg = lock(&self.registry);
        reg.by_token.insert(token_hash, id);
        reg.devices.insert(
            id,
            Device {
                name,
                class_id,
                pupil: None,
                desired: DesiredState::default(),
                reported: Reported::default(),
                acked: None,
                conn: None,
                session: None,
                wipe_command: None,
            },
        );
        Ok(Some((id, token)))
    }

    /// A code for one device named `name` (unique), valid for `ttl`.
    pub async fn new_enrolment_code(
        &self,
        name: String,
        class_id: Option<i64>,
        ttl: Duration,
        length: usize,
    ) -> Result<String, StoreError> {
        let code = auth::new_code(length);
        let hash = auth::token_hash(&code);
        let expires = self.clock.unix() + ttl.as_secs() as i64;
        self.store
            .write(move |t| {
                t.execute(
                    "INSERT INTO enrolment_codes(code_hash, class_id, name, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash.as_slice(), class_id, name, expires],
                )?;
                Ok(())
            })
            .await?;
        Ok(code)
    }

    /// Revokes a device's token; its connection gets `revoked` and is closed.
    pub async fn revoke(&self, id: i64) -> Result<bool, StoreError> {
        let changed = self
            .store
            .write(move |t| Ok(t.execute("UPDATE devices SET revoked = 1 WHERE id = ?1", [id])?))
            .await?;
        let conn = {
            let mut reg = lock(&self.registry);
            reg.by_token.retain(|_, d| *d != id);
            reg.devices.remove(&id).and_then(|d| d.conn)
        };
        if let Some(c) = conn {
            let _ = c.tx.try_send(ToDevice::Revoked);
        }
        self.refresh_dns();
        Ok(changed > 0)
    }
}
