//! The filter's admin API: explain a verdict, read the counters and the query log.
//!
//! Admin accounts come with the hardening work; until then these answer only to
//! 127.0.0.1 and ::1 (an admin on the box, or `ssh -L`), never to the school network.
//! What must not live here: anything that changes the filter (that is `reload`'s).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::HttpState;
use crate::base::http::local_only;
use crate::filter::decide::{Action, Reason};
use crate::filter::name::normalize;

#[derive(Deserialize)]
pub(crate) struct TestParams {
    name: String,
    client: Option<IpAddr>,
    /// `YYYY-MM-DD HH:MM` in the filter's zone (default: now).
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
    Query(p): Query<TestParams>,
) -> Response {
    if let Err(denied) = local_only(&peer) {
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
) -> Response {
    if let Err(denied) = local_only(&peer) {
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

#[derive(Deserialize)]
pub(crate) struct LogParams {
    limit: Option<usize>,
    client: Option<IpAddr>,
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

/// `GET /api/v1/filter/log[?limit=N][&client=IP]`: the last queries, newest first.
pub(crate) async fn log(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(p): Query<LogParams>,
) -> Response {
    if let Err(denied) = local_only(&peer) {
        return denied.into_response();
    }
    let engine = &state.engine;
    let filter = engine.filter();
    let categories = filter.index.categories();
    let lines: Vec<LogLine> = engine
        .log
        .recent(p.limit.unwrap_or(100).min(10_000), p.client)
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
