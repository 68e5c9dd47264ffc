//! The fleet page: every box with its site, version, last contact, backlog, policies,
//! key and alerts (offline for days, backlog growing, disk low, desired state refused),
//! then the releases and their rollouts.

use std::fmt::Write;

use crate::page::{Lang, ago, esc};
use crate::rollout::control::Report;
use crate::store::BoxRow;

/// A box not heard from for this long shows as offline, whatever its last presence.
const STALE_SECS: i64 = 900;
/// Offline this long is an alert (a box is off during holidays: days, not hours).
const OFFLINE_ALERT_SECS: i64 = 2 * 86_400;
/// Events waiting this long on a box that is online are an alert.
const BACKLOG_ALERT_SECS: i64 = 86_400;
/// Less free space than this on a box's data disk is an alert.
const DISK_ALERT_BYTES: u64 = 1 << 30;

/// What is wrong with a box, worst first, in the page's language.
pub fn alerts(lang: Lang, b: &BoxRow, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let on = b.online && now - b.last_seen < STALE_SECS;
    if !on && b.last_seen > 0 && now - b.last_seen > OFFLINE_ALERT_SECS {
        out.push(
            format!(
                "{} {}",
                lang.t("hors ligne depuis", "offline for"),
                (now - b.last_seen) / 86_400
            ) + lang.t(" jours", " days"),
        );
    }
    if let Some(s) = &b.state {
        if s.backlog
            .oldest_at
            .is_some_and(|t| now - t > BACKLOG_ALERT_SECS)
        {
            out.push(format!(
                "{} ({})",
                lang.t(
                    "événements en attente depuis plus d'un jour",
                    "events waiting for over a day"
                ),
                s.backlog.rows
            ));
        }
        if s.disk_free_bytes > 0 && s.disk_free_bytes < DISK_ALERT_BYTES {
            out.push(format!(
                "{} ({} MiB)",
                lang.t("disque presque plein", "disk almost full"),
                s.disk_free_bytes >> 20
            ));
        }
        let refused: Vec<String> = s
            .refused
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        if !refused.is_empty() {
            out.push(format!(
                "{} ({})",
                lang.t("état souhaité refusé", "desired state refused"),
                refused.join(", ")
            ));
        }
    }
    if b.held > 0 {
        out.push(format!(
            "{} {}",
            b.held,
            lang.t(
                "messages retenus : autre clé (cartable-central box add --replace)",
                "messages held: another key (cartable-central box add --replace)"
            )
        ));
    }
    out
}

pub fn render(lang: Lang, boxes: &[BoxRow], releases: &Report, now: i64) -> String {
    let mut h = String::new();
    let online = boxes
        .iter()
        .filter(|b| b.online && now - b.last_seen < STALE_SECS)
        .count();
    // Each box's alerts, worked out once for the count and the table.
    let said: Vec<Vec<String>> = boxes.iter().map(|b| alerts(lang, b, now)).collect();
    let alerted = said.iter().filter(|a| !a.is_empty()).count();
    let tablets: usize = boxes
        .iter()
        .filter_map(|b| b.state.as_ref())
        .map(|s| s.devices.len())
        .sum();
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card\">{}<b>{}</b></div><div class=\"card\">{}<b>{online}</b></div>\
<div class=\"card\">{}<b>{alerted}</b></div><div class=\"card\">{}<b>{tablets}</b></div></div>",
        lang.t("Boîtiers", "Boxes"),
        boxes.len(),
        lang.t("En ligne", "Online"),
        lang.t("Avec une alerte", "With an alert"),
        lang.t("Tablettes", "Tablets"),
    );
    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>Site</th><th>{}</th><th>{}</th><th>{}</th><th>Version</th><th>{}</th>\
<th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Boîtiers", "Boxes"),
        lang.t("Boîtier", "Box"),
        lang.t("État", "State"),
        lang.t("Vu", "Last seen"),
        lang.t("En attente", "Backlog"),
        lang.t("Événements reçus", "Events"),
        lang.t("Politiques", "Policies"),
        lang.t("Alertes", "Alerts"),
        lang.t("Clé du boîtier", "Box key"),
    );
    for (b, box_alerts) in boxes.iter().zip(&said) {
        let on = b.online && now - b.last_seen < STALE_SECS;
        let (backlog, policies) = match &b.state {
            Some(s) => (
                format!(
                    "{} ({} KiB){}",
                    s.backlog.rows,
                    s.backlog.bytes / 1024,
                    s.backlog
                        .oldest_at
                        .map_or(String::new(), |t| format!(", {}", ago(lang, now, t)))
                ),
                s.desired
                    .get("policies")
                    .map_or("—".into(), |d| format!("v{} ({})", d.version, d.scope)),
            ),
            None => ("—".into(), "—".into()),
        };
        let alerts: String = box_alerts
            .iter()
            .map(|a| format!("<span class=\"alert\">{}</span><br>", esc(a)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.site),
            esc(&b.r#box),
            if on { "on" } else { "off" },
            if on {
                lang.t("en ligne", "online")
            } else {
                lang.t("hors ligne", "offline")
            },
            ago(lang, now, b.last_seen),
            esc(&b.version),
            esc(&backlog),
            b.events,
            esc(&policies),
            if alerts.is_empty() {
                "—".into()
            } else {
                alerts
            },
            key_cell(lang, b),
        );
    }
    h.push_str("</table>");
    releases_section(lang, &mut h, releases);
    crate::page::layout(lang, "fleet", &h)
}

/// Each rollout with its groups, then each box's word on releases.
fn releases_section(lang: Lang, h: &mut String, report: &Report) {
    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>{}</th><th>Version</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Mises à jour", "Releases"),
        lang.t("Portée", "Scope"),
        lang.t("Carte", "Board"),
        lang.t("État", "State"),
        lang.t(
            "Groupes (validés ✓, échecs ✗, en cours …, en attente ?)",
            "Groups (committed ✓, failed ✗, in progress …, pending ?)"
        ),
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
                        lang.t(" (à venir)", " (to come)")
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
    let _ = write!(
        h,
        "</table><table><tr><th>Site</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Boîtier", "Box"),
        lang.t("Version en service", "Running"),
        lang.t("Mise à jour", "Release"),
        lang.t("État", "State"),
        lang.t("Détail", "Detail"),
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

/// The pinned key, in full (admins compare it with `cartable box-key` on the box).
fn key_cell(lang: Lang, b: &BoxRow) -> String {
    match &b.key {
        Some(k) => format!("<code>{}</code>", esc(k)),
        None => lang.t("— (aucune)", "— (none)").into(),
    }
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
        let html = render(Lang::Fr, &rows, &none, 110);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("en ligne"));
        assert!(html.contains(&"ab".repeat(32)) && html.contains("2 messages retenus"));
        let html = render(Lang::En, &rows, &none, 100 + STALE_SECS + 1);
        assert!(html.contains(">offline<"));
        let days = render(Lang::En, &rows, &none, 100 + 3 * 86_400);
        assert!(days.contains("offline for 3 days"), "{days}");
    }
}
