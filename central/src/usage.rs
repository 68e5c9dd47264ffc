//! Usage statistics, what the fleet console is bought for: per site, class and
//! tablet, over a period, from the rollups (`store::rollup`): tablets used per day,
//! minutes per class and week, tablets never used in the period, top apps and blocked
//! categories. The page, its JSON and its CSV (`?format=csv&table=...`) take the same
//! filters. Pupils appear nowhere: the boxes send tablets and classes, not names.

use std::collections::HashSet;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::page::{self, Lang, date, esc, parse_date};
use crate::store::Db;
use crate::store::report::{Period, UsageReport};

/// The longest period a report covers (a school year and a bit).
const MAX_DAYS: i64 = 400;
/// The default period: the last four weeks.
const DEFAULT_DAYS: i64 = 28;

#[derive(Deserialize, Default)]
pub struct UsageQuery {
    /// First day, `YYYY-MM-DD` (default: four weeks before `to`).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today).
    to: Option<String>,
    /// One site, or all.
    site: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// For CSV: `tablets` (default), `never_used`, `classes`, `sites`, `days`, `apps`,
    /// `categories`.
    table: Option<String>,
    lang: Option<String>,
}

impl UsageQuery {
    fn period(&self, today: i64) -> Result<Period, String> {
        let day = |field: &str, v: &Option<String>| -> Result<Option<i64>, String> {
            match v.as_deref().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_date(s)
                    .map(Some)
                    .ok_or_else(|| format!("{field}: `{s}` is not a date (YYYY-MM-DD)")),
            }
        };
        let to = day("to", &self.to)?.unwrap_or(today);
        let from = day("from", &self.from)?.unwrap_or(to - DEFAULT_DAYS + 1);
        if from > to {
            return Err("from: after `to`".into());
        }
        if to - from + 1 > MAX_DAYS {
            return Err(format!("at most {MAX_DAYS} days at once"));
        }
        Ok(Period {
            from_day: from,
            to_day: to,
            site: self.site.clone().unwrap_or_default(),
        })
    }
}

/// The report, and the tablets the boxes list that it never saw used.
struct Full {
    period: Period,
    report: UsageReport,
    never_used: Vec<(String, String, cartable_protocol::events::DeviceReport)>,
    sites: Vec<String>,
}

/// The report of the query's period, and with `inventory` the tablets never used and
/// the sites to choose from (the boxes' states, read only when they are shown).
async fn full(db: &Db, q: &UsageQuery, inventory: bool) -> Result<Full, Response> {
    let today = crate::store::now().div_euclid(86_400);
    let period = q
        .period(today)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response())?;
    let boxes = async {
        if inventory {
            db.boxes().await
        } else {
            Ok(Vec::new())
        }
    };
    let (report, boxes) = tokio::join!(db.usage_report(period.clone()), boxes);
    let internal = crate::serve::internal;
    let (report, boxes) = (report.map_err(internal)?, boxes.map_err(internal)?);
    let used: HashSet<(&str, &str, &str)> = report
        .tablets
        .iter()
        .map(|t| (t.site.as_str(), t.r#box.as_str(), t.tablet.as_str()))
        .collect();
    let mut sites: Vec<String> = boxes.iter().map(|b| b.site.clone()).collect();
    sites.sort();
    sites.dedup();
    let never_used = boxes
        .iter()
        .filter(|b| period.site.is_empty() || b.site == period.site)
        .filter_map(|b| b.state.as_ref().map(|s| (b, s)))
        .flat_map(|(b, s)| {
            s.devices
                .iter()
                .filter(|d| !used.contains(&(b.site.as_str(), b.r#box.as_str(), d.name.as_str())))
                .map(|d| (b.site.clone(), b.r#box.clone(), d.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Full {
        period,
        report,
        never_used,
        sites,
    })
}

/// `GET /api/v1/usage[?from=&to=&site=][&format=csv&table=T]`.
pub async fn api(State(db): State<Db>, Query(q): Query<UsageQuery>) -> Response {
    let csv_of =
        (q.format.as_deref() == Some("csv")).then(|| q.table.as_deref().unwrap_or("tablets"));
    let f = match full(&db, &q, csv_of.is_none_or(|t| t == "never_used")).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(table) = csv_of {
        return match csv(&f, table) {
            Some(body) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"cartable-usage.csv\"",
                    ),
                ],
                body,
            )
                .into_response(),
            None => (
                StatusCode::BAD_REQUEST,
                "table: tablets, never_used, classes, sites, days, apps or categories\n",
            )
                .into_response(),
        };
    }
    axum::Json(serde_json::json!({
        "from": date(f.period.from_day),
        "to": date(f.period.to_day),
        "site": f.period.site,
        "report": f.report,
        "never_used": f.never_used.iter().map(|(s, b, d)| serde_json::json!({
            "site": s, "box": b, "tablet": d.name, "class": d.class, "last_seen": d.last_seen,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// One CSV cell: quoted when it must be, and never read as a formula by a
/// spreadsheet (a tablet's name comes from a school).
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A tablet's row, on the page and in the CSV export.
fn tablet_cells(t: &crate::store::report::TabletUsage) -> Vec<String> {
    vec![
        t.site.clone(),
        t.r#box.clone(),
        t.tablet.clone(),
        t.class.clone().unwrap_or_default(),
        t.days_used.to_string(),
        t.minutes.to_string(),
        date(t.last_day),
    ]
}

/// A site's row, on the page and in the CSV export.
fn site_cells(s: &crate::store::report::SiteUsage) -> Vec<String> {
    vec![
        s.site.clone(),
        s.tablets_used.to_string(),
        s.minutes.to_string(),
        s.queries.to_string(),
        s.blocked.to_string(),
        s.present.to_string(),
        s.absent.to_string(),
    ]
}

fn csv(f: &Full, table: &str) -> Option<String> {
    let r = &f.report;
    let (head, rows): (&str, Vec<Vec<String>>) = match table {
        "tablets" => (
            "site,box,tablet,class,days_used,minutes,last_used",
            r.tablets.iter().map(tablet_cells).collect(),
        ),
        "never_used" => (
            "site,box,tablet,class,last_seen",
            f.never_used
                .iter()
                .map(|(s, b, d)| {
                    vec![
                        s.clone(),
                        b.clone(),
                        d.name.clone(),
                        d.class.clone().unwrap_or_default(),
                        d.last_seen.to_string(),
                    ]
                })
                .collect(),
        ),
        "classes" => (
            "site,class,week,minutes,tablets",
            r.class_weeks
                .iter()
                .map(|(s, c, w, m, t)| {
                    vec![s.clone(), c.clone(), date(*w), m.to_string(), t.to_string()]
                })
                .collect(),
        ),
        "sites" => (
            "site,tablets_used,minutes,queries,blocked,present,absent",
            r.sites.iter().map(site_cells).collect(),
        ),
        "days" => (
            "day,tablets_used,minutes",
            r.days
                .iter()
                .map(|(d, t, m)| vec![date(*d), t.to_string(), m.to_string()])
                .collect(),
        ),
        "apps" => (
            "app,minutes",
            r.apps
                .iter()
                .map(|(a, m)| vec![a.clone(), m.to_string()])
                .collect(),
        ),
        "categories" => (
            "category,blocked",
            r.categories
                .iter()
                .map(|(c, n)| vec![c.clone(), n.to_string()])
                .collect(),
        ),
        _ => return None,
    };
    let mut out = format!("{head}\r\n");
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    Some(out)
}

/// Tablets used per day as bars, one per day of the period (zero days included).
fn chart(lang: Lang, f: &Full) -> String {
    let n = (f.period.to_day - f.period.from_day + 1).max(1);
    let max = f.report.days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let (w, h) = (n * 10, 100);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        lang.t("Tablettes utilisées par jour", "Tablets used per day")
    );
    for (day, tablets, minutes) in &f.report.days {
        let x = (day - f.period.from_day) * 10;
        let bh = tablets * (h - 4) / max;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"8\" height=\"{bh}\"><title>{} — {tablets} {}, {minutes} min</title></rect>",
            x + 1,
            h - bh,
            date(*day),
            lang.t("tablettes", "tablets"),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Rows a table of the page shows; the CSV export has them all.
const PAGE_ROWS: usize = 300;

/// Says how many rows of a table the page left to the CSV.
fn more(lang: Lang, h: &mut String, rows: usize) {
    if rows > PAGE_ROWS {
        let _ = write!(
            h,
            "<p>{} {} {}</p>",
            lang.t("… et", "… and"),
            rows - PAGE_ROWS,
            lang.t(
                "de plus : choisissez un site, ou voyez l'export CSV.",
                "more: choose a site, or see the CSV export."
            )
        );
    }
}

/// The filters' form and the CSV links (same filters).
fn filters(lang: Lang, f: &Full) -> String {
    let l = |fr, en| lang.t(fr, en);
    let mut h = String::new();
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"get\" action=\"/usage\">\
<label>{}<input type=\"date\" name=\"from\" value=\"{}\"></label>\
<label>{}<input type=\"date\" name=\"to\" value=\"{}\"></label><label>Site<select name=\"site\"><option value=\"\">{}</option>",
        l("Du", "From"),
        date(f.period.from_day),
        l("Au", "To"),
        date(f.period.to_day),
        l("tous", "all"),
    );
    for s in &f.sites {
        let sel = if *s == f.period.site { " selected" } else { "" };
        let _ = write!(h, "<option{sel}>{}</option>", esc(s));
    }
    let query = format!(
        "from={}&amp;to={}&amp;site={}",
        date(f.period.from_day),
        date(f.period.to_day),
        esc(&f.period.site)
    );
    let _ = write!(
        h,
        "</select></label><button type=\"submit\">{}</button>\
<a href=\"/api/v1/usage?format=csv&amp;table=tablets&amp;{query}\">CSV {}</a>\
<a href=\"/api/v1/usage?format=csv&amp;table=classes&amp;{query}\">CSV {}</a></form>",
        l("Afficher", "Show"),
        l("tablettes", "tablets"),
        l("classes", "classes"),
    );
    h
}

/// The report's tables: per site, class and week, never used, per tablet, apps,
/// categories.
// Long: six tables in the page's order, each a heading, its columns and its rows;
// split, each would be a function called once.
fn tables(lang: Lang, f: &Full, h: &mut String) {
    let l = |fr, en| lang.t(fr, en);
    let r = &f.report;
    let _ = write!(h, "<h2>{}</h2>", l("Par site", "Per site"));
    page::table(
        h,
        &[
            "Site",
            l("Tablettes utilisées", "Tablets used"),
            "Minutes",
            l("Requêtes DNS", "DNS queries"),
            l("Bloquées", "Blocked"),
            l("Présences", "Present"),
            l("Absences", "Absent"),
        ],
        r.sites.iter().map(site_cells),
    );
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l(
            "Minutes par classe et par semaine",
            "Minutes per class and week"
        )
    );
    page::table(
        h,
        &[
            "Site",
            l("Classe", "Class"),
            l("Semaine du", "Week of"),
            "Minutes",
            l("Tablettes", "Tablets"),
        ],
        r.class_weeks.iter().take(PAGE_ROWS).map(|(s, c, w, m, t)| {
            vec![s.clone(), c.clone(), date(*w), m.to_string(), t.to_string()]
        }),
    );
    more(lang, h, r.class_weeks.len());
    let _ = write!(
        h,
        "<h2 id=\"never\">{}</h2>",
        l(
            "Tablettes jamais utilisées sur la période",
            "Tablets never used in the period"
        )
    );
    page::table(
        h,
        &[
            "Site",
            l("Boîtier", "Box"),
            l("Tablette", "Tablet"),
            l("Classe", "Class"),
        ],
        f.never_used.iter().take(PAGE_ROWS).map(|(s, b, d)| {
            vec![
                s.clone(),
                b.clone(),
                d.name.clone(),
                d.class.clone().unwrap_or_default(),
            ]
        }),
    );
    more(lang, h, f.never_used.len());
    let _ = write!(h, "<h2>{}</h2>", l("Par tablette", "Per tablet"));
    page::table(
        h,
        &[
            "Site",
            l("Boîtier", "Box"),
            l("Tablette", "Tablet"),
            l("Classe", "Class"),
            l("Jours utilisée", "Days used"),
            "Minutes",
            l("Dernier jour", "Last day"),
        ],
        r.tablets.iter().take(PAGE_ROWS).map(tablet_cells),
    );
    more(lang, h, r.tablets.len());
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l("Applications les plus utilisées", "Top apps")
    );
    page::table(
        h,
        &["App", "Minutes"],
        r.apps.iter().map(|(a, m)| vec![a.clone(), m.to_string()]),
    );
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l("Catégories bloquées", "Blocked categories")
    );
    page::table(
        h,
        &[l("Catégorie", "Category"), l("Requêtes", "Queries")],
        r.categories
            .iter()
            .map(|(c, n)| vec![c.clone(), n.to_string()]),
    );
}

/// `GET /usage`: the page.
pub async fn page(
    State(db): State<Db>,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let f = match full(&db, &q, true).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let l = |fr, en| lang.t(fr, en);
    let mut h = filters(lang, &f);
    let r = &f.report;
    let used: i64 = r.sites.iter().map(|s| s.tablets_used).sum();
    let minutes: i64 = r.sites.iter().map(|s| s.minutes).sum();
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card\">{}<b id=\"tablets-used\">{used}</b></div>\
<div class=\"card\">{}<b id=\"never-used\">{}</b></div><div class=\"card\">{}<b>{}</b></div></div>",
        l("Tablettes utilisées", "Tablets used"),
        l(
            "Jamais utilisées sur la période",
            "Never used in the period"
        ),
        f.never_used.len(),
        l("Heures d'utilisation", "Hours of use"),
        minutes / 60,
    );
    let _ = write!(
        h,
        "<h2>{}</h2>",
        l("Tablettes utilisées par jour", "Tablets used per day")
    );
    h.push_str(&chart(lang, &f));
    tables(lang, &f, &mut h);
    page::html(q.lang.as_deref(), page::layout(lang, "usage", &h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_default_to_four_weeks_and_bad_dates_say_why() {
        let q = UsageQuery::default();
        let p = q.period(20_000).unwrap();
        assert_eq!((p.from_day, p.to_day), (20_000 - 27, 20_000));
        let q = UsageQuery {
            from: Some("2026-13-01".into()),
            ..UsageQuery::default()
        };
        assert!(q.period(20_000).unwrap_err().contains("not a date"));
        let q = UsageQuery {
            from: Some("2020-01-01".into()),
            to: Some("2026-01-01".into()),
            ..UsageQuery::default()
        };
        assert!(q.period(20_000).unwrap_err().contains("at most"));
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("cm1-01"), "cm1-01");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
