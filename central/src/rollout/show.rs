//! `release status` as text: each rollout with its groups, then every box's version
//! and update state, the boxes in trouble first.

use std::fmt::Write;

use super::control::Report;
use super::{BoxRelease, GroupTally};
use cartable_protocol::status::UpdateState;

fn group_line(g: &GroupTally) -> String {
    format!(
        "{:>3} %{}: {} boxes, {} committed, {} failed, {} in progress, {} pending",
        g.percent,
        if g.started { "" } else { " (not started)" },
        g.boxes,
        g.committed,
        g.failed,
        g.in_progress,
        g.pending
    )
}

/// Boxes that rolled back or refused come first, then those on the way.
fn rank(b: &BoxRelease) -> u8 {
    match b.state {
        Some(UpdateState::RolledBack | UpdateState::Refused) => 0,
        Some(UpdateState::Committed | UpdateState::Idle | UpdateState::Aborted) | None => 2,
        Some(_) => 1,
    }
}

pub fn show(report: &Report, now: i64) -> String {
    let mut out = String::new();
    if report.rollouts.is_empty() {
        out.push_str("no rollout\n");
    }
    for v in &report.rollouts {
        let r = &v.rollout;
        let _ = writeln!(
            out,
            "{}: {} for {}: {} (group {} of {}, {} %){}",
            r.scope.label(),
            r.release.version,
            r.release.board,
            r.state.as_str(),
            r.group + 1,
            r.plan.groups.len(),
            r.percent(r.group),
            if r.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", r.detail)
            }
        );
        let _ = writeln!(
            out,
            "  next group at {} % committed; halts at {} failed",
            r.plan.success_percent, r.plan.error_threshold
        );
        for g in &v.groups {
            let _ = writeln!(out, "  {}", group_line(g));
        }
    }
    let mut boxes: Vec<&BoxRelease> = report.boxes.iter().collect();
    boxes.sort_by_key(|b| (rank(b), b.site.clone(), b.r#box.clone()));
    let _ = writeln!(
        out,
        "\n{:<32} {:<12} {:<12} {:<19} {:<10} detail",
        "box", "running", "release", "state", "seen"
    );
    for b in boxes {
        let seen = if b.last_seen <= 0 {
            "never".to_string()
        } else if b.online {
            "online".to_string()
        } else {
            format!("{} h ago", (now - b.last_seen).max(0) / 3600)
        };
        let _ = writeln!(
            out,
            "{:<32} {:<12} {:<12} {:<19} {:<10} {}",
            format!("{}/{}", b.site, b.r#box),
            if b.running.is_empty() {
                "?"
            } else {
                &b.running
            },
            b.version.as_deref().unwrap_or("-"),
            b.state.map_or("-", UpdateState::as_str),
            seen,
            b.detail
        );
    }
    out
}
