//! The filter's admin API: explain a verdict, read the counters.
//!
//! Admin accounts come with the hub; until then these answer only to 127.0.0.1 and
//! ::1 (an admin on the box, or `ssh -L`), never to the school network.

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::WebState;
use crate::base::clock::LocalTime;
use crate::dns::engine::Engine;
use crate::filter::decide::{Action, Reason};
use crate::filter::name::normalize;

#[derive(Deserialize)]
pub struct TestParams {
    name: String,
    client: Option<IpAddr>,
}

#[derive(Serialize)]
struct TestAnswer {
    name: String,
    verdict: &'static str,
    policy: String,
    category: Option<String>,
    entry: Option<String>,
    explanation: String,
}

/// The engine, for a caller allowed to use the admin API: 127.0.0.1 and ::1 only (a
/// process on the box, or an admin's SSH tunnel).
fn admin_engine(
    state: &WebState,
    peer: &SocketAddr,
) -> Result<Arc<Engine>, (StatusCode, &'static str)> {
    local_only(peer)?;
    state
        .engine
        .clone()
        .ok_or((StatusCode::SERVICE_UNAVAILABLE, "no DNS engine\n"))
}

/// Refuses every caller but 127.0.0.1 and ::1.
pub fn local_only(peer: &SocketAddr) -> Result<(), (StatusCode, &'static str)> {
    let local = match peer.ip() {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == std::net::Ipv6Addr::LOCALHOST
                || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    };
    if !local {
        return Err((
            StatusCode::FORBIDDEN,
            "the admin API answers on 127.0.0.1 and ::1 only\n",
        ));
    }
    Ok(())
}

/// `GET /api/v1/filter/test?name=NAME[&client=IP]`
pub async fn test(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(p): Query<TestParams>,
) -> Response {
    let engine = match admin_engine(&state, &peer) {
        Ok(e) => e,
        Err(denied) => return denied.into_response(),
    };
    let Some(name) = normalize(&p.name) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("`{}` is not a domain name\n", p.name),
        )
            .into_response();
    };
    let filter = engine.filter();
    let client = p.client.unwrap_or(peer.ip());
    let now = LocalTime::at(jiff::Timestamp::now(), &state.config.filter.timezone.zone());
    // One decision; its explanation reads list files, so off the async threads.
    let answer = tokio::task::spawn_blocking(move || {
        let v = filter.decide(&name, client, now, None);
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
pub async fn stats(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let engine = match admin_engine(&state, &peer) {
        Ok(e) => e,
        Err(denied) => return denied.into_response(),
    };
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
pub struct LogParams {
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
pub async fn log(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(p): Query<LogParams>,
) -> Response {
    let engine = match admin_engine(&state, &peer) {
        Ok(e) => e,
        Err(denied) => return denied.into_response(),
    };
    let filter = engine.filter();
    let categories = filter.index.categories();
    let lines: Vec<LogLine> = engine
        .log
        .recent(p.limit.unwrap_or(100).min(10_000), p.client)
        .into_iter()
        .map(|e| LogLine {
            at: e.at,
            client: e.client,
            name: e.name.into(),
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
