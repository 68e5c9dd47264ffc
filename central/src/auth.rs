//! Who may read the fleet console: its admins, signed in, or a caller on the central
//! host itself (loopback: scripts and monitoring, as root on the host could read the
//! database anyway). The console is on the internet; nothing of the fleet is served
//! to anyone else.
//!
//! Accounts live in the fleet store (`cartable-central admin add`), passwords as
//! PBKDF2-HMAC-SHA256 with a salt of their own. A sign-in gives a session: a random
//! token in an `HttpOnly`, `SameSite=Strict` cookie (only its hash is kept) and a CSRF
//! token every request that changes something must carry in `x-csrf-token`. Sessions
//! are in memory and bounded: a restart signs admins out. Failed sign-ins slow down
//! the address that sends them (1 s, doubling, up to 15 minutes), never the account.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::rand::SecureRandom;
use ring::{digest, pbkdf2};

use cartable_protocol::desired::{hex, unhex};

use crate::store::Db;

const ITERATIONS: u32 = 200_000;
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held; past it the one closest to expiry goes.
const MAX_SESSIONS: usize = 1_000;
/// Most addresses whose failures are remembered; past it the oldest are forgotten.
const MAX_FAILING: usize = 10_000;
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
const COOKIE: &str = "central_session";

/// A password's stored form: `pbkdf2-sha256$ITERATIONS$SALT$HASH` (hex).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("the system's random source");
    let mut hash = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    format!("pbkdf2-sha256${ITERATIONS}${}${}", hex(&salt), hex(&hash))
}

/// Does `password` match the stored form?
pub fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, hash] = parts[..] else {
        return false;
    };
    let (Some(iterations), Some(salt), Some(hash)) = (
        iterations.parse().ok().and_then(std::num::NonZeroU32::new),
        unhex(salt),
        unhex(hash),
    ) else {
        return false;
    };
    scheme == "pbkdf2-sha256"
        && pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    hex(&b)
}

fn token_key(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

struct Session {
    login: String,
    csrf: String,
    expires: Instant,
}

/// The console's sign-ins.
pub struct Auth {
    db: Db,
    sessions: Mutex<HashMap<Vec<u8>, Session>>,
    /// Per address: failures in a row, and until when it must wait.
    failing: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// What a sign-in gives.
pub struct SignedIn {
    pub cookie: String,
    pub csrf: String,
}

/// Why a sign-in was refused.
pub enum Refused {
    Wrong,
    Wait(Duration),
    Store(anyhow::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auth {
    pub fn new(db: Db) -> Arc<Auth> {
        Arc::new(Auth {
            db,
            sessions: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
        })
    }

    /// Checks `login`/`password` for `from`; a session on success.
    pub async fn sign_in(
        &self,
        from: IpAddr,
        login: &str,
        password: &str,
    ) -> Result<SignedIn, Refused> {
        let now = Instant::now();
        if let Some((_, until)) = lock(&self.failing).get(&from)
            && *until > now
        {
            return Err(Refused::Wait(*until - now));
        }
        let stored = self
            .db
            .admin_password(login)
            .await
            .map_err(Refused::Store)?;
        // The hash is checked even for a missing account: no timing tells which.
        let dummy = "pbkdf2-sha256$200000$00000000000000000000000000000000$0000000000000000000000000000000000000000000000000000000000000000";
        let (password, stored_text) = (password.to_string(), stored.clone());
        let ok = tokio::task::spawn_blocking(move || {
            verify_password(&password, stored_text.as_deref().unwrap_or(dummy))
        })
        .await
        .unwrap_or(false)
            && stored.is_some();
        if !ok {
            self.failed(from, now);
            return Err(Refused::Wrong);
        }
        lock(&self.failing).remove(&from);
        let (token, csrf) = (random_token(), random_token());
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token_key(&token),
            Session {
                login: login.to_string(),
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        tracing::info!(login, %from, "admin signed in to the console");
        Ok(SignedIn {
            cookie: format!(
                "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_TTL.as_secs()
            ),
            csrf,
        })
    }

    fn failed(&self, from: IpAddr, now: Instant) {
        let mut failing = lock(&self.failing);
        if failing.len() >= MAX_FAILING && !failing.contains_key(&from) {
            failing.retain(|_, (_, until)| *until > now);
            if failing.len() >= MAX_FAILING
                && let Some(oldest) = failing.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k)
            {
                failing.remove(&oldest);
            }
        }
        let entry = failing.entry(from).or_insert((0, now));
        entry.0 += 1;
        let wait = Duration::from_secs(1u64 << (entry.0 - 1).min(10)).min(LONGEST_WAIT);
        entry.1 = now + wait;
    }

    /// The session a request's cookie names: (login, CSRF token).
    fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let token = cookie_token(headers)?;
        let sessions = lock(&self.sessions);
        let s = sessions.get(&token_key(token))?;
        (s.expires > Instant::now()).then(|| (s.login.clone(), s.csrf.clone()))
    }

    /// Ends the request's session.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(token) = cookie_token(headers) {
            lock(&self.sessions).remove(&token_key(token));
        }
    }
}

/// The session token in a request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A signed-in admin, as the guard found the request's session (an extension of the
/// request): who changes something, and the CSRF token a page's form must carry.
#[derive(Clone, Debug)]
pub struct Admin {
    pub login: String,
    pub csrf: String,
}

/// The largest form the guard reads for its CSRF field (a policy set or catalogue).
const MAX_FORM: usize = 1 << 20;

/// The CSRF token a change carries: its `x-csrf-token` header, or, for a form a page
/// posts (the pages have no script), its `csrf` field; the body read is put back.
async fn carried_csrf(request: Request) -> Result<(Request, Option<String>), Response> {
    if let Some(v) = request.headers().get("x-csrf-token") {
        let v = v.to_str().ok().map(str::to_string);
        return Ok((request, v));
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        (StatusCode::PAYLOAD_TOO_LARGE, "a form of at most 1 MiB\n").into_response()
    })?;
    let csrf = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    Ok((Request::from_parts(parts, bytes.into()), csrf))
}

/// Every route but the sign-in's: a session (with its CSRF token for anything but a
/// read, the host's own browser too), or a caller on the host without one (scripts,
/// monitoring; a page's form wants a session, see [`Admin`]).
pub async fn guard(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if path == "/login" || path == "/api/v1/login" {
        return next.run(request).await;
    }
    match auth.session(request.headers()) {
        Some((login, csrf)) => {
            if !matches!(*request.method(), Method::GET | Method::HEAD) {
                let carried;
                (request, carried) = match carried_csrf(request).await {
                    Ok(r) => r,
                    Err(response) => return response,
                };
                if carried.as_deref() != Some(csrf.as_str()) {
                    return (StatusCode::FORBIDDEN, "missing or wrong x-csrf-token\n")
                        .into_response();
                }
            }
            request.extensions_mut().insert(Admin { login, csrf });
            next.run(request).await
        }
        None if peer.ip().is_loopback() => next.run(request).await,
        None if path.starts_with("/api/") => (
            StatusCode::UNAUTHORIZED,
            "sign in first: POST /api/v1/login\n",
        )
            .into_response(),
        None => (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct Credentials {
    login: String,
    password: String,
}

/// The sign-in page (no script: a form the browser posts).
fn page(error: Option<&str>, status: StatusCode) -> Response {
    let error = error
        .map(|e| format!("<p role=\"alert\">{e}</p>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Cartable — console du parc</title></head><body>\
         <h1>Console du parc Cartable</h1>{error}\
         <form method=\"post\" action=\"/login\">\
         <p><label>Identifiant <input name=\"login\" autocomplete=\"username\" required></label></p>\
         <p><label>Mot de passe <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Se connecter</button></p></form></body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// `GET /login`.
pub async fn login_page() -> Response {
    page(None, StatusCode::OK)
}

fn refused(r: Refused, html: bool) -> Response {
    let (status, text) = match r {
        Refused::Wrong => (
            StatusCode::UNAUTHORIZED,
            "Identifiant ou mot de passe incorrect".to_string(),
        ),
        Refused::Wait(d) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Trop d'essais : réessayez dans {} s", d.as_secs().max(1)),
        ),
        Refused::Store(e) => {
            tracing::error!(error = %e, "cannot read the admins");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Le stockage ne répond pas".to_string(),
            )
        }
    };
    if html {
        page(Some(&text), status)
    } else {
        (status, format!("{text}\n")).into_response()
    }
}

/// `POST /login` (the page's form): a session cookie and back to the dashboard.
pub async fn login_form(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Form(c): axum::Form<Credentials>,
) -> Response {
    match auth.sign_in(peer.ip(), &c.login, &c.password).await {
        Ok(s) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, s.cookie),
                (header::LOCATION, "/".to_string()),
            ],
        )
            .into_response(),
        Err(r) => refused(r, true),
    }
}

/// `POST /api/v1/login` `{"login", "password"}`: a session cookie, and the CSRF token
/// as JSON.
pub async fn login_json(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Json(c): axum::Json<Credentials>,
) -> Response {
    match auth.sign_in(peer.ip(), &c.login, &c.password).await {
        Ok(s) => (
            [(header::SET_COOKIE, s.cookie)],
            axum::Json(serde_json::json!({ "login": c.login, "csrf": s.csrf })),
        )
            .into_response(),
        Err(r) => refused(r, false),
    }
}

/// `POST /api/v1/logout`.
pub async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    auth.sign_out(&headers);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_nothing_else_does() {
        let stored = hash_password("tableau-noir-2026");
        assert!(verify_password("tableau-noir-2026", &stored));
        assert!(!verify_password("tableau-noir-2027", &stored));
        assert!(!verify_password("x", "garbage"));
        assert!(!verify_password("x", "pbkdf2-sha256$0$00$00"));
        assert_ne!(stored, hash_password("tableau-noir-2026"), "salted");
    }
}
