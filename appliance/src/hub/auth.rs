//! Credentials: device tokens, teacher passwords, teacher sessions, and the login
//! rate limit. Secrets are random 32-byte values from the system's generator; what is
//! stored is a hash (SHA-256 for tokens, PBKDF2-HMAC-SHA256 with a per-user salt for
//! passwords), so a copied database gives nobody a way in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

/// PBKDF2 rounds: about 100 ms on a Raspberry Pi 4, per login attempt.
pub(crate) const PBKDF2_ITERATIONS: u32 = 100_000;
/// Failed logins allowed per login name and per address in [`LOCKOUT`].
const MAX_FAILURES: usize = 5;
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
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

/// A short code an admin can type on a tablet: 8 characters, no look-alikes.
pub(crate) fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 8];
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
pub struct Session {
    pub teacher_id: i64,
    pub login: String,
    /// The classes this teacher teaches, read at sign-in.
    pub classes: Vec<i64>,
    /// Sent back in `X-CSRF-Token` with every request that changes something.
    pub csrf: String,
    expires: Instant,
}

/// Sessions in memory (a restart signs teachers out) and the login rate limit.
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Sessions {
    /// A new session; returns (cookie value, session).
    pub fn open(&self, teacher_id: i64, login: &str, classes: Vec<i64>) -> (String, Session) {
        let token = new_secret();
        let session = Session {
            teacher_id,
            login: login.to_string(),
            classes,
            csrf: new_secret(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > Instant::now());
        map.insert(token_hash(&token), session.clone());
        (token, session)
    }

    pub fn get(&self, cookie: &str) -> Option<Session> {
        let map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&token_hash(cookie))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn close(&self, cookie: &str) {
        self.by_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token_hash(cookie));
    }

    /// False while `login` or `ip` has too many recent failures.
    pub fn may_try(&self, login: &str, ip: IpAddr) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        [format!("login:{login}"), format!("ip:{ip}")]
            .iter()
            .all(|k| {
                let v = f.entry(k.clone()).or_default();
                v.retain(|t| now.duration_since(*t) < LOCKOUT);
                v.len() < MAX_FAILURES
            })
    }

    pub fn failed(&self, login: &str, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in [format!("login:{login}"), format!("ip:{ip}")] {
            f.entry(k).or_default().push(Instant::now());
        }
    }
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

    #[test]
    fn five_failures_lock_a_login_and_an_address_out() {
        let s = Sessions::default();
        let ip: IpAddr = [10, 0, 0, 9].into();
        for _ in 0..5 {
            assert!(s.may_try("marie", ip));
            s.failed("marie", ip);
        }
        assert!(!s.may_try("marie", ip));
        assert!(!s.may_try("paul", ip), "same address");
        assert!(!s.may_try("marie", [10, 0, 0, 10].into()), "same login");
        assert!(s.may_try("paul", [10, 0, 0, 10].into()));
    }

    #[test]
    fn sessions_are_found_by_their_cookie_only() {
        let s = Sessions::default();
        let (cookie, session) = s.open(3, "marie", vec![1]);
        assert_eq!(s.get(&cookie).unwrap().teacher_id, 3);
        assert_eq!(s.get(&cookie).unwrap().csrf, session.csrf);
        assert!(s.get("nope").is_none());
        s.close(&cookie);
        assert!(s.get(&cookie).is_none());
        assert_eq!(new_code().len(), 8);
    }
}
