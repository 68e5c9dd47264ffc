//! The classroom hub as a teacher and 30 tablets see it: reference agents over real
//! WebSockets, the teacher's JSON API over HTTP, the box's DNS checked with dig.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cartable_agent::http::{Response, request};
use cartable_agent::{Shared, View};
use cartable_systests::appliance::Appliance;
use cartable_systests::dig::dig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Teacher {
    cookie: String,
    csrf: String,
}

struct Class {
    app: Appliance,
    classes: HashMap<String, i64>,
    agents: Vec<Agent>,
}

struct Agent {
    class: String,
    id: i64,
    token: String,
    view: Shared,
    stop: CancellationToken,
    local: IpAddr,
}

async fn post(app: &Appliance, path: &str, body: &str, headers: &[(&str, &str)]) -> Response {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(app.http, "POST", path, &h, Some(body))
        .await
        .unwrap()
}

async fn get(app: &Appliance, path: &str, headers: &[(&str, &str)]) -> Response {
    request(app.http, "GET", path, headers, None).await.unwrap()
}

async fn wait_for(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn view(a: &Agent) -> View {
    a.view.lock().unwrap().clone()
}

fn ws_url(app: &Appliance) -> String {
    format!("ws://{}/api/v1/devices/ws", app.http)
}

fn start_agent(app: &Appliance, a: &Agent) {
    let (url, token, view, stop, local) = (
        ws_url(app),
        a.token.clone(),
        a.view.clone(),
        a.stop.clone(),
        a.local,
    );
    tokio::spawn(async move {
        let _ = cartable_agent::run_once(&url, &token, Some(local), view, stop).await;
    });
}

/// A box with classes CM1-A (teacher marie, `per_class` tablets) and 6e-B (paul, one
/// tablet), every agent connected.
async fn school(per_class: usize, extra: &str) -> Class {
    let app = Appliance::start(extra);
    app.import(&[
        "class;level\nCM1-A;CM1\n6e-B;6e\n",
        "login,name,classes\nmarie,Marie Curie,CM1-A\npaul,Paul Langevin,6e-B\n",
        "first_name,last_name,class\nLéa,Martin,CM1-A\n",
    ])
    .await;
    for who in ["marie", "paul"] {
        let r = post(
            &app,
            &format!("/api/v1/admin/teachers/{who}/password"),
            r#"{"password":"tableau-noir"}"#,
            &[],
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let mut agents = Vec::new();
    let wanted: Vec<(&str, usize)> = vec![("CM1-A", per_class), ("6e-B", 1)];
    for (class, n) in wanted {
        for i in 0..n {
            let body = json!({ "name": format!("{class}-tab-{i:02}"), "class": class }).to_string();
            let r = post(&app, "/api/v1/admin/enrolment-codes", &body, &[]).await;
            assert_eq!(r.status, 201, "{}", r.body);
            let code = r.json().unwrap()["code"].as_str().unwrap().to_string();
            let (id, token) = cartable_agent::enrol(app.http, &code, "test-tablet")
                .await
                .unwrap();
            // A loopback address of its own, so the DNS rules can tell tablets apart.
            let local: IpAddr = [127, 0, 1, (agents.len() + 1) as u8].into();
            agents.push(Agent {
                class: class.to_string(),
                id,
                token,
                view: Shared::default(),
                stop: CancellationToken::new(),
                local,
            });
        }
    }
    for a in &agents {
        start_agent(&app, a);
    }
    for a in &agents {
        wait_for(
            "every agent welcomed",
            Duration::from_secs(20),
            async || {
                let v = view(a);
                v.connected && v.device_id.is_some() && v.commands >= 1
            },
        )
        .await;
    }
    let mut classes = HashMap::new();
    for (name, teacher) in [("CM1-A", "marie"), ("6e-B", "paul")] {
        let t = sign_in(&app, teacher).await;
        let list = get(&app, "/api/v1/classes", &[("cookie", &t.cookie)])
            .await
            .json()
            .unwrap();
        classes.insert(name.to_string(), list[0]["id"].as_i64().unwrap());
    }
    Class {
        app,
        classes,
        agents,
    }
}

/// Waits until the box's list of the class's tablets (the teacher's view, not the
/// agent's) says whether `device` is connected.
async fn box_sees_connected(s: &Class, t: &Teacher, device: i64, connected: bool) {
    let path = format!("/api/v1/classes/{}/devices", s.classes["CM1-A"]);
    let what = format!("the box to see tablet {device} connected: {connected}");
    wait_for(&what, Duration::from_secs(20), async || {
        let list = get(&s.app, &path, &[("cookie", &t.cookie)])
            .await
            .json()
            .unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == device && d["connected"] == connected)
    })
    .await;
}

async fn sign_in(app: &Appliance, login: &str) -> Teacher {
    let r = post(
        app,
        "/api/v1/login",
        &json!({ "login": login, "password": "tableau-noir" }).to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    Teacher {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: r.json().unwrap()["csrf"].as_str().unwrap().to_string(),
    }
}

async fn command(s: &Class, t: &Teacher, class: &str, action: Value) -> Response {
    let path = format!("/api/v1/classes/{}/commands", s.classes[class]);
    post(
        &s.app,
        &path,
        &json!({ "action": action }).to_string(),
        &[("cookie", &t.cookie), ("x-csrf-token", &t.csrf)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_locks_the_class_and_thirty_tablets_report_locked() {
    let s = school(30, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let r = command(&s, &marie, "CM1-A", json!({ "kind": "lock" })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json().unwrap()["command"].as_u64().unwrap();
    let status_path = format!("/api/v1/commands/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = get(&s.app, &status_path, &[("cookie", &marie.cookie)])
            .await
            .json()
            .unwrap();
        if last["ok"].as_array().unwrap().len() == 30
            && last["pending"].as_array().unwrap().is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no 30 acks: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for a in &s.agents {
        assert_eq!(view(a).state.locked, a.class == "CM1-A", "{}", a.id);
    }
    let tiles = get(
        &s.app,
        &format!("/api/v1/classes/{}/devices", s.classes["CM1-A"]),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    let tiles = tiles.as_array().unwrap();
    assert_eq!(tiles.len(), 30);
    wait_for("the reported states", Duration::from_secs(5), async || {
        let t = get(
            &s.app,
            &format!("/api/v1/classes/{}/devices", s.classes["CM1-A"]),
            &[("cookie", &marie.cookie)],
        )
        .await
        .json()
        .unwrap();
        t.as_array()
            .unwrap()
            .iter()
            .all(|t| t["connected"] == true && t["reported"]["state"]["locked"] == true)
    })
    .await;
    // One-shot to a few tablets.
    let first = s.agents[0].id;
    let path = format!("/api/v1/classes/{}/commands", s.classes["CM1-A"]);
    let r = post(
        &s.app,
        &path,
        &json!({ "action": { "kind": "open_url", "url": "https://lumni.fr/" }, "devices": [first] }).to_string(),
        &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_for("the link opened", Duration::from_secs(5), async || {
        view(&s.agents[0]).done == ["open_url https://lumni.fr/"]
    })
    .await;
    assert!(view(&s.agents[1]).done.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_reach_only_their_classes_and_every_api_wants_a_session() {
    let s = school(2, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let paul = sign_in(&s.app, "paul").await;
    let cm1 = s.classes["CM1-A"];
    // Paul neither sees nor commands CM1-A.
    let r = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/devices"),
        &[("cookie", &paul.cookie)],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        command(&s, &paul, "CM1-A", json!({ "kind": "lock" }))
            .await
            .status,
        403
    );
    // Marie cannot slip 6e-B's tablet into a CM1-A command.
    let other = s.agents.iter().find(|a| a.class == "6e-B").unwrap().id;
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/commands"),
        &json!({ "action": { "kind": "lock" }, "devices": [other] }).to_string(),
        &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // No CSRF token, a wrong one, no session, a device's token instead of a session.
    let path = format!("/api/v1/classes/{cm1}/commands");
    let lock = r#"{"action":{"kind":"lock"}}"#;
    assert_eq!(
        post(&s.app, &path, lock, &[("cookie", &marie.cookie)])
            .await
            .status,
        403
    );
    assert_eq!(
        post(
            &s.app,
            &path,
            lock,
            &[("cookie", &marie.cookie), ("x-csrf-token", &paul.csrf)]
        )
        .await
        .status,
        403
    );
    assert_eq!(post(&s.app, &path, lock, &[]).await.status, 401);
    let bearer = format!("Bearer {}", s.agents[0].token);
    assert_eq!(
        post(&s.app, &path, lock, &[("authorization", &bearer)])
            .await
            .status,
        401
    );
    for p in [
        "/api/v1/classes",
        &format!("/api/v1/classes/{cm1}/devices"),
        "/api/v1/commands/1",
    ] {
        assert_eq!(get(&s.app, p, &[]).await.status, 401, "{p}");
    }
    // Paul cannot read Marie's command's acks.
    let r = command(&s, &marie, "CM1-A", json!({ "kind": "mute" })).await;
    let id = r.json().unwrap()["command"].as_u64().unwrap();
    assert_eq!(
        get(
            &s.app,
            &format!("/api/v1/commands/{id}"),
            &[("cookie", &paul.cookie)]
        )
        .await
        .status,
        403
    );
    assert!(
        s.agents
            .iter()
            .filter(|a| a.class == "6e-B")
            .all(|a| !view(a).state.muted)
    );
    // Garbage commands are clear errors.
    for bad in [
        r#"{"action":{"kind":"reboot"}}"#,
        "{",
        r#"{"action":"lock"}"#,
    ] {
        let r = post(
            &s.app,
            &path,
            bad,
            &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // Five wrong passwords lock the login out.
    for _ in 0..5 {
        let r = post(
            &s.app,
            "/api/v1/login",
            r#"{"login":"marie","password":"wrong-guess"}"#,
            &[],
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = post(
        &s.app,
        "/api/v1/login",
        r#"{"login":"marie","password":"tableau-noir"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_a_revoked_token_is_cut_off() {
    let s = school(2, "").await;
    let url = ws_url(&s.app);
    // Raw frames as tablet 1 (its new connection replaces the agent's).
    for bad in [
        "{",
        r#"{"type":"reboot"}"#,
        r#"{"type":"ack","command":"x","ok":true}"#,
    ] {
        let e = cartable_agent::send_raw(&url, &s.agents[1].token, bad)
            .await
            .unwrap();
        assert!(e.is_some_and(|m| m.contains("unreadable")), "{bad}");
    }
    assert!(
        cartable_agent::send_raw(&url, "not-a-token", "{}")
            .await
            .is_err()
    );
    // The box still serves the others.
    let a = &s.agents[0];
    assert!(view(a).connected && view(&s.agents[2]).connected);

    let r = post(
        &s.app,
        &format!("/api/v1/admin/devices/{}/revoke", a.id),
        "",
        &[],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for(
        "the revoked agent cut off",
        Duration::from_secs(5),
        async || {
            let v = view(a);
            v.revoked && !v.connected
        },
    )
    .await;
    assert!(
        cartable_agent::send_raw(&url, &a.token, "{}")
            .await
            .is_err()
    );
    // Enrolment codes are single-use and guessing is limited.
    let bad = cartable_agent::enrol(s.app.http, "WRONGCODE", "x").await;
    assert!(bad.unwrap_err().to_string().contains("403"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_survives_a_reconnection_and_one_shots_wait_for_an_offline_tablet() {
    let s = school(2, "[hub]\none_shot_ttl_secs = 600\n").await;
    let marie = sign_in(&s.app, "marie").await;
    let a = &s.agents[0];
    assert_eq!(
        command(&s, &marie, "CM1-A", json!({ "kind": "lock" }))
            .await
            .status,
        202
    );
    wait_for("locked", Duration::from_secs(5), async || {
        view(a).state.locked
    })
    .await;
    // The tablet reboots: its agent forgets everything and comes back. The box must
    // have seen it go (not only the agent) for the message to wait for it.
    a.stop.cancel();
    box_sees_connected(&s, &marie, a.id, false).await;
    let r = command(
        &s,
        &marie,
        "CM1-A",
        json!({ "kind": "show_message", "text": "Au tableau !" }),
    )
    .await;
    let st = r.json().unwrap()["status"].clone();
    assert!(
        st["offline"].as_array().unwrap().contains(&json!(a.id)),
        "{st}"
    );
    let again = Agent {
        class: a.class.clone(),
        id: a.id,
        token: a.token.clone(),
        view: Shared::default(),
        stop: CancellationToken::new(),
        local: a.local,
    };
    start_agent(&s.app, &again);
    wait_for(
        "the lock re-applied and the message shown",
        Duration::from_secs(20),
        async || {
            let v = view(&again);
            v.state.locked && v.done == ["show_message Au tableau !"]
        },
    )
    .await;
    // Delivered once: a second reconnection does not show it again.
    again.stop.cancel();
    box_sees_connected(&s, &marie, again.id, false).await;
    let third = Agent {
        view: Shared::default(),
        stop: CancellationToken::new(),
        ..again
    };
    start_agent(&s.app, &third);
    wait_for("back", Duration::from_secs(20), async || {
        view(&third).state.locked
    })
    .await;
    box_sees_connected(&s, &marie, third.id, true).await;
    // A new message after the reconnection: the queue is delivered in order, so once
    // it is shown, the old one would have been shown before it.
    command(
        &s,
        &marie,
        "CM1-A",
        json!({ "kind": "show_message", "text": "Rangez" }),
    )
    .await;
    wait_for("the new message", Duration::from_secs(20), async || {
        !view(&third).done.is_empty()
    })
    .await;
    assert_eq!(view(&third).done, ["show_message Rangez"], "shown once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internet_off_makes_the_box_refuse_that_tablets_queries_at_once() {
    let s = school(2, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let (off, other) = (&s.agents[0], &s.agents[1]);
    let status_from = |ip: IpAddr| {
        let b = ip.to_string();
        dig(s.app.dns, "www.example.org", "A", &["-b", &b]).status
    };
    // No upstream in tests: an allowed name fails upstream, it is not refused.
    assert_ne!(status_from(off.local), "REFUSED");
    let path = format!("/api/v1/classes/{}/commands", s.classes["CM1-A"]);
    let r = post(
        &s.app,
        &path,
        &json!({ "action": { "kind": "internet_off" }, "devices": [off.id] }).to_string(),
        &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
    )
    .await;
    assert_eq!(r.status, 202);
    // "At once": the rule is in force when the teacher's request returns.
    assert_eq!(status_from(off.local), "REFUSED");
    assert_ne!(status_from(other.local), "REFUSED");
    let r = post(
        &s.app,
        &path,
        &json!({ "action": { "kind": "allow_list_only", "domains": ["lumni.fr"] }, "devices": [off.id] }).to_string(),
        &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
    )
    .await;
    assert_eq!(r.status, 202);
    assert_ne!(
        dig(
            s.app.dns,
            "www.lumni.fr",
            "A",
            &["-b", &off.local.to_string()]
        )
        .status,
        "REFUSED"
    );
    let blocked = dig(
        s.app.dns,
        "www.example.org",
        "A",
        &["-b", &off.local.to_string()],
    );
    assert!(
        blocked.status == "REFUSED"
            || blocked.data("A") == ["0.0.0.0"]
            || blocked.status == "NXDOMAIN",
        "{}",
        blocked.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_teacher_signs_in_locks_the_class_and_sees_thirty_locked_tiles() {
    let s = school(30, "").await;
    let browser = cartable_systests::browser::Browser::start().await.unwrap();
    browser
        .goto(&format!("http://{}/classe", s.app.http))
        .await
        .unwrap();
    browser
        .wait(
            "the sign-in form",
            "return !document.getElementById('signin-form').hidden",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    browser.check_accessible("classe-sign-in").await.unwrap();
    browser.type_into("#login", "marie").await.unwrap();
    browser
        .type_into("#password", "tableau-noir")
        .await
        .unwrap();
    browser.click("#signin").await.unwrap();
    browser
        .wait(
            "30 connected tiles",
            "return document.querySelectorAll('.tile:not(.offline)').length === 30",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    browser.click("#cmd-lock").await.unwrap();
    wait_for("30 agents locked", Duration::from_secs(10), async || {
        s.agents
            .iter()
            .filter(|a| a.class == "CM1-A")
            .all(|a| view(a).state.locked)
    })
    .await;
    browser
        .wait(
            "the command's progress, all done",
            "return /^30\\/30 /.test(document.getElementById('progress').textContent) \
             && document.getElementById('missing').textContent === ''",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .wait(
            "30 locked tiles, none waiting",
            "return document.querySelectorAll('.tile[data-locked=\"true\"]').length === 30 \
             && document.querySelectorAll('.tile .pending').length === 0",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The other class's tablet was not touched.
    assert!(
        s.agents
            .iter()
            .filter(|a| a.class == "6e-B")
            .all(|a| !view(a).state.locked)
    );
    // Attendance: Léa's box is ticked by hand and saved.
    browser
        .wait(
            "the pupils",
            "return document.querySelectorAll('#pupils input').length === 1",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser.click("#pupils input").await.unwrap();
    browser.click("#save-attendance").await.unwrap();
    browser
        .wait(
            "attendance saved",
            "return ['Appel enregistré', 'Attendance saved'].includes(document.getElementById('attendance-status').textContent)",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The day's roll call in the history, and its export for a spreadsheet.
    browser
        .wait(
            "the history of the roll calls",
            "return /: 1 présent\\(s\\), 0 absent/.test(document.getElementById('h-days').textContent)",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let csv = browser
        .eval(
            "const x = new XMLHttpRequest(); x.open('GET', document.getElementById('h-csv').href, false); \
             x.send(); return x.responseText",
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("day,pupil,present,teacher\r\n"), "{csv}");
    assert!(csv.contains(",\"Léa Martin\",1,\"marie\""), "{csv}");
    // A group made on the page becomes a target.
    browser.type_into("#group-name", "Lecteurs").await.unwrap();
    browser.click("#group-pupils input").await.unwrap();
    browser.click("#save-group").await.unwrap();
    browser
        .wait(
            "the group saved and offered as a target",
            "return document.getElementById('group-result').textContent === 'Groupe enregistré' \
             && [...document.querySelectorAll('#group option')].some(o => o.textContent === 'Lecteurs')",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .eval("window.scrollTo(0, 0); return true")
        .await
        .unwrap();
    browser.check_accessible("classe").await.unwrap();
    browser.keep_screenshot("classe").await.unwrap();
    browser.resize(390, 844).await.unwrap();
    browser
        .eval("window.scrollTo(0, 0); return true")
        .await
        .unwrap();
    browser.check_accessible("classe-phone").await.unwrap();
    browser.keep_screenshot("classe-phone").await.unwrap();
    browser.resize(1280, 800).await.unwrap();
    // A command to one tile chosen with the keyboard (a tile is a toggle button that
    // keeps the focus through updates): only it waits for its ack, never the others.
    let chosen = browser
        .eval(
            "const t = document.querySelector('.tile'); t.focus(); \
             t.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true})); \
             return document.querySelectorAll('.tile.selected').length === 1 \
               && document.activeElement.classList.contains('tile') \
               && document.activeElement.getAttribute('aria-pressed') === 'true'",
        )
        .await
        .unwrap();
    assert_eq!(chosen, serde_json::json!(true));
    browser.click("button[data-kind=mute]").await.unwrap();
    browser
        .wait(
            "one muted tablet, no tile left waiting",
            "return document.querySelectorAll('.tile .pending').length === 0 \
             && [...document.querySelectorAll('.tile .badges')].filter(b => /son coupé|muted/.test(b.textContent)).length === 1",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // A screen-time rule from the page: the form starts from school days, sends the
    // days ticked, and shows the saved rule when the page is opened again.
    browser
        .wait(
            "the form on school days",
            "return [...document.querySelectorAll('#st-days input:checked')].map(i => i.value).join() === 'mon,tue,wed,thu,fri'",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .eval("document.getElementById('st-minutes').value = '45'; document.querySelector('#st-days input[value=wed]').checked = false; return true")
        .await
        .unwrap();
    browser.click("#st-save").await.unwrap();
    browser
        .wait(
            "the rule saved, and said as a sentence",
            "return document.getElementById('st-result').textContent === 'Règle enregistrée' \
             && document.getElementById('st-sentence').textContent === \
               'Règle en vigueur : 45 minutes par jour, lun, mar, jeu, ven, de 08:00 à 17:00.'",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .goto(&format!("http://{}/classe", s.app.http))
        .await
        .unwrap();
    browser
        .wait(
            "the saved rule shown again",
            "return document.getElementById('st-minutes').value === '45' \
             && [...document.querySelectorAll('#st-days input:checked')].map(i => i.value).join() === 'mon,tue,thu,fri'",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let conn = rusqlite::Connection::open_with_flags(
        s.app.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (saved, events, minutes, days): (i64, i64, i64, String) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM attendance WHERE present = 1),
                    (SELECT count(*) FROM outbox WHERE body LIKE '%\"attendance\"%'),
                    (SELECT minutes_per_day FROM screen_time),
                    (SELECT days FROM screen_time)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(days, "mon,tue,thu,fri");
    // The roll call goes to the central side without the pupil's name (RGPD).
    let sent: String = conn
        .query_row(
            "SELECT body FROM outbox WHERE body LIKE '%\"attendance\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sent.contains("Léa") && !sent.contains("Martin"), "{sent}");
    assert!(sent.contains("\"pupil\":\"p"), "{sent}");
    assert_eq!((saved, events, minutes), (1, 1, 45));
}

mod headwind {
    use super::*;

    const SECRET: &str = "changeme-C3z9vi54";

    fn sha1(s: &str) -> String {
        cartable::hub::headwind::sha1_hex(s)
    }

    /// The request as the agent's Retrofit interface builds it (OkHttp's headers).
    async fn agent(
        app: &Appliance,
        method: &str,
        path: &str,
        number: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let sig = number.map(|n| sha1(&format!("{SECRET}{n}")));
        let mut h: Vec<(&str, &str)> = vec![
            ("Accept-Encoding", "identity"),
            ("User-Agent", "okhttp/4.9.3"),
        ];
        if let Some(s) = &sig {
            h.push(("X-Request-Signature", s));
            h.push(("X-CPU-Arch", "arm64-v8a"));
        }
        if body.is_some() {
            h.push(("Content-Type", "application/json; charset=UTF-8"));
        }
        request(app.http, method, path, &h, body).await.unwrap()
    }

    /// The admin's enrolment code for a Headwind tablet of CM1-A, as made.
    async fn headwind_code(app: &Appliance) -> Value {
        let r = post(
            app,
            "/api/v1/admin/enrolment-codes",
            r#"{"name":"hw-tab","class":"CM1-A","headwind":true}"#,
            &[],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json().unwrap()
    }

    /// The agent's first start: the enrolling POST with its `DeviceEnrollOptions`.
    async fn enrol(app: &Appliance, number: &str) -> Response {
        let path = format!("/rest/public/sync/configuration/{number}");
        agent(
            app,
            "POST",
            &path,
            Some(number),
            Some(r#"{"customer":null,"configuration":null,"groups":null}"#),
        )
        .await
    }

    /// What `GetServerConfigTask.getServerConfigSecure` checks, then the data.
    fn verified_config(r: &Response) -> Value {
        assert_eq!(r.status, 200, "{}", r.body);
        let whole: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(whole["status"], "OK", "{}", r.body);
        let pos = r.body.find("\"data\":").expect("data");
        let data = &r.body[pos + 7..r.body.len() - 1];
        let stripped: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let expected = sha1(&format!("{SECRET}{stripped}"));
        assert!(
            r.header("x-response-signature")
                .unwrap()
                .eq_ignore_ascii_case(&expected),
            "signature"
        );
        let config: Value = serde_json::from_str(data).unwrap();
        // The ServerConfig fields it reads have the types Jackson expects.
        for key in ["lock", "kioskMode", "manageVolume", "lockVolume"] {
            assert!(config[key].is_boolean(), "{key}: {config}");
        }
        for key in ["applications", "applicationSettings", "files"] {
            assert!(config[key].is_array(), "{key}");
        }
        assert!(config["volume"].is_i64() && config["mainApp"].is_string());
        config
    }

    /// The long poll as `PushLongPollingService` sends it: signed
    /// `SHA1(REQUEST_SIGNATURE + serverProject + "/rest/notification/polling/" +
    /// URLEncoder.encode(deviceId, "utf8"))`, the project empty here.
    async fn poll_signed(app: &Appliance, number: &str, signature: Option<&str>) -> Response {
        let mut h: Vec<(&str, &str)> = vec![
            ("Accept-Encoding", "identity"),
            ("User-Agent", "okhttp/4.9.3"),
        ];
        if let Some(s) = signature {
            h.push(("X-Request-Signature", s));
        }
        let path = format!("/rest/notification/polling/{number}");
        request(app.http, "GET", &path, &h, None).await.unwrap()
    }

    fn agent_poll_signature(number: &str) -> String {
        let encoded = cartable::hub::headwind::java_url_encode(number);
        sha1(&format!("{SECRET}/rest/notification/polling/{encoded}"))
    }

    async fn poll(app: &Appliance, number: &str) -> Vec<Value> {
        let r = poll_signed(app, number, Some(&agent_poll_signature(number))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json().unwrap();
        assert_eq!(v["status"], "OK");
        v["data"].as_array().unwrap().clone()
    }

    fn types(messages: &[Value]) -> Vec<String> {
        messages
            .iter()
            .map(|m| m["messageType"].as_str().unwrap().to_string())
            .collect()
    }

    /// A Headwind code comes with Android's provisioning QR, read as ManagedProvisioning
    /// and the agent's `AdminReceiver` read it: the agent's admin component, its APK
    /// from the box's cache with the checksum Android checks (URL-safe base64 of its
    /// SHA-256, worked out here by coreutils' `basenc`), and the extras the agent
    /// keeps (`com.hmdm.BASE_URL` split as its `ServerUrl` does, `SERVER_PROJECT`,
    /// `DEVICE_ID`), with which it then enrols.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_headwind_code_comes_with_the_provisioning_qr_that_installs_the_agent_from_the_box() {
        let apk: Vec<u8> = b"PK\x03\x04"
            .iter()
            .copied()
            .chain((0..300_000u32).map(|i| (i * 13 % 251) as u8))
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, &apk);
        let hex = cartable_protocol::desired::hex(digest.as_ref());
        let s = school(
            0,
            &format!("[hub]\nheadwind_secret = \"{SECRET}\"\nheadwind_apk_sha256 = \"{hex}\"\n"),
        )
        .await;
        let objects =
            cartable::cache::objects::Objects::open(&s.app.dir.path().join("data")).unwrap();
        let sha = cartable::cache::objects::Sha256::parse(&hex).unwrap();
        objects.put(&sha, std::iter::once(Ok(apk.clone()))).unwrap();

        // A code for an ordinary tablet keeps the box's own QR.
        let r = post(
            &s.app,
            "/api/v1/admin/enrolment-codes",
            r#"{"name":"tab"}"#,
            &[],
        )
        .await;
        let plain = r.json().unwrap();
        assert!(plain["provisioning"].is_null());
        assert!(
            plain["qr_payload"]
                .as_str()
                .unwrap()
                .starts_with("cartable:enrol?box=")
        );

        let made = headwind_code(&s.app).await;
        let number = made["code"].as_str().unwrap().to_string();
        // What the QR holds is the JSON, whole.
        let qr: Value = serde_json::from_str(made["qr_payload"].as_str().unwrap()).unwrap();
        assert_eq!(qr, made["provisioning"]);
        let key = |k: &str| qr[format!("android.app.extra.PROVISIONING_{k}")].clone();
        assert_eq!(
            key("DEVICE_ADMIN_COMPONENT_NAME"),
            "com.hmdm.launcher/com.hmdm.launcher.AdminReceiver"
        );
        assert_eq!(key("LEAVE_ALL_SYSTEM_APPS_ENABLED"), true);
        // The download, checked as Android checks it.
        let url = key("DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION");
        let got = std::process::Command::new("curl")
            .args(["-sf", url.as_str().unwrap()])
            .output()
            .unwrap();
        assert!(got.status.success(), "{url}");
        assert_eq!(got.stdout, apk);
        let mut basenc = std::process::Command::new("basenc")
            .arg("--base64url")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        basenc
            .stdin
            .take()
            .unwrap()
            .write_all(ring::digest::digest(&ring::digest::SHA256, &got.stdout).as_ref())
            .unwrap();
        let expected = String::from_utf8(basenc.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(key("DEVICE_ADMIN_PACKAGE_CHECKSUM"), expected.trim());
        // The agent's extras, and its enrolment with them.
        let extras = key("ADMIN_EXTRAS_BUNDLE");
        assert_eq!(extras["com.hmdm.DEVICE_ID"], number.as_str());
        assert_eq!(extras["com.hmdm.SERVER_PROJECT"], "");
        assert_eq!(
            extras["com.hmdm.BASE_URL"],
            format!("http://{}", s.app.http)
        );
        verified_config(&enrol(&s.app, &number).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_headwind_agent_enrols_and_is_driven_by_the_teacher() {
        let s = school(
            1,
            &format!(
                "[hub]\nheadwind_secret = \"{SECRET}\"\nwipe_packages = [\"org.ent.pupil\"]\n"
            ),
        )
        .await;
        let number = headwind_code(&s.app).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(number.len(), 24, "a Headwind number is a credential");
        let path = format!("/rest/public/sync/configuration/{number}");

        // Unknown before enrolment; a wrong signature is refused.
        let r = agent(&s.app, "GET", &path, Some(&number), None).await;
        assert_eq!(r.json().unwrap()["message"], "error.notfound.device");
        let r = agent(&s.app, "POST", &path, Some("someone-else"), Some("{}")).await;
        assert_eq!(r.status, 403);

        // First start: the enrolling POST with DeviceEnrollOptions.
        let config = verified_config(&enrol(&s.app, &number).await);
        assert_eq!(config["lock"], false);
        let info = json!({ "deviceId": number, "model": "Lenovo TB-X606F", "batteryLevel": 77,
            "androidVersion": "10", "imei": "", "launcherVersion": "6.14" });
        let r = agent(
            &s.app,
            "POST",
            "/rest/public/sync/info",
            None,
            Some(&info.to_string()),
        )
        .await;
        assert_eq!(r.json().unwrap()["status"], "OK");

        // The long poll is signed as the agent signs it; an unsigned one, or one signed
        // the way the configuration is, is refused (it would hand the tablet's
        // commands to anyone who knows its number).
        assert_eq!(poll_signed(&s.app, &number, None).await.status, 403);
        let config_style = sha1(&format!("{SECRET}{number}"));
        assert_eq!(
            poll_signed(&s.app, &number, Some(&config_style))
                .await
                .status,
            403
        );

        // The first poll: fetch the configuration again. Then the teacher locks the class.
        assert_eq!(types(&poll(&s.app, &number).await), ["configUpdated"]);
        let app = &s.app;
        let waiting = poll(app, &number);
        let marie = sign_in(&s.app, "marie").await;
        // Whichever comes first, the answer is the same: a command queued before the
        // poll is delivered by it, a poll waiting when the command comes is woken.
        let teacher = command(&s, &marie, "CM1-A", json!({ "kind": "lock" }));
        let (messages, r) = tokio::join!(waiting, teacher);
        assert_eq!(r.status, 202);
        assert_eq!(types(&messages), ["configUpdated"]);
        let config = verified_config(&agent(&s.app, "GET", &path, Some(&number), None).await);
        assert_eq!(config["lock"], true);

        // One-shots: a link, an app, the end of the lesson.
        let hw_id = get(
            &s.app,
            &format!("/api/v1/classes/{}/devices", s.classes["CM1-A"]),
            &[("cookie", &marie.cookie)],
        )
        .await
        .json()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hw-tab")
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["connected"].as_bool().unwrap(),
                t["reported"]["battery"].clone(),
            )
        })
        .unwrap();
        assert!(hw_id.1, "a polling Headwind tablet shows as connected");
        assert_eq!(hw_id.2, 77);
        let path_cmd = format!("/api/v1/classes/{}/commands", s.classes["CM1-A"]);
        for action in [
            json!({ "kind": "open_url", "url": "https://lumni.fr/" }),
            json!({ "kind": "launch_app", "package": "org.geogebra.android" }),
            json!({ "kind": "logout_and_wipe" }),
        ] {
            let r = post(
                &s.app,
                &path_cmd,
                &json!({ "action": action, "devices": [hw_id.0] }).to_string(),
                &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
            )
            .await;
            assert_eq!(r.status, 202, "{}", r.body);
        }
        let messages = poll(&s.app, &number).await;
        assert_eq!(
            types(&messages),
            ["intent", "runApp", "clearAppData", "purgeDir", "purgeDir"]
        );
        let payload = |i: usize| -> Value {
            serde_json::from_str(messages[i]["payload"].as_str().unwrap()).unwrap()
        };
        assert_eq!(
            payload(0),
            json!({ "action": "android.intent.action.VIEW", "data": "https://lumni.fr/" })
        );
        assert_eq!(payload(1), json!({ "pkg": "org.geogebra.android" }));
        assert_eq!(payload(2), json!({ "pkg": "org.ent.pupil" }));
        assert_eq!(payload(3)["recursive"], "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pupil_signs_in_with_a_card_and_the_tablet_is_wiped_at_logout() {
    use cartable_protocol::device::FromDevice;
    let s = school(1, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let cm1 = s.classes["CM1-A"];
    let page = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/cards"),
        &[("cookie", &marie.cookie)],
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Léa Martin") && page.body.contains("<svg"));
    // Each card says where it belongs and what to do with it.
    assert!(page.body.contains("default · CM1-A"), "{}", page.body);
    assert!(page.body.contains("Montre cette carte à la tablette"));
    let card = page
        .body
        .split("data-card=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Paul cannot print CM1-A's cards.
    let paul = sign_in(&s.app, "paul").await;
    assert_eq!(
        get(
            &s.app,
            &format!("/api/v1/classes/{cm1}/cards"),
            &[("cookie", &paul.cookie)]
        )
        .await
        .status,
        403
    );
    // A card is no key to the teachers' API.
    for h in [format!("Bearer {card}"), format!("cartable_session={card}")] {
        let name = if h.starts_with("Bearer") {
            "authorization"
        } else {
            "cookie"
        };
        assert_eq!(
            get(&s.app, "/api/v1/classes", &[(name, &h)]).await.status,
            401
        );
    }

    // The tablet of CM1-A, now with a user: restart its agent with a way to act.
    let a = &s.agents[0];
    a.stop.cancel();
    wait_for("offline", Duration::from_secs(5), async || {
        !view(a).connected
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (url, token, v) = (ws_url(&s.app), a.token.clone(), Shared::default());
    let stop = CancellationToken::new();
    {
        let (v, stop) = (v.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = cartable_agent::run_with(&url, &token, None, v, stop, Some(rx)).await;
        });
    }
    wait_for("connected", Duration::from_secs(5), async || {
        v.lock().unwrap().commands >= 1
    })
    .await;
    tx.send(FromDevice::PupilLogin { card: card.clone() })
        .unwrap();
    wait_for("the pupil's session", Duration::from_secs(5), async || {
        v.lock().unwrap().pupil == Some(("Léa Martin".into(), "CM1-A".into()))
    })
    .await;
    let tiles = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/devices"),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    assert_eq!(tiles[0]["pupil"][1], "Léa Martin");
    assert_eq!(tiles[0]["pupil_session"], true);

    // Logout: the tablet is told to wipe; its ack closes the session.
    tx.send(FromDevice::PupilLogout).unwrap();
    wait_for("the wipe", Duration::from_secs(5), async || {
        let v = v.lock().unwrap();
        v.wipes == 1 && v.pupil.is_none()
    })
    .await;
    wait_for(
        "the session closed as wiped",
        Duration::from_secs(5),
        async || {
            let conn = rusqlite::Connection::open_with_flags(
                s.app.database(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            conn.query_row(
                "SELECT count(*) FROM pupil_sessions WHERE wiped = 1 AND ended_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 1
        },
    )
    .await;
    let tiles = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/devices"),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    assert_eq!(tiles[0]["pupil_session"], false);

    // Revoked: every printed copy stops working. Forgeries never worked.
    let pupil = page
        .body
        .split("data-pupil=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/pupils/{pupil}/revoke-card"),
        "",
        &[("cookie", &marie.cookie), ("x-csrf-token", &marie.csrf)],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let forged = format!("{}0", &card[..card.len() - 1]);
    for bad in [card.clone(), forged] {
        tx.send(FromDevice::PupilLogin { card: bad }).unwrap();
    }
    wait_for("two refusals", Duration::from_secs(5), async || {
        v.lock()
            .unwrap()
            .errors
            .iter()
            .filter(|e| e.contains("unknown or revoked card"))
            .count()
            == 2
    })
    .await;
    assert!(v.lock().unwrap().pupil.is_none());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_group_is_commanded_through_its_pupils_tablets() {
    let s = school(2, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let cm1 = s.classes["CM1-A"];
    let pupils = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/pupils"),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    let lea = pupils[0]["id"].as_i64().unwrap();
    let tablet = s.agents[0].id;
    let r = post(
        &s.app,
        &format!("/api/v1/admin/devices/{tablet}/pupil"),
        &json!({ "pupil": lea }).to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let both = [
        ("cookie", marie.cookie.as_str()),
        ("x-csrf-token", marie.csrf.as_str()),
    ];
    // A pupil of another class cannot join.
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/groups"),
        &json!({ "name": "lecteurs", "pupils": [lea, 9999] }).to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/groups"),
        &json!({ "name": "lecteurs", "pupils": [lea] }).to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let group = r.json().unwrap()["group"].as_i64().unwrap();
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/commands"),
        &json!({ "action": { "kind": "lock" }, "group": group }).to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_for(
        "the group's tablet locked",
        Duration::from_secs(5),
        async || view(&s.agents[0]).state.locked,
    )
    .await;
    assert!(!view(&s.agents[1]).state.locked);
    let tiles = get(
        &s.app,
        &format!("/api/v1/classes/{cm1}/devices"),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    assert!(
        tiles
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["pupil"][1] == "Léa Martin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_hours_the_box_locks_the_class_and_frees_it_when_allowed_again() {
    let s = school(
        2,
        "[hub]\nscreen_time_tick_secs = 1\n[filter]\ntimezone = \"UTC\"\n",
    )
    .await;
    let marie = sign_in(&s.app, "marie").await;
    let cm1 = s.classes["CM1-A"];
    let both = [
        ("cookie", marie.cookie.as_str()),
        ("x-csrf-token", marie.csrf.as_str()),
    ];
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let rule = json!({ "minutes_per_day": 45, "days": ["mon-sun"],
        "from": format!("{:02}:00", (hour + 2) % 24), "to": format!("{:02}:00", (hour + 3) % 24) });
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/screen-time"),
        &rule.to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for(
        "the class locked and offline",
        Duration::from_secs(10),
        async || {
            s.agents.iter().filter(|a| a.class == "CM1-A").all(|a| {
                let v = view(a);
                v.state.locked && v.state.internet == cartable_protocol::device::Internet::Off
            })
        },
    )
    .await;
    assert!(
        s.agents
            .iter()
            .filter(|a| a.class == "6e-B")
            .all(|a| !view(a).state.locked)
    );
    // Bad rules are refused.
    for bad in [
        json!({ "minutes_per_day": 45, "days": [], "from": "08:00", "to": "09:00" }),
        json!({ "minutes_per_day": 45, "days": ["mon"], "from": "8h", "to": "09:00" }),
    ] {
        let r = post(
            &s.app,
            &format!("/api/v1/classes/{cm1}/screen-time"),
            &bad.to_string(),
            &both,
        )
        .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let open = json!({ "minutes_per_day": 0, "days": ["mon-sun"], "from": "00:00", "to": "24:00" });
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/screen-time"),
        &open.to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 204);
    wait_for(
        "the class free again",
        Duration::from_secs(10),
        async || {
            s.agents.iter().all(|a| {
                let v = view(a);
                !v.state.locked && v.state.internet == cartable_protocol::device::Internet::On
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_admin_imports_the_school_and_makes_accounts_and_codes() {
    let app = Appliance::start("");
    let browser = cartable_systests::browser::Browser::start().await.unwrap();
    browser
        .goto(&format!("http://{}/admin", app.http))
        .await
        .unwrap();
    browser.click("#tabs [data-tab=school]").await.unwrap();
    for csv in [
        "class,level\\nCE2-B,CE2\\n",
        "login,name,classes\\nines,Inès Dupont,CE2-B\\n",
        "first_name,last_name,class\\nNoé,Petit,CE2-B\\nJade,Moreau,CE2-B\\n",
    ] {
        browser
            .eval(&format!(
                "document.getElementById('csv').value = \"{csv}\"; return true"
            ))
            .await
            .unwrap();
        browser.click("#import").await.unwrap();
        browser
            .wait(
                "the import's answer",
                "return document.getElementById('import-result').textContent.includes('Importé')",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        browser
            .eval("document.getElementById('import-result').textContent = ''; return true")
            .await
            .unwrap();
    }
    browser.type_into("#pw-login", "ines").await.unwrap();
    browser
        .type_into("#pw-password", "craie-blanche")
        .await
        .unwrap();
    browser.click("#set-password").await.unwrap();
    browser
        .wait(
            "the password saved",
            "return document.getElementById('pw-result').textContent === '✓'",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .wait(
            "the class in the list",
            "return document.querySelectorAll('#code-class option').length === 2",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser.type_into("#code-name", "ce2-tab-01").await.unwrap();
    browser
        .eval("document.getElementById('code-class').value = 'CE2-B'; return true")
        .await
        .unwrap();
    browser.click("#new-code").await.unwrap();
    browser
        .wait(
            "a code",
            "return /^[A-Z0-9]{8}$/.test(document.getElementById('code').textContent)",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let code = browser
        .eval("return document.getElementById('code').textContent")
        .await
        .unwrap();
    let (id, _) = cartable_agent::enrol(app.http, code.as_str().unwrap(), "t")
        .await
        .unwrap();
    assert!(id > 0);
    let school = get(&app, "/api/v1/admin/school", &[]).await.json().unwrap();
    assert_eq!(school["pupils"].as_array().unwrap().len(), 2);
    assert_eq!(school["teachers"][0]["has_password"], true);
    // The new teacher signs in; a pupil is deleted (the API the page's button calls).
    let r = post(
        &app,
        "/api/v1/login",
        r#"{"login":"ines","password":"craie-blanche"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let noe = school["pupils"][1]["id"].as_i64().unwrap();
    let r = request(
        app.http,
        "DELETE",
        &format!("/api/v1/admin/pupils/{noe}"),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let school = get(&app, "/api/v1/admin/school", &[]).await.json().unwrap();
    assert_eq!(school["pupils"].as_array().unwrap().len(), 1);
    // A CSV sent as a form (what a cross-site page could send) is refused.
    let r = request(
        app.http,
        "POST",
        "/api/v1/admin/import",
        &[("content-type", "text/plain")],
        Some("class,level\nX,Y\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_shares_an_uploaded_document_with_a_tablet() {
    let s = school(1, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let cm1 = s.classes["CM1-A"];
    let both = [
        ("cookie", marie.cookie.as_str()),
        ("x-csrf-token", marie.csrf.as_str()),
    ];
    let path = format!("/api/v1/classes/{cm1}/documents?name=fiche%20lecture.txt");
    assert_eq!(
        request(s.app.http, "POST", &path, &[], Some("x"))
            .await
            .unwrap()
            .status,
        401
    );
    let r = request(
        s.app.http,
        "POST",
        &path,
        &both,
        Some("Le petit chaperon rouge"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let url = r.json().unwrap()["url"].as_str().unwrap().to_string();
    let r = post(
        &s.app,
        &format!("/api/v1/classes/{cm1}/commands"),
        &json!({ "action": { "kind": "share_document", "url": url, "name": "fiche" } }).to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 202);
    wait_for("the document shared", Duration::from_secs(5), async || {
        view(&s.agents[0]).done == [format!("share_document fiche {url}")]
    })
    .await;
    let doc = get(&s.app, &url, &[]).await;
    assert_eq!(
        (doc.status, doc.body.as_str()),
        (200, "Le petit chaperon rouge")
    );
    for bad in [
        "/documents/../cartable.db",
        "/documents/zz/fiche_lecture.txt",
        "/documents/0123456789abcdef0123456789abcdef/..%2Fcartable.db",
    ] {
        assert_eq!(get(&s.app, bad, &[]).await.status, 404, "{bad}");
    }
}

/// A teacher's allow list of 8,000 names was accepted with 202, then the tablets only
/// ever got `welcome` (the frame was over the limit) and showed offline, and their
/// DNS rule was dropped. And a tablet could acknowledge another class's command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_is_refused_and_only_its_targets_acknowledge() {
    let s = school(1, "").await;
    let marie = sign_in(&s.app, "marie").await;
    let both = [
        ("cookie", marie.cookie.as_str()),
        ("x-csrf-token", marie.csrf.as_str()),
    ];
    let path = format!("/api/v1/classes/{}/commands", s.classes["CM1-A"]);
    let domains: Vec<String> = (0..8000)
        .map(|i| format!("site-{i:05}.example.org"))
        .collect();
    let big = json!({ "action": { "kind": "allow_list_only", "domains": domains } });
    let r = post(&s.app, &path, &big.to_string(), &both).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let a = &s.agents[0];
    assert_eq!(
        view(a).state.internet,
        Default::default(),
        "nothing changed"
    );
    assert!(view(a).connected);
    // CM1-A's tablet goes offline; its lock waits. 6e-B's tablet acknowledges it.
    a.stop.cancel();
    wait_for("offline", Duration::from_secs(5), async || {
        !view(a).connected
    })
    .await;
    let r = post(
        &s.app,
        &path,
        &json!({ "action": { "kind": "lock" } }).to_string(),
        &both,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let command = r.json().unwrap()["command"].as_u64().unwrap();
    let other = s.agents.iter().find(|x| x.class == "6e-B").unwrap();
    let forged = json!({ "type": "ack", "command": command, "ok": true }).to_string();
    // The garbage frame after it is answered with an error once the ack was read.
    let e = cartable_agent::send_frames(&ws_url(&s.app), &other.token, &[&forged, "{"])
        .await
        .unwrap();
    assert!(e.is_some_and(|m| m.contains("unreadable")));
    let st = get(
        &s.app,
        &format!("/api/v1/commands/{command}"),
        &[("cookie", &marie.cookie)],
    )
    .await
    .json()
    .unwrap();
    assert_eq!(st["ok"], json!([]), "{st}");
    assert_eq!(st["offline"], json!([a.id]), "{st}");
}
