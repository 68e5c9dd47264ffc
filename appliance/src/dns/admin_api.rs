//! The filter's admin API: explain a verdict, read the counters (live, and per hour
//! from the store) and the query log.
//!
//! It answers a signed-in admin (the hub's session, marked by `app`'s admin gate) or a
//! caller on the box itself (127.0.0.1, ::1: a script, `ssh -L`), never anyone else
//! on the school network. What must not live here: anything that changes the filter
//! (that is `reload`'s and `policy_edit`'s).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::HttpState;
use crate::base::http::{AdminCaller, admin_or_local};
use crate::dns::querylog::Outcome;
use crate::filter::decide::{Action, Reason};
use crate::filter::name::normalize;

#[derive(Deserialize)]
pub(crate) struct TestParams {
    name: String,
    client: Option<IpAddr>,
    /// `YYYY-MM-DD HH:MM` in the filter's zone, or Unix seconds (a query log line's
    /// time); default: now.
    at: Option<String>,
}

#[derive(Serialize)]
struct TestAnswer {
    name: String,
    verdict: &'static str,
    policy: String,
    category: Option<String>,
    entry: Option<String>,
    explanation: String,
    /// Where the policies that decided come from (the configuration file, the central
    /// side).
    policies_from: &'static str,
}

/// `GET /api/v1/filter/test?name=NAME[&client=IP][&at=YYYY-MM-DD HH:MM]`: the
/// running filter's verdict, device rules from the hub included.
pub(crate) async fn test(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
    Query(p): Query<TestParams>,
) -> Response {
    if let Err(denied) = admin_or_local(&peer, caller.as_deref()) {
        return denied.into_response();
    }
    let engine = &state.engine;
    let Some(name) = normalize(&p.name) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("`{}` is not a domain name\n", p.name),
        )
            .into_response();
    };
    let filter = engine.filter();
    let client = p.client.unwrap_or(peer.ip());
    let now = match &p.at {
        Some(at) if at.bytes().all(|b| b.is_ascii_digit()) && !at.is_empty() => {
            match at
                .parse()
                .ok()
                .and_then(|s| jiff::Timestamp::from_second(s).ok())
            {
                Some(t) => crate::base::clock::LocalTime::at(t, state.clock.zone()),
                None => return (StatusCode::BAD_REQUEST, "at: out of range\n").into_response(),
            }
        }
        Some(at) => match crate::base::clock::LocalTime::parse(at, state.clock.zone()) {
            Ok(t) => t,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        },
        None => state.clock.local(),
    };
    let device = engine.device_rule(client);
    let mac = engine.mac_of(client);
    let policies_from = state.filter.policies_from();
    // One decision; its explanation reads list files, so off the async threads.
    let answer = tokio::task::spawn_blocking(move || {
        let v = filter.decide_for(
            &name,
            client,
            mac.as_ref(),
            now,
            device.as_ref(),
            &mut crate::filter::decide::Listing::Unknown,
        );
        let verdict = match v.action {
            Action::Allow => "allow",
            Action::Block(_) => "block",
            Action::NxDomain => "nxdomain",
            Action::Refuse => "refuse",
            Action::Rewrite(_) => "safe_search",
        };
        let (category, entry) = match v.reason {
            Reason::Listed {
                entry, category, ..
            } => (
                Some(
                    filter.index.categories()[usize::from(category)]
                        .name
                        .clone(),
                ),
                Some(entry.to_string()),
            ),
            Reason::Allowed { entry } | Reason::Denied { entry } => (None, Some(entry.to_string())),
            _ => (None, None),
        };
        TestAnswer {
            policy: filter.policies.get(v.policy).name.clone(),
            explanation: filter.explain(&name, &v),
            verdict,
            category,
            entry,
            name,
            policies_from,
        }
    })
    .await;
    match answer {
        Ok(a) => Json(a).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Serialize)]
struct Stats {
    queries: u64,
    blocked: u64,
    safe_search: u64,
    refused: u64,
    local: u64,
    cache_hits: u64,
    stale_served: u64,
    forwarded: u64,
    servfail: u64,
    malformed: u64,
    rate_limited: u64,
    cache_entries: usize,
    listed_names: u64,
    /// Blocked queries per category, for the categories that blocked any.
    blocked_by_category: std::collections::BTreeMap<String, u64>,
    /// The most active clients: queries and blocked queries.
    clients: Vec<ClientStats>,
    /// The names blocked most often among the query log's lines (the log is a ring:
    /// the recent past, not the day).
    top_blocked: Vec<NameCount>,
}

#[derive(Serialize)]
struct NameCount {
    name: String,
    count: u64,
}

#[derive(Serialize)]
struct ClientStats {
    client: IpAddr,
    queries: u64,
    blocked: u64,
}

/// `GET /api/v1/filter/stats`
pub(crate) async fn stats(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
) -> Response {
    if let Err(denied) = admin_or_local(&peer, caller.as_deref()) {
        return denied.into_response();
    }
    let engine = &state.engine;
    let s = &engine.stats;
    let filter = engine.filter();
    let blocked_by_category = filter
        .index
        .categories()
        .iter()
        .filter_map(|c| {
            let n = s.category(c.id);
            (n > 0).then(|| (c.name.clone(), n))
        })
        .collect();
    Json(Stats {
        queries: s.total(|c| &c.queries),
        blocked: s.total(|c| &c.blocked),
        safe_search: s.total(|c| &c.rewritten),
        refused: s.total(|c| &c.refused),
        local: s.total(|c| &c.local),
        cache_hits: s.total(|c| &c.cache_hits),
        stale_served: s.total(|c| &c.stale_served),
        forwarded: s.total(|c| &c.forwarded),
        servfail: s.total(|c| &c.servfail),
        malformed: s.total(|c| &c.malformed),
        rate_limited: s.total(|c| &c.rate_limited),
        cache_entries: engine.cache().len(),
        listed_names: filter.index.names(),
        blocked_by_category,
        top_blocked: top_blocked(&engine.log, 10),
        clients: s
            .top_clients(200)
            .into_iter()
            .map(|(client, queries, blocked)| ClientStats {
                client,
                queries,
                blocked,
            })
            .collect(),
    })
    .into_response()
}

/// The `limit` names blocked most often in the query log.
fn top_blocked(log: &crate::dns::querylog::QueryLog, limit: usize) -> Vec<NameCount> {
    let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for e in log.recent(usize::MAX, |_, _, o| o == Outcome::Blocked) {
        *counts.entry(e.name).or_default() += 1;
    }
    let mut top: Vec<NameCount> = counts
        .into_iter()
        .map(|(name, count)| NameCount { name, count })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    top.truncate(limit);
    top
}

#[derive(Deserialize)]
pub(crate) struct LogParams {
    limit: Option<usize>,
    client: Option<IpAddr>,
    /// Lines whose name contains this.
    name: Option<String>,
    /// Lines with this outcome (`allowed`, `blocked`, `safe_search`, ...).
    outcome: Option<Outcome>,
}

#[derive(Serialize)]
struct LogLine {
    at: u64,
    client: IpAddr,
    name: String,
    qtype: u16,
    outcome: crate::dns::querylog::Outcome,
    category: Option<String>,
}

/// `GET /api/v1/filter/log[?limit=N][&client=IP][&name=PART][&outcome=O]`: the last
/// queries, newest first.
pub(crate) async fn log(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
    Query(p): Query<LogParams>,
) -> Response {
    if let Err(denied) = admin_or_local(&peer, caller.as_deref()) {
        return denied.into_response();
    }
    let engine = &state.engine;
    let filter = engine.filter();
    let categories = filter.index.categories();
    let lines: Vec<LogLine> = engine
        .log
        .recent(
            p.limit.unwrap_or(100).min(10_000),
            |client, name, outcome| {
                p.client.is_none_or(|c| c == client)
                    && p.outcome.is_none_or(|o| o == outcome)
                    && p.name
                        .as_deref()
                        .is_none_or(|n| name.contains(&n.to_ascii_lowercase()))
            },
        )
        .into_iter()
        .map(|e| LogLine {
            at: e.at,
            client: e.client,
            name: e.name,
            qtype: e.qtype,
            outcome: e.outcome,
            category: e
                .category
                .and_then(|c| categories.get(usize::from(c)))
                .map(|c| c.name.clone()),
        })
        .collect();
    Json(lines).into_response()
}

#[derive(Deserialize)]
pub(crate) struct HourlyParams {
    /// How many hours back (24 for the day, 168 for the week; at most 31 days).
    hours: Option<u32>,
}

#[derive(Serialize, Default)]
struct Hour {
    /// The hour's start, Unix time.
    hour: i64,
    queries: u64,
    blocked: u64,
}

/// `GET /api/v1/filter/hourly[?hours=N]`: queries and blocked queries per hour, and
/// blocked queries per category over those hours, from the counters the server keeps
/// in the store (every hour present, zero or not, so a chart has no holes).
pub(crate) async fn hourly(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
    Query(p): Query<HourlyParams>,
) -> crate::base::http::HttpResult {
    admin_or_local(&peer, caller.as_deref())?;
    // The last minute's counters too: the page shows what the tablets just did.
    if let Err(e) = state
        .engine
        .flushed
        .flush(&state.engine, &state.store)
        .await
    {
        tracing::warn!(error = %e, "cannot flush the DNS counters before reading them");
    }
    let hours = i64::from(p.hours.unwrap_or(24).clamp(1, 31 * 24));
    let now = state.clock.unix() / 3600;
    let first = now - hours + 1;
    let rows: Vec<(i64, String, i64)> = state
        .store
        .read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT hour, counter, value FROM dns_hourly WHERE hour >= ?1 ORDER BY hour",
            )?;
            let rows = st
                .query_map([first], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await?;
    let mut series: Vec<Hour> = (first..=now)
        .map(|h| Hour {
            hour: h * 3600,
            ..Hour::default()
        })
        .collect();
    let mut categories: std::collections::BTreeMap<String, u64> = Default::default();
    for (hour, counter, value) in rows {
        let Some(slot) = series.get_mut((hour - first) as usize) else {
            continue;
        };
        let value = value.max(0) as u64;
        match counter.as_str() {
            "queries" => slot.queries += value,
            "blocked" => slot.blocked += value,
            c => {
                if let Some(cat) = c.strip_prefix("blocked:") {
                    *categories.entry(cat.to_string()).or_default() += value;
                }
            }
        }
    }
    Ok(
        Json(serde_json::json!({ "hours": series, "blocked_by_category": categories }))
            .into_response(),
    )
}
