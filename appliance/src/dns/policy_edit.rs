//! The school admin's edits of the policies, from the admin page: read what is in
//! force (with the categories' UT1 descriptions and the lists behind them), replace
//! the whole set, allow or deny one name for one policy (the query log's one click),
//! and go back to the configuration file's.
//!
//! An edit is compiled against the lists in service before anything is stored (a
//! mistake is a 400 that says what, and the filter in service stays); then stored with
//! its audit record in one transaction, then swapped in as a reload does: the answer
//! path never waits and drops no query. Policies signed by the central side are not
//! edited here (409): the fleet decided them, and the next desired state would undo it.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::HttpState;
use super::reload::PolicySource;
use crate::base::http::{AdminCaller, HttpError, HttpResult, JsonBody, admin_or_local};
use crate::filter::policy::{DomainName, PolicyConfig};
use crate::store::{Store, StoreError};

/// The admin's edited policies, if any (read at start: they come before the
/// configuration file's).
pub(crate) fn stored(store: &Store) -> Option<Vec<PolicyConfig>> {
    let body: Option<String> = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT body FROM filter_local_policies WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
        })
        .ok()
        .flatten();
    match serde_json::from_str(&body?) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "the stored admin policies do not parse; using the file's");
            None
        }
    }
}

#[derive(Serialize)]
struct CategoryView {
    name: String,
    aliases: Vec<String>,
    kind: crate::filter::ut1::Kind,
    titles: std::collections::BTreeMap<String, String>,
    descriptions: std::collections::BTreeMap<String, String>,
    entries: u64,
}

#[derive(Serialize)]
struct ListView {
    category: String,
    path: String,
    /// Unix time of the file's last change (the archive's or tree's for UT1).
    modified: Option<u64>,
}

fn modified(path: &std::path::Path) -> Option<u64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// `GET /api/v1/filter/policies`: the policies in force, where they come from,
/// whether this page may edit them, the categories and the lists.
pub(crate) async fn get(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
) -> HttpResult {
    admin_or_local(&peer, caller.as_deref())?;
    let (policies, source) = state.filter.policies_in_force();
    let filter = state.engine.filter();
    let categories: Vec<CategoryView> = filter
        .index
        .categories()
        .iter()
        .map(|c| CategoryView {
            name: c.name.clone(),
            aliases: c.aliases.clone(),
            kind: c.kind,
            titles: c.titles.clone(),
            descriptions: c.descriptions.clone(),
            entries: c.entries,
        })
        .collect();
    let sources = state.filter.sources();
    let mut lists: Vec<ListView> = sources
        .lists
        .iter()
        .map(|(category, path)| ListView {
            category: category.clone(),
            path: path.display().to_string(),
            modified: modified(path),
        })
        .collect();
    for ut1 in sources.ut1_dir.iter().chain(sources.ut1_archive.iter()) {
        lists.push(ListView {
            category: "UT1".into(),
            path: ut1.display().to_string(),
            modified: modified(ut1),
        });
    }
    let updated = state
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT updated_by, updated_at FROM filter_local_policies WHERE id = 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?)
        })
        .await?;
    Ok(Json(json!({
        "source": source,
        "editable": source != PolicySource::Central,
        "policies": policies,
        "categories": categories,
        "lists": lists,
        "listed_names": filter.index.names(),
        "edited": updated.map(|(by, at)| json!({ "by": by, "at": at })),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSet {
    policies: Vec<PolicyConfig>,
}

/// `PUT /api/v1/filter/policies`: replaces the whole set.
pub(crate) async fn put(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
    JsonBody(body): JsonBody<NewSet>,
) -> HttpResult {
    let actor = admin_or_local(&peer, caller.as_deref())?;
    let _one_edit = state.edits.lock().await;
    let names: Vec<&str> = body.policies.iter().map(|p| p.name.as_str()).collect();
    let detail = format!("policies replaced: {}", names.join(", "));
    apply(&state, actor, body.policies, detail).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OneName {
    name: DomainName,
    /// `allow`, `deny`, or `none` (out of both lists).
    list: String,
}

/// `POST /api/v1/filter/policies/{policy}/names`: puts one name on the policy's allow
/// or deny list (taking it off the other), or off both.
pub(crate) async fn name(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
    Path(policy): Path<String>,
    JsonBody(body): JsonBody<OneName>,
) -> HttpResult {
    let actor = admin_or_local(&peer, caller.as_deref())?;
    let _one_edit = state.edits.lock().await;
    let (mut policies, _) = state.filter.policies_in_force();
    let p = policies
        .iter_mut()
        .find(|p| p.name == policy)
        .ok_or_else(|| HttpError::not_found(format!("no policy `{policy}`")))?;
    p.allow.retain(|n| n != &body.name);
    p.deny.retain(|n| n != &body.name);
    match body.list.as_str() {
        "allow" => p.allow.push(body.name.clone()),
        "deny" => p.deny.push(body.name.clone()),
        "none" => {}
        other => {
            return Err(HttpError::bad_request(format!(
                "list: `allow`, `deny` or `none`, not `{other}`"
            )));
        }
    }
    let detail = format!(
        "policy {policy}: {} {}",
        body.name.as_str(),
        match body.list.as_str() {
            "allow" => "allowed",
            "deny" => "denied",
            _ => "off the lists",
        }
    );
    apply(&state, actor, policies, detail).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/v1/filter/policies`: forgets the admin's edits; the configuration
/// file's policies are in force again.
pub(crate) async fn reset(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<AdminCaller>>,
) -> HttpResult {
    let actor = admin_or_local(&peer, caller.as_deref())?;
    let _one_edit = state.edits.lock().await;
    refuse_central(&state)?;
    let file = state.filter.file_policies().to_vec();
    let filter = prepare(&state, file.clone()).await?;
    let now = state.clock.unix();
    state
        .store
        .write(move |t| {
            t.execute("DELETE FROM filter_local_policies", [])?;
            audit(
                t,
                now,
                actor,
                "back to the configuration file's policies".into(),
            )
        })
        .await?;
    state.filter.put_in_force(filter, file, PolicySource::File);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn refuse_central(state: &HttpState) -> Result<(), HttpError> {
    if state.filter.policies_in_force().1 == PolicySource::Central {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "the policies in force come signed from the central side: change them there",
        ));
    }
    Ok(())
}

/// Compiles `policies` against the lists in service, off the async threads, and
/// refuses a category no list provides that this edit adds (unless the policy says it
/// is optional): a misspelled name would silently block nothing. One the set in force
/// already named stays (the built-in policies name UT1 categories a box may not have
/// yet; `problems` reports them).
async fn prepare(
    state: &HttpState,
    policies: Vec<PolicyConfig>,
) -> Result<crate::filter::decide::Filter, HttpError> {
    let filter = state.filter.clone();
    let (before, _) = state.filter.policies_in_force();
    tokio::task::spawn_blocking(move || {
        let compiled = filter.prepare_policies(&policies)?;
        let unknown: Vec<String> = compiled
            .policies
            .unknown_categories
            .iter()
            .filter(|(p, cat)| {
                let named = |set: &[PolicyConfig], optional: bool| {
                    set.iter().any(|c| {
                        &c.name == p
                            && if optional {
                                c.optional.contains(cat)
                            } else {
                                c.block.contains(cat)
                            }
                    })
                };
                !named(&policies, true) && !named(&before, false)
            })
            .map(|(p, cat)| format!("policy `{p}` blocks `{cat}`, which no list provides"))
            .collect();
        if unknown.is_empty() {
            Ok(compiled)
        } else {
            Err(unknown.join("; "))
        }
    })
    .await
    .map_err(|e| HttpError::unavailable("compiling policies", &e))?
    .map_err(HttpError::bad_request)
}

/// Checks, stores (with the audit record, in one transaction), then puts in force.
async fn apply(
    state: &HttpState,
    actor: String,
    policies: Vec<PolicyConfig>,
    detail: String,
) -> Result<(), HttpError> {
    refuse_central(state)?;
    let filter = prepare(state, policies.clone()).await?;
    let body = serde_json::to_string(&policies)
        .map_err(|e| HttpError::unavailable("serialising policies", &e))?;
    let now = state.clock.unix();
    state
        .store
        .write(move |t| {
            t.execute(
                "INSERT INTO filter_local_policies(id, body, updated_by, updated_at)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body,
                   updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                rusqlite::params![body, actor, now],
            )?;
            audit(t, now, actor, detail)
        })
        .await?;
    state
        .filter
        .put_in_force(filter, policies, PolicySource::Local);
    Ok(())
}

fn audit(
    t: &rusqlite::Transaction<'_>,
    now: i64,
    actor: String,
    detail: String,
) -> Result<(), StoreError> {
    crate::store::outbox::append(
        t,
        now,
        &cartable_protocol::events::EventBody::Audit {
            actor,
            action: "filter policies".into(),
            detail,
        },
    )?;
    Ok(())
}
