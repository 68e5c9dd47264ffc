//! Attacks from the school network that worked against the box, each replayed as it
//! was found (see the hardening issue), from another address than the teacher's: a
//! loopback address of its own (127.0.0.x) stands for another machine on the LAN.

use std::net::IpAddr;

use cartable_agent::http::{Response, request_from};
use cartable_systests::appliance::Appliance;
use serde_json::json;

const PASSWORD: &str = "tableau-noir";

/// A box with class CM1-A, teachers marie and paul (password `tableau-noir`).
async fn school() -> Appliance {
    let app = Appliance::start("");
    app.import(&[
        "class;level\nCM1-A;CM1\n",
        "login,name,classes\nmarie,Marie Curie,CM1-A\npaul,Paul Langevin,CM1-A\n",
    ])
    .await;
    for who in ["marie", "paul"] {
        set_password(&app, who, PASSWORD).await;
    }
    app
}

async fn set_password(app: &Appliance, login: &str, password: &str) {
    let body = json!({ "password": password }).to_string();
    let path = format!("/api/v1/admin/teachers/{login}/password");
    let r = app.call(None, "POST", &path, &[], Some(&body)).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

async fn sign_in(app: &Appliance, from: Option<IpAddr>, login: &str, password: &str) -> Response {
    let body = json!({ "login": login, "password": password }).to_string();
    app.call(from, "POST", "/api/v1/login", &[], Some(&body))
        .await
}

/// (cookie, csrf) of a session.
fn session(r: &Response) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap();
    let csrf = r.json().unwrap()["csrf"].as_str().unwrap().to_string();
    (cookie.to_string(), csrf)
}

/// Marie's (cookie, csrf) and her class's id.
async fn marie_and_her_class(app: &Appliance) -> (String, String, i64) {
    let (cookie, csrf) = session(&sign_in(app, None, "marie", PASSWORD).await);
    let class = app
        .call(None, "GET", "/api/v1/classes", &[("cookie", &cookie)], None)
        .await
        .json()
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    (cookie, csrf, class)
}

async fn classes(app: &Appliance, cookie: &str) -> u16 {
    app.call(None, "GET", "/api/v1/classes", &[("cookie", cookie)], None)
        .await
        .status
}

/// Five wrong passwords for `marie` from a pupil's machine used to lock the teacher
/// out for 15 minutes, renewable, and five wrong enrolment codes locked enrolment for
/// the whole box. Now the guessing address waits, and nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_slows_the_guessing_address_and_nobody_else() {
    let app = school().await;
    let pupil: IpAddr = [127, 0, 3, 7].into();
    let staff_room: IpAddr = [127, 0, 1, 2].into();
    for _ in 0..5 {
        assert_eq!(
            sign_in(&app, Some(pupil), "marie", "wrong").await.status,
            401
        );
    }
    let r = sign_in(&app, Some(pupil), "marie", PASSWORD).await;
    assert_eq!(r.status, 429, "the guessing address waits: {}", r.body);
    session(&sign_in(&app, Some(staff_room), "marie", PASSWORD).await);
    // Sign-in and enrolment count apart: the pupil's machine can still enrol a
    // tablet with a valid code, and the staff room is not slowed by its mistakes.
    let code = app
        .call(
            None,
            "POST",
            "/api/v1/admin/enrolment-codes",
            &[],
            Some(r#"{"name":"tab-1","class":"CM1-A"}"#),
        )
        .await
        .json()
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "code": code }).to_string();
    let r = app
        .call(
            Some(pupil),
            "POST",
            "/api/v1/devices/enrol",
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for _ in 0..5 {
        let r = app
            .call(
                Some(staff_room),
                "POST",
                "/api/v1/devices/enrol",
                &[],
                Some(r#"{"code":"WRONG234"}"#),
            )
            .await;
        assert_eq!(r.status, 403);
    }
    session(&sign_in(&app, Some(staff_room), "paul", PASSWORD).await);
}

/// 150 sign-ins with 1 MiB login names took the daemon from 17 to 172 MiB, for good
/// (the limiter kept every name). Field sizes are capped before anything is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_login_names_are_refused_and_memory_stays_flat() {
    let app = school().await;
    // Warm up the allocator with a few ordinary requests first.
    for _ in 0..3 {
        sign_in(&app, None, "marie", "wrong").await;
    }
    let before = app.rss_kib();
    let name = "x".repeat(1 << 20);
    for i in 0..150u8 {
        let from: IpAddr = [127, 0, 4, i].into();
        let r = sign_in(&app, Some(from), &name, "whatever").await;
        assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(200)]);
    }
    let after = app.rss_kib();
    println!("150 sign-ins with 1 MiB login names: RSS {before} KiB -> {after} KiB");
    assert!(
        after < before + 40 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// After an admin changed a teacher's password or deleted the teacher, the old cookie
/// still commanded the class (10 h sessions); logout worked without the CSRF token;
/// a restart signed every teacher out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_with_their_password_or_teacher_and_survive_a_restart() {
    let mut app = school().await;
    let (marie, marie_csrf) = session(&sign_in(&app, None, "marie", PASSWORD).await);
    let (paul, _) = session(&sign_in(&app, None, "paul", PASSWORD).await);
    app.restart();
    assert_eq!(classes(&app, &marie).await, 200, "kept across a restart");
    // Logout needs the CSRF token (another site's page cannot sign her out).
    let r = app
        .call(
            None,
            "POST",
            "/api/v1/logout",
            &[("cookie", &marie)],
            Some(""),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(classes(&app, &marie).await, 200);
    set_password(&app, "marie", "craie-blanche").await;
    assert_eq!(
        classes(&app, &marie).await,
        401,
        "a new password ends old sessions"
    );
    let (marie, marie_csrf_new) = session(&sign_in(&app, None, "marie", "craie-blanche").await);
    assert_ne!(marie_csrf, marie_csrf_new);
    // Deleting a teacher ends their sessions.
    let school = app
        .call(None, "GET", "/api/v1/admin/school", &[], None)
        .await;
    let teachers = school.json().unwrap()["teachers"].clone();
    let paul_id = teachers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["login"] == "paul")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = app
        .call(
            None,
            "DELETE",
            &format!("/api/v1/admin/teachers/{paul_id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(classes(&app, &paul).await, 401);
    // Logout with the token ends the session.
    let headers = [
        ("cookie", marie.as_str()),
        ("x-csrf-token", marie_csrf_new.as_str()),
    ];
    let r = app
        .call(None, "POST", "/api/v1/logout", &headers, Some(""))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(classes(&app, &marie).await, 401);
}

/// 2,000 wrong Headwind device numbers in 0.44 s were never limited, and an 8-letter
/// enrolment code became a tablet's number for good. Now an address that tries
/// unknown numbers waits, and only a long code enrols a Headwind tablet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headwind_numbers_cannot_be_guessed() {
    const SECRET: &str = "changeme-C3z9vi54";
    let app = Appliance::start(&format!("[hub]\nheadwind_secret = \"{SECRET}\"\n"));
    let sha1 = cartable::hub::headwind::sha1_hex;
    let attacker: IpAddr = [127, 0, 5, 9].into();
    // (status, when the request left, when its answer came)
    let mut answers = Vec::new();
    for i in 0..20 {
        let number = format!("GUESS{i:019}");
        let path = format!("/rest/notification/polling/{number}");
        let sig = sha1(&format!("{SECRET}{path}"));
        let sent = std::time::Instant::now();
        let r = request_from(
            Some(attacker),
            app.http,
            "GET",
            &path,
            &[("X-Request-Signature", &sig)],
            None,
        )
        .await
        .unwrap();
        answers.push((r.status, sent, std::time::Instant::now()));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses[..5], [200; 5], "answered error.notfound.device");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    // A guess past the fifth is answered only once the wait its predecessor earned is
    // over (1 s after the fifth failure, doubling after): a slow machine may see one,
    // never sooner.
    let mut failures = 5;
    let mut last_failure_sent = answers[4].1;
    for (status, sent, answered) in &answers[5..] {
        if *status == 200 {
            let wait = std::time::Duration::from_secs(1 << (failures - 5));
            let waited = answered.duration_since(last_failure_sent);
            assert!(waited >= wait, "let through after {waited:?}: {statuses:?}");
            failures += 1;
            last_failure_sent = *sent;
        } else {
            assert_eq!(*status, 429, "{statuses:?}");
        }
    }
    // A short (typeable) code does not enrol a Headwind tablet.
    let r = app
        .call(
            None,
            "POST",
            "/api/v1/admin/enrolment-codes",
            &[],
            Some(r#"{"name":"hw"}"#),
        )
        .await;
    let code = r.json().unwrap()["code"].as_str().unwrap().to_string();
    let sig = sha1(&format!("{SECRET}{code}"));
    let path = format!("/rest/public/sync/configuration/{code}");
    let r = app
        .call(
            None,
            "POST",
            &path,
            &[("X-Request-Signature", &sig)],
            Some("{}"),
        )
        .await;
    assert_eq!(
        r.json().unwrap()["message"],
        "error.notfound.device",
        "{}",
        r.body
    );
}

/// Sends a request head and `sent` bytes of a body announced as `length`, then
/// stalls; returns the status the box answers (it must not wait for the rest).
async fn stalled_upload(
    app: &Appliance,
    path: &str,
    headers: &[(&str, &str)],
    length: usize,
    sent: usize,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: box\r\nContent-Length: {length}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The box may answer and close before the bytes are all sent: that is the point.
    let _ = s.write_all(&vec![b'x'; sent]).await;
    let mut answer = [0u8; 64];
    // A bound for the failure only: the answer comes as soon as the head is read.
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("an answer before the body is complete")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An upload of 45 MiB with no cookie, stalled one byte short, was buffered whole
/// before the session check: eight of them took the daemon from 16 to 379 MiB. Now
/// the session and CSRF token are checked before the body is read, and a teacher's
/// upload goes to disk as it comes, under a quota per class; a teacher can delete a
/// document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_hold_no_memory_and_answer_strangers_at_once() {
    let app = school().await;
    let (cookie, csrf, class) = marie_and_her_class(&app).await;
    let path = format!("/api/v1/classes/{class}/documents?name=x.pdf");
    let before = app.rss_kib();
    for _ in 0..8 {
        assert_eq!(
            stalled_upload(&app, &path, &[], 47_185_920, 1 << 20).await,
            401
        );
        let no_csrf = [("cookie", cookie.as_str())];
        assert_eq!(
            stalled_upload(&app, &path, &no_csrf, 47_185_920, 1 << 20).await,
            403
        );
    }
    // Too large for one document, or for the class's room: refused before reading.
    let both = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    assert_eq!(
        stalled_upload(&app, &path, &both, 60 << 20, 1024).await,
        413
    );
    // A teacher's stalled uploads are on disk, not in memory.
    let mut held = Vec::new();
    for _ in 0..8 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: box\r\nContent-Length: 20971520\r\ncookie: {cookie}\r\nx-csrf-token: {csrf}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b'y'; (20 << 20) - 1]).await.unwrap();
        held.push(s);
    }
    // Each `write_all` above returned once the box had read all but what the
    // sockets' buffers hold: 8 x 20 MiB went through it. It still serves.
    let r = app
        .call(None, "POST", &path, &both, Some("Le petit chaperon rouge"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let after = app.rss_kib();
    println!(
        "16 stalled 45 MiB uploads, 8 x 20 MiB teacher uploads: RSS {before} KiB -> {after} KiB"
    );
    assert!(
        after < before + 60 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    drop(held);
    // The teacher deletes it: the link is gone.
    let doc = r.json().unwrap();
    let (id, url) = (doc["id"].as_str().unwrap(), doc["url"].as_str().unwrap());
    assert_eq!(app.call(None, "GET", url, &[], None).await.status, 200);
    let del = format!("/api/v1/classes/{class}/documents/{id}");
    assert_eq!(
        app.call(None, "DELETE", &del, &both, None).await.status,
        204
    );
    assert_eq!(app.call(None, "GET", url, &[], None).await.status, 404);
}

/// `/api/v1/status` showed the broker's URL and the data path to anyone; the admin
/// API accepted a cross-site form post from a page opened in the box's own browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lan_sees_no_secrets_and_other_sites_cannot_drive_the_admin_api() {
    let app = Appliance::start("[sync]\nbroker = \"mqtt://127.0.0.1:9\"\n");
    let status = |from| {
        let app = &app;
        async move {
            app.call(from, "GET", "/api/v1/status", &[], None)
                .await
                .json()
                .unwrap()
        }
    };
    let local = status(None).await;
    assert_eq!(local["sync"]["broker"], "mqtt://127.0.0.1:9", "{local}");
    assert!(!local["disk"]["path"].as_str().unwrap().is_empty());
    let lan = status(Some([127, 0, 6, 1].into())).await;
    assert!(lan["sync"]["broker"].is_null(), "{lan}");
    assert_eq!(lan["disk"]["path"], "", "{lan}");
    let revoke = "/api/v1/admin/devices/1/revoke";
    for forged in [
        [
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        [("origin", "http://evil.example"), ("x-nothing", "")],
        [("sec-fetch-site", "cross-site"), ("x-nothing", "")],
    ] {
        let r = app.call(None, "POST", revoke, &forged, Some("")).await;
        assert_eq!(r.status, 403, "{forged:?}: {}", r.body);
    }
    // A script on the box (no Origin) is the admin: no such device.
    assert_eq!(
        app.call(None, "POST", revoke, &[], Some("")).await.status,
        404
    );
}

/// PDFs and images a teacher shared downloaded instead of opening: safe types now
/// open in place (sandboxed, never sniffed), the rest download, accents kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_documents_open_in_place_when_safe() {
    let app = school().await;
    let (cookie, csrf, class) = marie_and_her_class(&app).await;
    let both = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let upload = |name: &'static str| {
        let (app, both) = (&app, &both);
        async move {
            let path = format!("/api/v1/classes/{class}/documents?name={name}");
            let r = app
                .call(None, "POST", &path, both, Some("%PDF-1.4 ..."))
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            let url = r.json().unwrap()["url"].as_str().unwrap().to_string();
            app.call(None, "GET", &url, &[], None).await
        }
    };
    let pdf = upload("dict%C3%A9e.pdf").await;
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    let d = pdf.header("content-disposition").unwrap();
    assert!(
        d.starts_with("inline;") && d.contains("filename*=UTF-8''dict%C3%A9e.pdf"),
        "{d}"
    );
    assert_eq!(pdf.header("x-content-type-options"), Some("nosniff"));
    assert!(
        pdf.header("content-security-policy")
            .unwrap()
            .starts_with("sandbox")
    );
    let page = upload("page.html").await;
    assert_eq!(
        page.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        page.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
}

/// The address `cartable demo` prints answered 404 to a newcomer: the root leads to
/// the sign-in page (a blocked host's root still gets the block page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_leads_to_the_sign_in_page() {
    let app = Appliance::start("");
    let r = app.call(None, "GET", "/", &[], None).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/classe")));
    assert_eq!(
        app.call(None, "GET", "/nothing-here", &[], None)
            .await
            .status,
        404
    );
}

/// A school's IT admin at a laptop on the LAN got 403 on `/admin`: now admins have
/// accounts (made with `cartable admin add`, daemon running or not), sign in on the
/// teachers' page, drive the admin API with a session and its CSRF token, and every
/// action they take is in the audit trail. A teacher's session is not an admin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_it_admin_on_the_lan_signs_in_and_every_action_is_audited() {
    let mut app = school().await;
    let laptop: IpAddr = [127, 0, 7, 1].into();
    let said = app.admin_add("it-admin", "mot-de-passe-long");
    assert!(said.contains("through the daemon"), "{said}");
    app.stop();
    let said = app.admin_add("it-second", "un-autre-secret");
    assert!(said.contains("added (in "), "{said}");
    app.restart();
    // Not signed in: the API says so, the page leads to the sign-in page.
    let r = app
        .call(Some(laptop), "GET", "/api/v1/admin/school", &[], None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = app.call(Some(laptop), "GET", "/admin", &[], None).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/classe")));
    // A teacher's session is not an admin's.
    let (marie, marie_csrf) = session(&sign_in(&app, Some(laptop), "marie", PASSWORD).await);
    let teacher = [
        ("cookie", marie.as_str()),
        ("x-csrf-token", marie_csrf.as_str()),
    ];
    let r = app
        .call(Some(laptop), "GET", "/api/v1/admin/school", &teacher, None)
        .await;
    assert_eq!(r.status, 401);
    // The admin signs in on the same page; the account decides the role.
    let r = sign_in(&app, Some(laptop), "it-admin", "mot-de-passe-long").await;
    assert_eq!(r.json().unwrap()["role"], "admin");
    let (cookie, csrf) = session(&r);
    let read = [("cookie", cookie.as_str())];
    let r = app
        .call(Some(laptop), "GET", "/api/v1/admin/school", &read, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        app.call(Some(laptop), "GET", "/admin", &read, None)
            .await
            .status,
        200
    );
    let code = Some(r#"{"name":"tab-9","class":"CM1-A"}"#);
    let path = "/api/v1/admin/enrolment-codes";
    let r = app.call(Some(laptop), "POST", path, &read, code).await;
    assert_eq!(r.status, 403, "changes want the CSRF token");
    let both = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let r = app.call(Some(laptop), "POST", path, &both, code).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Both the account and the action are in the audit trail, for the central side.
    let db = rusqlite::Connection::open(app.database()).unwrap();
    let audits: Vec<String> = db
        .prepare("SELECT body FROM outbox WHERE body LIKE '%\"audit\"%' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let has = |actor: &str, action: &str| {
        audits
            .iter()
            .any(|a| a.contains(&format!("\"actor\":\"{actor}\"")) && a.contains(action))
    };
    assert!(has("admin@127.0.0.1", "admin added"), "{audits:?}");
    assert!(has("cartable admin add", "admin added"), "{audits:?}");
    assert!(has("it-admin", "enrolment code"), "{audits:?}");
}
