//! Every tablet across the schools, as their boxes report them (the retained state
//! message): model, OS, agent, school, class, the assigned pupil's pseudonym, last
//! seen, battery. The seeds' "one console for 5,500 tablets".

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cartable_protocol::events::DeviceReport;
use serde::Deserialize;

use crate::page::{self, Lang, ago, esc};
use crate::store::Db;

#[derive(Deserialize, Default)]
pub struct TabletsQuery {
    /// One site, or all.
    site: Option<String>,
    /// Tablets whose name, class or model contains this.
    q: Option<String>,
    lang: Option<String>,
}

/// (site, box, tablet) for the query's filters.
async fn tablets(db: &Db, q: &TabletsQuery) -> anyhow::Result<Vec<(String, String, DeviceReport)>> {
    let needle = q.q.as_deref().unwrap_or_default().to_lowercase();
    let site = q.site.as_deref().unwrap_or_default();
    Ok(db
        .boxes()
        .await?
        .into_iter()
        .filter(|b| site.is_empty() || b.site == site)
        .flat_map(|b| {
            let (s, bx) = (b.site, b.r#box);
            b.state
                .map(|st| st.devices)
                .unwrap_or_default()
                .into_iter()
                .map(move |d| (s.clone(), bx.clone(), d))
        })
        .filter(|(_, _, d)| {
            needle.is_empty()
                || d.name.to_lowercase().contains(&needle)
                || d.model.to_lowercase().contains(&needle)
                || d.class
                    .as_deref()
                    .is_some_and(|c| c.to_lowercase().contains(&needle))
        })
        .collect())
}

/// `GET /api/v1/tablets[?site=S][&q=TEXT]`.
pub async fn api(State(db): State<Db>, Query(q): Query<TabletsQuery>) -> Response {
    match tablets(&db, &q).await {
        Ok(t) => axum::Json(
            t.into_iter()
                .map(|(site, b, d)| serde_json::json!({ "site": site, "box": b, "tablet": d }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => crate::serve::internal(e),
    }
}

/// `GET /tablets`: the page.
pub async fn page(
    State(db): State<Db>,
    headers: HeaderMap,
    Query(q): Query<TabletsQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let l = |fr, en| lang.t(fr, en);
    let list = match tablets(&db, &q).await {
        Ok(t) => t,
        Err(e) => return crate::serve::internal(e),
    };
    let now = crate::store::now();
    let online = list.iter().filter(|(_, _, d)| d.connected).count();
    let mut h = String::new();
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"get\" action=\"/tablets\"><label>Site<input name=\"site\" value=\"{}\"></label>\
<label>{}<input name=\"q\" value=\"{}\"></label><button type=\"submit\">{}</button></form>\
<div class=\"cards\"><div class=\"card\">{}<b id=\"tablet-count\">{}</b></div><div class=\"card\">{}<b>{online}</b></div></div>",
        esc(q.site.as_deref().unwrap_or_default()),
        l("Nom, classe ou modèle", "Name, class or model"),
        esc(q.q.as_deref().unwrap_or_default()),
        l("Chercher", "Search"),
        l("Tablettes", "Tablets"),
        list.len(),
        l("Connectées", "Connected"),
    );
    page::table(
        &mut h,
        &[
            "Site",
            l("Boîtier", "Box"),
            l("Tablette", "Tablet"),
            l("Classe", "Class"),
            l("Élève (pseudonyme)", "Pupil (pseudonym)"),
            l("Modèle", "Model"),
            "OS",
            l("Agent", "Agent"),
            l("Batterie", "Battery"),
            l("Vue", "Last seen"),
        ],
        list.iter().map(|(s, b, d)| {
            vec![
                s.clone(),
                b.clone(),
                d.name.clone(),
                d.class.clone().unwrap_or_default(),
                d.pupil.clone().unwrap_or_default(),
                d.model.clone(),
                d.os.clone(),
                d.agent.clone(),
                d.battery.map_or(String::new(), |b| format!("{b} %")),
                if d.connected {
                    l("connectée", "connected").to_string()
                } else {
                    ago(lang, now, d.last_seen)
                },
            ]
        }),
    );
    page::html(q.lang.as_deref(), page::layout(lang, "tablets", &h))
}
