//! The fleet dashboard: one self-contained HTML page (no script, no external asset),
//! so it works on an admin's laptop with no internet access.

use std::fmt::Write;

use crate::rollout::control::Report;
use crate::store::{BoxRow, Usage};

/// A box not heard from for this long shows as offline, whatever its last presence.
const STALE_SECS: i64 = 900;

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(now: i64, t: i64) -> String {
    if t <= 0 {
        return "never".into();
    }
    let d = (now - t).max(0);
    match d {
        0..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

pub fn render(boxes: &[BoxRow], usage: &Usage, releases: &Report, now: i64) -> String {
    let mut h = String::from(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\">\
<title>Cartable — flotte / fleet</title><style>\
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
table{border-collapse:collapse;margin-bottom:2rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}\
th{background:#f3f3f3}.on{color:#0a0;font-weight:bold}.off{color:#b00;font-weight:bold}\
</style></head><body><h1>Cartable — flotte / fleet</h1>",
    );
    let online = boxes
        .iter()
        .filter(|b| b.online && now - b.last_seen < STALE_SECS)
        .count();
    let _ = write!(
        h,
        "<p>{} boîtiers / boxes, {online} en ligne / online.</p>",
        boxes.len()
    );
    h.push_str(
        "<h2>Boîtiers / Boxes</h2><table><tr><th>Site</th><th>Box</th><th>État / State</th>\
<th>Vu / Last seen</th><th>Version</th><th>En attente / Backlog</th><th>Plus ancien / Oldest</th>\
<th>Événements reçus / Events</th><th>Politiques / Policies</th><th>Clé du boîtier / Box key</th></tr>",
    );
    for b in boxes {
        let on = b.online && now - b.last_seen < STALE_SECS;
        let (backlog, oldest, policies) = match &b.state {
            Some(s) => (
                format!("{} ({} KiB)", s.backlog.rows, s.backlog.bytes / 1024),
                s.backlog.oldest_at.map_or("—".into(), |t| ago(now, t)),
                s.desired
                    .get("policies")
                    .map_or("—".into(), |d| d.version.to_string()),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.site),
            esc(&b.r#box),
            if on { "on" } else { "off" },
            if on {
                "en ligne / online"
            } else {
                "hors ligne / offline"
            },
            ago(now, b.last_seen),
            esc(&b.version),
            esc(&backlog),
            esc(&oldest),
            b.events,
            esc(&policies),
            key_cell(b),
        );
    }
    h.push_str("</table>");
    releases_section(&mut h, releases);
    section(
        &mut h,
        "Tablettes actives par jour / Active tablets per day",
        ["Site", "Jour / Day", "Tablettes / Tablets"],
        usage
            .active_devices
            .iter()
            .map(|(a, b, c)| [a.clone(), b.clone(), c.to_string()]),
    );
    section(
        &mut h,
        "Applications les plus utilisées / Top apps",
        ["Site", "App", "Minutes"],
        usage
            .top_apps
            .iter()
            .map(|(a, b, c)| [a.clone(), b.clone(), (c / 60).to_string()]),
    );
    section(
        &mut h,
        "Catégories bloquées / Blocked categories",
        ["Site", "Catégorie / Category", "Requêtes / Queries"],
        usage
            .blocked_categories
            .iter()
            .map(|(a, b, c)| [a.clone(), b.clone(), c.to_string()]),
    );
    h.push_str("</body></html>");
    h
}

/// Each rollout with its groups, then each box's word on releases.
fn releases_section(h: &mut String, report: &Report) {
    h.push_str(
        "<h2>Mises à jour / Releases</h2><table><tr><th>Portée / Scope</th><th>Version</th>\
<th>Carte / Board</th><th>État / State</th><th>Groupes / Groups (validés / committed, \
échecs / failed, en cours / in progress, en attente / pending)</th></tr>",
    );
    if report.rollouts.is_empty() {
        h.push_str("<tr><td colspan=\"5\">—</td></tr>");
    }
    for v in &report.rollouts {
        let r = &v.rollout;
        let groups: Vec<String> = v
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{} %{} : {}/{} ✓, {} ✗, {} …, {} ?",
                    g.percent,
                    if g.started {
                        ""
                    } else {
                        " (à venir / to come)"
                    },
                    g.committed,
                    g.boxes,
                    g.failed,
                    g.in_progress,
                    g.pending
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}{}</td><td>{}</td></tr>",
            esc(&r.scope.label()),
            esc(&r.release.version),
            esc(&r.release.board),
            if matches!(
                r.state,
                crate::rollout::RolloutState::Halted | crate::rollout::RolloutState::Aborted
            ) {
                "off"
            } else {
                "on"
            },
            r.state.as_str(),
            if r.detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", esc(&r.detail))
            },
            groups
                .iter()
                .map(|g| esc(g))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    h.push_str(
        "</table><table><tr><th>Site</th><th>Box</th><th>Version en service / Running</th>\
<th>Mise à jour / Release</th><th>État / State</th><th>Détail / Detail</th></tr>",
    );
    let mut any = false;
    for b in report.boxes.iter().filter(|b| b.version.is_some()) {
        any = true;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.site),
            esc(&b.r#box),
            esc(&b.running),
            esc(b.version.as_deref().unwrap_or_default()),
            b.state.map_or("—", |s| s.as_str()),
            esc(&b.detail)
        );
    }
    if !any {
        h.push_str("<tr><td colspan=\"6\">—</td></tr>");
    }
    h.push_str("</table>");
}

/// The pinned key, in full (admins compare it with `cartable box-key` on the box), and
/// a warning when messages sealed with another key are held.
fn key_cell(b: &BoxRow) -> String {
    let mut cell = match &b.key {
        Some(k) => format!("<code>{}</code>", esc(k)),
        None => "— (aucune / none)".into(),
    };
    if b.held > 0 {
        let _ = write!(
            cell,
            "<br><span class=\"off\">{} messages retenus : autre clé / held: another key \
             (cartable-central box add --replace)</span>",
            b.held
        );
    }
    cell
}

fn section(h: &mut String, title: &str, heads: [&str; 3], rows: impl Iterator<Item = [String; 3]>) {
    let _ = write!(h, "<h2>{}</h2><table><tr>", esc(title));
    for t in heads {
        let _ = write!(h, "<th>{}</th>", esc(t));
    }
    h.push_str("</tr>");
    let mut any = false;
    for r in rows {
        any = true;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r[0]),
            esc(&r[1]),
            esc(&r[2])
        );
    }
    if !any {
        h.push_str("<tr><td colspan=\"3\">—</td></tr>");
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_from_boxes_are_escaped() {
        let rows = vec![BoxRow {
            site: "s".into(),
            r#box: "b".into(),
            online: true,
            version: "<script>alert(1)</script>".into(),
            last_seen: 100,
            state: None,
            events: 3,
            key: Some("ab".repeat(32)),
            held: 2,
        }];
        let none = Report {
            rollouts: Vec::new(),
            boxes: Vec::new(),
        };
        let html = render(&rows, &Usage::default(), &none, 110);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("en ligne / online"));
        assert!(html.contains(&"ab".repeat(32)) && html.contains("2 messages retenus"));
        let html = render(&rows, &Usage::default(), &none, 100 + STALE_SECS + 1);
        assert!(html.contains("hors ligne / offline"));
    }
}
