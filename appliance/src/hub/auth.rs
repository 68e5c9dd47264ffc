//! Credentials: device tokens, teacher passwords, teacher sessions, and the login
//! rate limit. Secrets are random 32-byte values from the system's generator; what is
//! stored is a hash (SHA-256 for tokens, PBKDF2-HMAC-SHA256 with a per-user salt for
//! passwords), so a copied database gives nobody a way in.

use std::num::NonZeroU32;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

use crate::base::clock::Clock;
use crate::store::{Store, StoreError, school};

/// PBKDF2 rounds: about 100 ms on a Raspberry Pi 4, per login attempt.
pub(crate) const PBKDF2_ITERATIONS: u32 = 100_000;
/// A teacher's session lasts a school day.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(10 * 3600);

/// 32 random bytes, hex.
pub(crate) fn new_secret() -> String {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    cartable_protocol::desired::hex(&b)
}

/// A code an admin can type on a tablet: `length` characters (8 for a one-use
/// enrolment code), no look-alikes, 5 bits each.
pub(crate) fn new_code(length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = vec![0u8; length];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// (salt, hash) for a new password.
pub(crate) fn hash_password(password: &str, iterations: u32) -> (Vec<u8>, Vec<u8>) {
    let mut salt = vec![0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the system random source works");
    let mut hash = vec![0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations.max(1)).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    (salt, hash)
}

/// Constant-time check (ring's).
pub(crate) fn verify_password(password: &str, salt: &[u8], hash: &[u8], iterations: u32) -> bool {
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations.max(1)).expect("non-zero"),
        salt,
        password.as_bytes(),
        hash,
    )
    .is_ok()
}

/// A signed-in teacher.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) login: String,
    /// The classes this teacher teaches, read at each request.
    pub(crate) classes: Vec<i64>,
    /// Sent back in `X-CSRF-Token` with every request that changes something.
    pub(crate) csrf: String,
}

/// Teachers' sessions, in the store by the hash of their cookie: a restart keeps
/// them, and deleting a teacher or setting a new password ends them.
pub(crate) struct Sessions {
    store: Store,
    clock: Clock,
}

impl Sessions {
    pub(crate) fn new(store: Store, clock: Clock) -> Sessions {
        Sessions { store, clock }
    }

    /// A new session of `owner`; returns (cookie value, CSRF token).
    async fn mint(
        &self,
        account: school::Account,
        owner: i64,
    ) -> Result<(String, String), StoreError> {
        let (token, csrf) = (new_secret(), new_secret());
        let (hash, now) = (token_hash(&token), self.clock.unix());
        let expires = now + SESSION_TTL.as_secs() as i64;
        let stored_csrf = csrf.clone();
        self.store
            .write(move |t| {
                school::open_session(t, account, &hash, owner, &stored_csrf, now, expires)
            })
            .await?;
        Ok((token, csrf))
    }

    /// A new teacher's session; returns (cookie value, session).
    pub(crate) async fn open(
        &self,
        teacher_id: i64,
        login: &str,
        classes: Vec<i64>,
    ) -> Result<(String, Session), StoreError> {
        let (token, csrf) = self.mint(school::Account::Teacher, teacher_id).await?;
        let session = Session {
            login: login.to_string(),
            classes,
            csrf,
        };
        Ok((token, session))
    }

    /// The live session a cookie names, if any.
    pub(crate) async fn get(&self, cookie: &str) -> Result<Option<Session>, StoreError> {
        let (hash, now) = (token_hash(cookie), self.clock.unix());
        let found = self
            .store
            .read(move |c| school::session(c, &hash, now))
            .await?;
        Ok(found.map(|s| Session {
            login: s.login,
            classes: s.classes,
            csrf: s.csrf,
        }))
    }

    pub(crate) async fn close(&self, cookie: &str) -> Result<(), StoreError> {
        let hash = token_hash(cookie);
        self.store
            .write(move |t| school::close_session(t, &hash))
            .await
    }

    /// A new admin session; returns (cookie value, session).
    pub(crate) async fn open_admin(
        &self,
        admin_id: i64,
        login: &str,
    ) -> Result<(String, AdminSession), StoreError> {
        let (token, csrf) = self.mint(school::Account::Admin, admin_id).await?;
        let login = login.to_string();
        Ok((token, AdminSession { login, csrf }))
    }

    /// The live admin session a cookie names, if any.
    pub(crate) async fn get_admin(&self, cookie: &str) -> Result<Option<AdminSession>, StoreError> {
        let (hash, now) = (token_hash(cookie), self.clock.unix());
        let found = self
            .store
            .read(move |c| school::admin_session(c, &hash, now))
            .await?;
        Ok(found.map(|(login, csrf)| AdminSession { login, csrf }))
    }
}

/// A signed-in admin of the school.
#[derive(Debug, Clone)]
pub(crate) struct AdminSession {
    pub(crate) login: String,
    pub(crate) csrf: String,
}

/// A password an account may have: 8 to 200 characters.
pub(crate) fn check_password(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 8 || password.len() > 200 {
        return Err("a password has 8 to 200 characters");
    }
    Ok(())
}

/// Why an admin account was not made.
pub(crate) enum AdminRefused {
    Invalid(&'static str),
    /// A teacher has this login (the sign-in page decides the role by the login).
    Taken(&'static str),
    Store(StoreError),
}

/// Adds the admin `login`, or sets its password, and records it in the audit trail in
/// the same transaction, as `actor`; true when the account is new. The handler of
/// `POST /api/v1/admin/admins` and `cartable admin add` (no daemon running) share it.
pub(crate) async fn put_admin(
    store: &Store,
    login: &str,
    password: &str,
    now: i64,
    actor: String,
) -> Result<bool, AdminRefused> {
    if !crate::store::import::valid_login(login) {
        return Err(AdminRefused::Invalid(
            "a login has 1 to 64 of a-z, 0-9, `.`, `_` and `-`",
        ));
    }
    check_password(password).map_err(AdminRefused::Invalid)?;
    let password = password.to_string();
    let (salt, hash) =
        tokio::task::spawn_blocking(move || hash_password(&password, PBKDF2_ITERATIONS))
            .await
            .map_err(|e| AdminRefused::Store(StoreError::Panicked(e.to_string())))?;
    let login = login.to_string();
    let written = store
        .write(move |t| {
            let added = school::put_admin(t, &login, &salt, &hash, PBKDF2_ITERATIONS, now)?;
            if let Ok(added) = added {
                let action = if added {
                    "admin added"
                } else {
                    "admin password set"
                };
                crate::store::outbox::append(
                    t,
                    now,
                    &cartable_protocol::events::EventBody::Audit {
                        actor,
                        action: action.into(),
                        detail: login,
                    },
                )?;
            }
            Ok(added)
        })
        .await
        .map_err(AdminRefused::Store)?;
    written.map_err(AdminRefused::Taken)
}

/// A password hash nobody has, checked when a login is unknown, so an unknown login
/// costs the same time as a known one with a wrong password.
pub(crate) fn decoy() -> &'static (Vec<u8>, Vec<u8>) {
    static DECOY: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret(), PBKDF2_ITERATIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_their_salt_and_hash() {
        let (salt, hash) = hash_password("correct horse", 1000);
        assert!(verify_password("correct horse", &salt, &hash, 1000));
        assert!(!verify_password("correct hors", &salt, &hash, 1000));
        let (salt2, hash2) = hash_password("correct horse", 1000);
        assert_ne!((salt.clone(), hash.clone()), (salt2, hash2), "salted");
    }

    #[tokio::test]
    async fn sessions_are_found_by_their_cookie_only_and_end_with_their_teacher() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let teacher = store
            .write(|t| {
                t.execute(
                    "INSERT INTO teachers(login, display_name) VALUES ('marie', 'M')",
                    [],
                )?;
                Ok(t.last_insert_rowid())
            })
            .await
            .unwrap();
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let s = Sessions::new(store.clone(), clock.clone());
        let (cookie, session) = s.open(teacher, "marie", vec![]).await.unwrap();
        let found = s.get(&cookie).await.unwrap().unwrap();
        assert_eq!(
            (found.login, found.csrf),
            ("marie".to_string(), session.csrf)
        );
        assert!(s.get("nope").await.unwrap().is_none());
        // A restart keeps it: another handle on the same store finds it.
        let after_restart = Sessions::new(store.clone(), clock.clone());
        assert!(after_restart.get(&cookie).await.unwrap().is_some());
        s.close(&cookie).await.unwrap();
        assert!(s.get(&cookie).await.unwrap().is_none());
        // A school day, then it expires.
        let (cookie, _) = s.open(teacher, "marie", vec![]).await.unwrap();
        clock.advance(SESSION_TTL);
        assert!(s.get(&cookie).await.unwrap().is_none());
        // Deleting the teacher ends every session of theirs.
        let (cookie, _) = s.open(teacher, "marie", vec![]).await.unwrap();
        store
            .write(move |t| school::delete(t, school::Kind::Teachers, teacher))
            .await
            .unwrap();
        assert!(s.get(&cookie).await.unwrap().is_none());
        assert_eq!(new_code(8).len(), 8);
        assert_eq!(new_code(24).len(), 24);
    }
}
