//! Drives a running box for `tests/bench/hub.sh`: enrols and connects N reference
//! agents in this one process (a class of 30 and a class of the rest), then times
//! teachers' commands from the request to the last tablet's ack, and reads the box's
//! memory per connected device.
//!
//!   hub-bench BOX_HTTP BOX_PID DEVICES ROUNDS

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cartable_agent::Shared;
use cartable_agent::http::request;
use serde_json::json;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

async fn post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<cartable_agent::http::Response> {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(addr, "POST", path, &h, Some(body)).await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, pid, devices, rounds] = args.as_slice() else {
        bail!("usage: hub-bench BOX_HTTP BOX_PID DEVICES ROUNDS");
    };
    let addr: SocketAddr = addr.parse()?;
    let pid: u32 = pid.parse()?;
    let devices: usize = devices.parse()?;
    let rounds: usize = rounds.parse()?;
    for csv in [
        "class,level\nclasse-30,CM1\nle-reste,6e\n",
        "login,name,classes\nmarie,Marie,classe-30\npaul,Paul,le-reste\n",
    ] {
        let r = request(
            addr,
            "POST",
            "/api/v1/admin/import",
            &[("content-type", "text/csv")],
            Some(csv),
        )
        .await?;
        anyhow::ensure!(r.status == 200, "import: {}", r.body);
    }
    for who in ["marie", "paul"] {
        post(
            addr,
            &format!("/api/v1/admin/teachers/{who}/password"),
            r#"{"password":"tableau-noir"}"#,
            &[],
        )
        .await?;
    }
    let mut tokens = Vec::new();
    for i in 0..devices {
        let class = if i < 30 { "classe-30" } else { "le-reste" };
        let r = post(
            addr,
            "/api/v1/admin/enrolment-codes",
            &json!({"name": format!("tab-{i:04}"), "class": class}).to_string(),
            &[],
        )
        .await?;
        let code = r.json()?["code"].as_str().context("code")?.to_string();
        tokens.push(cartable_agent::enrol(addr, &code, "bench").await?.1);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let url = format!("ws://{addr}/api/v1/devices/ws");
    let stop = tokio_util::sync::CancellationToken::new();
    let views: Vec<Shared> = tokens
        .iter()
        .map(|t| {
            let view = Shared::default();
            let (url, t, v, stop) = (url.clone(), t.clone(), view.clone(), stop.clone());
            tokio::spawn(async move {
                let _ = cartable_agent::run_once(&url, &t, None, v, stop).await;
            });
            view
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while views.iter().any(|v| v.lock().unwrap().commands == 0) {
        anyhow::ensure!(Instant::now() < deadline, "not every agent connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    println!(
        "connected: {devices} agents; box RSS {} KiB before, {} KiB after: {:.1} KiB per device",
        before,
        after,
        (after as f64 - before as f64) / devices as f64
    );

    // Teachers.
    let mut sessions = Vec::new();
    for who in ["marie", "paul"] {
        let r = post(
            addr,
            "/api/v1/login",
            &json!({"login": who, "password": "tableau-noir"}).to_string(),
            &[],
        )
        .await?;
        let cookie = r
            .header("set-cookie")
            .context("cookie")?
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let csrf = r.json()?["csrf"].as_str().context("csrf")?.to_string();
        let classes = request(addr, "GET", "/api/v1/classes", &[("cookie", &cookie)], None)
            .await?
            .json()?;
        sessions.push((cookie, csrf, classes[0]["id"].as_i64().context("class")?));
    }
    // Everyone in one class: the teacher of the rest also gets classe-30's tablets
    // for the "all devices" figure by sending to both classes at once.
    for (label, which) in [
        ("class of 30", vec![0usize]),
        (&*format!("all {devices}"), vec![0, 1]),
    ] {
        let targets: Vec<&Shared> = if which.len() == 1 {
            views[..30.min(devices)].iter().collect()
        } else {
            views.iter().collect()
        };
        let mut latencies = Vec::new();
        for round in 0..rounds {
            let kind = if round % 2 == 0 { "lock" } else { "unlock" };
            let started = Instant::now();
            let mut ids = Vec::new();
            let sends = which.iter().map(|&w| {
                let (cookie, csrf, class) = sessions[w].clone();
                async move {
                    let r = post(
                        addr,
                        &format!("/api/v1/classes/{class}/commands"),
                        &json!({"action": {"kind": kind}}).to_string(),
                        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
                    )
                    .await?;
                    anyhow::ensure!(r.status == 202, "command: {}", r.body);
                    r.json()?["command"].as_u64().context("command id")
                }
            });
            for id in futures_join(sends).await {
                ids.push(id?);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let last = loop {
                let done: Option<Vec<Instant>> = targets
                    .iter()
                    .map(|v| {
                        v.lock()
                            .unwrap()
                            .last_command
                            .filter(|(c, _)| ids.contains(c))
                            .map(|(_, t)| t)
                    })
                    .collect();
                if let Some(times) = done {
                    break times.into_iter().max().unwrap_or(started);
                }
                anyhow::ensure!(Instant::now() < deadline, "acks missing");
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            latencies.push(last.duration_since(started));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.sort();
        println!(
            "{label}: {} commands, request to last ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            rounds,
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            latencies.last().unwrap().as_secs_f64() * 1000.0
        );
    }
    stop.cancel();
    Ok(())
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<anyhow::Result<u64>>
where
    F: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| Err(e.into())));
    }
    out
}
