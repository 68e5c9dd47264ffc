//! The hub's HTTP API as a fuzzer drives it: the real routes (teachers', admins',
//! devices' and Headwind's), the real store, a school imported and a teacher signed
//! in once; then each input picks a route, a caller and a body.
//!
//! What it checks: no panic, and no 500. Every body a client can send, JSON or CSV,
//! gets an answer that says what was wrong with it; "internal error" is a bug.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower_service::Service;

use crate::base::clock::Clock;
use crate::config::HubConfig;
use crate::hub::HubDeps;
use crate::store::Store;

/// The Headwind secret of the harness, so signed calls can be made.
const SECRET: &str = "fuzz-secret";

struct Harness {
    runtime: tokio::runtime::Runtime,
    routes: axum::Router,
    cookie: String,
    csrf: String,
    /// Kept for the process's life: the store lives in it.
    _dir: tempfile::TempDir,
}

/// (method, path, content type); `{n}` in a path is replaced by a number from the input.
const ROUTES: &[(Method, &str, &str)] = &[
    (Method::POST, "/api/v1/login", "application/json"),
    (Method::POST, "/api/v1/logout", "application/json"),
    (Method::POST, "/api/v1/devices/enrol", "application/json"),
    (
        Method::POST,
        "/api/v1/classes/{n}/commands",
        "application/json",
    ),
    (
        Method::POST,
        "/api/v1/classes/{n}/attendance",
        "application/json",
    ),
    (
        Method::POST,
        "/api/v1/classes/{n}/groups",
        "application/json",
    ),
    (
        Method::POST,
        "/api/v1/classes/{n}/screen-time",
        "application/json",
    ),
    (
        Method::POST,
        "/api/v1/classes/{n}/documents?name=f%C3%A9.pdf",
        "application/pdf",
    ),
    (
        Method::POST,
        "/api/v1/admin/enrolment-codes",
        "application/json",
    ),
    (
        Method::POST,
        "/api/v1/admin/devices/{n}/pupil",
        "application/json",
    ),
    (Method::POST, "/api/v1/admin/import", "text/csv"),
    (Method::POST, "/api/v1/admin/admins", "application/json"),
    (Method::POST, "/rest/public/sync/info", "application/json"),
    (
        Method::POST,
        "/rest/public/sync/configuration/{n}",
        "application/json",
    ),
    (
        Method::GET,
        "/rest/notification/polling/{n}",
        "application/json",
    ),
    (Method::GET, "/api/v1/commands/{n}", "application/json"),
];

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(dir.path()).expect("a store");
        let config = HubConfig {
            headwind_secret: Some(SECRET.into()),
            ..HubConfig::default()
        };
        let parts = runtime.block_on(async {
            config
                .build(HubDeps {
                    store,
                    clock: Clock::system(jiff::tz::TimeZone::UTC),
                    data_dir: dir.path().to_path_buf(),
                    rules: None,
                    site: "ecole".into(),
                    wifi: None,
                })
                .expect("the hub")
        });
        let mut h = Harness {
            runtime,
            routes: parts.routes,
            cookie: String::new(),
            csrf: String::new(),
            _dir: dir,
        };
        for file in [
            "class,level\nCM1-A,CM1\n",
            "login,name,classes\nc.martin,Claire Martin,CM1-A\n",
            "first_name,last_name,class\nLéa,Durand,CM1-A\n",
        ] {
            let path = "/api/v1/admin/import";
            let (code, body) = h.call(&Method::POST, path, "text/csv", file, true, false);
            assert_eq!(code, StatusCode::OK, "the school imports: {body}");
        }
        let password = r#"{"password":"fuzzing-password"}"#;
        let path = "/api/v1/admin/teachers/c.martin/password";
        h.call(
            &Method::POST,
            path,
            "application/json",
            password,
            true,
            false,
        );
        let login = r#"{"login":"c.martin","password":"fuzzing-password"}"#;
        let (code, body) = h.call(
            &Method::POST,
            "/api/v1/login",
            "application/json",
            login,
            false,
            false,
        );
        assert_eq!(code, StatusCode::OK, "the teacher signs in: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        h.csrf = v["csrf"].as_str().unwrap_or_default().to_string();
        h.cookie = LAST_COOKIE
            .with(|l| l.borrow_mut().take())
            .unwrap_or_default();
        h
    })
}

thread_local! {
    /// The session cookie the last response set.
    static LAST_COOKIE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

impl Harness {
    /// One request; returns the status and the body.
    fn call(
        &self,
        method: &Method,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
        loopback: bool,
        session: bool,
    ) -> (StatusCode, String) {
        let from: SocketAddr = if loopback {
            ([127, 0, 0, 1], 40000).into()
        } else {
            ([10, 0, 0, 7], 40000).into()
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("content-type", content_type)
            .header("x-request-signature", "0")
            .body(body.into())
            .expect("a request");
        if session {
            let headers = request.headers_mut();
            if let Ok(v) = format!("cartable_session={}", self.cookie).parse() {
                headers.insert("cookie", v);
            }
            if let Ok(v) = self.csrf.parse() {
                headers.insert("x-csrf-token", v);
            }
        }
        request.extensions_mut().insert(ConnectInfo(from));
        self.runtime.block_on(async {
            let mut routes = self.routes.clone();
            let response = routes.call(request).await.expect("the router answers");
            let code = response.status();
            if let Some(c) = response
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
            {
                let value = c
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .split_once('=')
                    .map(|(_, v)| v.to_string());
                LAST_COOKIE.with(|l| *l.borrow_mut() = value);
            }
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (code, String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

/// One request built from `data`: byte 0 picks the route, byte 1 the caller (loopback
/// or the LAN, with or without the teacher's session), byte 2 the number in the path;
/// the rest is the body.
pub fn request(data: &[u8]) {
    let [route, caller, n, body @ ..] = data else {
        return;
    };
    let (method, path, content_type) = &ROUTES[usize::from(*route) % ROUTES.len()];
    let path = path.replace("{n}", &n.to_string());
    let h = harness();
    let (code, answer) = h.call(
        method,
        &path,
        content_type,
        body.to_vec(),
        caller & 1 == 1,
        caller & 2 == 2,
    );
    assert_ne!(
        code,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{method} {path} with {:?}: {answer}",
        String::from_utf8_lossy(body)
    );
}
