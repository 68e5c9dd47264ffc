//! Rollouts, as Eclipse hawkBit runs them: a release goes to the fleet in groups
//! started in turn, each a wider wave of the boxes' stable places
//! (`release::place_in_fleet`). When enough of the group started last has committed
//! (the success threshold) the next group starts; when too many boxes have rolled back
//! or refused (the error threshold) the rollout halts and waits for a person.
//!
//! A box that says nothing counts as pending, never as failed: a school closed for the
//! holidays holds its group back at worst, it never halts the fleet's rollout. A box
//! the release does not apply to (another board, already newer, below `min_from`) is
//! not counted at all.
//!
//! This module is pure: what a rollout is, and what the boxes' reports make of it.
//! `control` does the writing and the publishing.

pub mod control;
mod show;

pub use show::show;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cartable_protocol::release::{Release, Version, place_in_fleet};
use cartable_protocol::status::UpdateState;
use cartable_protocol::topics::Scope;
use serde::{Deserialize, Serialize};

/// How a rollout moves: its groups (cumulative wave percents, the last 100) and its
/// thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub groups: Vec<u8>,
    /// Percent of the group started last that must have committed before the next
    /// starts.
    pub success_percent: u8,
    /// Boxes rolled back or refused (of every group started) that halt the rollout.
    pub error_threshold: Threshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    Count(u32),
    Percent(u8),
}

impl FromStr for Threshold {
    type Err = String;

    /// "3" (boxes) or "10%" (of the boxes started).
    fn from_str(s: &str) -> Result<Threshold, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Threshold::Percent(p)),
                _ => Err(format!("`{s}`: a percent is 1% to 100%")),
            },
            None => match s.parse::<u32>() {
                Ok(n @ 1..) => Ok(Threshold::Count(n)),
                _ => Err(format!("`{s}`: a number of boxes (1 or more) or a percent")),
            },
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n} boxes"),
            Threshold::Percent(p) => write!(f, "{p} %"),
        }
    }
}

impl Plan {
    /// Groups given as "10,50,100": rising, 1 to 100, ending at 100.
    pub fn new(
        groups: &[u8],
        success_percent: u8,
        error_threshold: Threshold,
    ) -> Result<Plan, String> {
        if groups.is_empty() || groups.last() != Some(&100) {
            return Err("the last group must be 100 (%): a rollout ends with every box".into());
        }
        if groups.windows(2).any(|w| w[0] >= w[1]) || groups[0] == 0 {
            return Err(format!(
                "groups {groups:?}: rising percents from 1 to 100, such as 10,50,100"
            ));
        }
        if !(1..=100).contains(&success_percent) {
            return Err(format!("success threshold {success_percent} %: 1 to 100"));
        }
        Ok(Plan {
            groups: groups.to_vec(),
            success_percent,
            error_threshold,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// No group starts until resumed; boxes of the started groups go on.
    Paused,
    /// The error threshold was reached: like paused, until a person resumes or aborts.
    Halted,
    /// Boxes that had not installed stopped; final.
    Aborted,
    /// Every group started and the last reached its success threshold.
    Finished,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Halted => "halted",
            RolloutState::Aborted => "aborted",
            RolloutState::Finished => "finished",
        }
    }
}

/// One rollout: a release to one scope (the fleet, a site, a box), one row in the
/// console's store per scope, as one release is retained per scope on the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub scope: Scope,
    /// The manifest as last published (its wave is the group started last).
    pub release: Release,
    pub plan: Plan,
    /// The group started last (index into `plan.groups`).
    pub group: usize,
    pub state: RolloutState,
    #[serde(default)]
    pub detail: String,
    /// Failures a person saw and resumed past: only failures beyond these count
    /// toward the error threshold.
    #[serde(default)]
    pub failures_accepted: u32,
    pub started_at: i64,
    pub changed_at: i64,
}

impl Rollout {
    pub fn new(scope: Scope, mut release: Release, plan: Plan, now: i64) -> Rollout {
        release.rollout.wave_percent = Some(plan.groups[0]);
        Rollout {
            scope,
            release,
            plan,
            group: 0,
            state: RolloutState::Running,
            detail: String::new(),
            failures_accepted: 0,
            started_at: now,
            changed_at: now,
        }
    }

    /// The wave of group `g`.
    pub fn percent(&self, g: usize) -> u8 {
        self.plan.groups[g.min(self.plan.groups.len() - 1)]
    }

    /// The group a box belongs to, if any started or to start.
    pub fn group_of(&self, site: &str, box_id: &str) -> Option<usize> {
        if !self.scope.includes(site, box_id) {
            return None;
        }
        let sites = &self.release.rollout.sites;
        if !sites.is_empty() && !sites.iter().any(|s| s == site) {
            return None;
        }
        let place = place_in_fleet(site, box_id);
        self.plan.groups.iter().position(|p| place < u32::from(*p))
    }
}

/// What a box last said of a release, from its events and presence.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BoxRelease {
    pub site: String,
    pub r#box: String,
    /// The firmware it runs (its presence, else its last release event).
    pub running: String,
    pub board: String,
    /// Its last release event: the version it was about, the state, why.
    pub version: Option<String>,
    pub state: Option<UpdateState>,
    pub detail: String,
    pub last_seen: i64,
    pub online: bool,
}

/// Where a box stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Committed,
    Failed,
    InProgress,
    /// Not heard of this release yet (offline, or not reached).
    Pending,
    /// The release does not apply to it (another board, already newer, too old).
    NotApplicable,
}

/// Where `b` stands in a rollout of `r`.
pub fn standing(r: &Release, b: &BoxRelease) -> Standing {
    if !b.board.is_empty() && b.board != r.board {
        return Standing::NotApplicable;
    }
    if let (Some(new), Some(running)) = (Version::parse(&r.version), Version::parse(&b.running)) {
        let too_old = r
            .min_from
            .as_deref()
            .and_then(Version::parse)
            .is_some_and(|min| running < min && !r.downgrade);
        let ahead = if r.downgrade {
            new > running
        } else {
            new < running
        };
        if too_old || ahead {
            return Standing::NotApplicable;
        }
    }
    if b.version.as_deref() != Some(r.version.as_str()) {
        // Never said a word of it: running it already (installed by hand, or an
        // image made with it) is as good as committed.
        return if b.running == r.version {
            Standing::Committed
        } else {
            Standing::Pending
        };
    }
    // Booted into it is not committed: the health check still decides.
    match b.state {
        Some(UpdateState::Committed) => Standing::Committed,
        Some(UpdateState::RolledBack | UpdateState::Refused) => Standing::Failed,
        Some(
            UpdateState::Downloading
            | UpdateState::Verified
            | UpdateState::WaitingForWindow
            | UpdateState::Installing
            | UpdateState::Rebooting
            | UpdateState::Checking,
        ) => Standing::InProgress,
        Some(UpdateState::Idle | UpdateState::Aborted) | None => Standing::Pending,
    }
}

/// One group's count of boxes by standing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupTally {
    pub percent: u8,
    pub started: bool,
    pub boxes: u32,
    pub committed: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub pending: u32,
}

/// Every group's tally (boxes the release does not apply to left out).
pub fn tally(r: &Rollout, boxes: &[BoxRelease]) -> Vec<GroupTally> {
    let mut groups: Vec<GroupTally> = (0..r.plan.groups.len())
        .map(|g| GroupTally {
            percent: r.percent(g),
            started: g <= r.group,
            ..GroupTally::default()
        })
        .collect();
    for b in boxes {
        let Some(g) = r.group_of(&b.site, &b.r#box) else {
            continue;
        };
        let t = &mut groups[g];
        match standing(&r.release, b) {
            Standing::NotApplicable => continue,
            Standing::Committed => t.committed += 1,
            Standing::Failed => t.failed += 1,
            Standing::InProgress => t.in_progress += 1,
            Standing::Pending => t.pending += 1,
        }
        t.boxes += 1;
    }
    groups
}

/// What a running rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Stay,
    /// Start the next group.
    Advance,
    Halt(String),
    Finish,
}

/// Boxes of the started groups that rolled back or refused.
pub fn failures(r: &Rollout, groups: &[GroupTally]) -> u32 {
    groups[..=r.group.min(groups.len() - 1)]
        .iter()
        .map(|g| g.failed)
        .sum()
}

pub fn evaluate(r: &Rollout, groups: &[GroupTally]) -> Step {
    if r.state != RolloutState::Running {
        return Step::Stay;
    }
    let started = &groups[..=r.group.min(groups.len() - 1)];
    let failed: u32 = failures(r, groups).saturating_sub(r.failures_accepted);
    let boxes: u32 = started.iter().map(|g| g.boxes).sum();
    let halt = match r.plan.error_threshold {
        Threshold::Count(n) => failed >= n,
        Threshold::Percent(p) => failed > 0 && failed * 100 >= u32::from(p) * boxes,
    };
    if halt {
        return Step::Halt(format!(
            "{failed} of {boxes} boxes rolled back or refused (threshold {})",
            r.plan.error_threshold
        ));
    }
    let last = &started[started.len() - 1];
    if last.committed * 100 < u32::from(r.plan.success_percent) * last.boxes {
        return Step::Stay;
    }
    if r.group + 1 < r.plan.groups.len() {
        Step::Advance
    } else {
        Step::Finish
    }
}

/// Each box's latest report on releases, from release events in order (per box,
/// by sequence) and the boxes' presence `(site, box, version, last_seen, online)`:
/// what runs is what the presence says, else what the last event said ran.
pub fn latest(
    events: impl IntoIterator<Item = (String, String, serde_json::Value)>,
    presence: &[(String, String, String, i64, bool)],
) -> Vec<BoxRelease> {
    #[derive(Deserialize)]
    struct Event {
        version: String,
        state: UpdateState,
        #[serde(default)]
        detail: String,
        #[serde(default)]
        running: String,
        #[serde(default)]
        board: String,
    }
    let mut by_box: BTreeMap<(String, String), BoxRelease> = BTreeMap::new();
    for (site, box_id, body) in events {
        let Ok(e) = serde_json::from_value::<Event>(body) else {
            continue;
        };
        let b = by_box
            .entry((site.clone(), box_id.clone()))
            .or_insert_with(|| BoxRelease {
                site,
                r#box: box_id,
                ..BoxRelease::default()
            });
        b.running = e.running;
        if !e.board.is_empty() {
            b.board = e.board;
        }
        b.version = Some(e.version);
        b.state = Some(e.state);
        b.detail = e.detail;
    }
    for (site, box_id, version, last_seen, online) in presence {
        let b = by_box
            .entry((site.clone(), box_id.clone()))
            .or_insert_with(|| BoxRelease {
                site: site.clone(),
                r#box: box_id.clone(),
                ..BoxRelease::default()
            });
        if !version.is_empty() {
            b.running = version.clone();
        }
        b.last_seen = *last_seen;
        b.online = *online;
    }
    by_box.into_values().collect()
}

#[cfg(test)]
mod tests;
