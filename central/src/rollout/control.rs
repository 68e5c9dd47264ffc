//! What moves a rollout: starting it, the console's periodic look at the boxes'
//! reports (advance, halt, finish), and a person's pause, resume, widen and abort.
//!
//! Every change that boxes must see is a new signed manifest for the rollout's scope,
//! published retained before the console's row is written: a crash between the two
//! publishes the same wave again at the next look, which boxes take as the same
//! release (never a second download).

use std::time::Duration;

use anyhow::{Context, bail};
use cartable_protocol::desired::Body;
use cartable_protocol::topics::Scope;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{BoxRelease, GroupTally, Rollout, RolloutState, Step, evaluate, latest, tally};
use crate::broker::BrokerArgs;
use crate::keys::Signer;
use crate::store::{Db, now};

/// Who signs and where manifests go.
pub struct Publisher<'a> {
    pub signer: &'a Signer,
    pub broker: &'a BrokerArgs,
}

impl Publisher<'_> {
    /// Signs the rollout's manifest for its scope and leaves it retained.
    async fn publish(&self, r: &Rollout) -> anyhow::Result<(String, u64)> {
        crate::publish::publish(
            self.signer,
            self.broker,
            r.scope.clone(),
            Body::Release(r.release.clone()),
            None,
        )
        .await
    }
}

/// A rollout and where its groups stand.
#[derive(Debug, Serialize)]
pub struct RolloutView {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub groups: Vec<GroupTally>,
}

/// Every rollout and every box's word on releases.
#[derive(Debug, Serialize)]
pub struct Report {
    pub rollouts: Vec<RolloutView>,
    pub boxes: Vec<BoxRelease>,
}

pub async fn boxes(db: &Db) -> anyhow::Result<Vec<BoxRelease>> {
    let presence: Vec<_> = db
        .boxes()
        .await?
        .into_iter()
        .map(|b| (b.site, b.r#box, b.version, b.last_seen, b.online))
        .collect();
    Ok(latest(db.events_of_type("release").await?, &presence))
}

pub async fn report(db: &Db) -> anyhow::Result<Report> {
    let boxes = boxes(db).await?;
    let rollouts = db
        .rollouts()
        .await?
        .into_iter()
        .map(|r| RolloutView {
            groups: tally(&r, &boxes),
            rollout: r,
        })
        .collect();
    Ok(Report { rollouts, boxes })
}

/// Publishes the first group's manifest and records the rollout (replacing any
/// rollout of the same scope: one release is retained per scope).
pub async fn start(db: &Db, p: &Publisher<'_>, r: Rollout) -> anyhow::Result<(String, u64)> {
    let published = p.publish(&r).await?;
    db.put_rollout(&r).await?;
    Ok(published)
}

/// The rollout of `scope`.
pub async fn find(db: &Db, scope: &Scope) -> anyhow::Result<Rollout> {
    db.rollouts()
        .await?
        .into_iter()
        .find(|r| &r.scope == scope)
        .with_context(|| format!("no rollout for {}", scope.label()))
}

/// Pause (no group starts) or resume (groups start again when their threshold is
/// met; the failures seen when resumed are accepted, only new ones count).
pub async fn set_running(db: &Db, scope: &Scope, running: bool) -> anyhow::Result<Rollout> {
    let mut r = find(db, scope).await?;
    if running {
        r.failures_accepted = super::failures(&r, &tally(&r, &boxes(db).await?));
    }
    match (r.state, running) {
        (RolloutState::Aborted | RolloutState::Finished, _) => {
            bail!(
                "the rollout of {} is {}",
                r.release.version,
                r.state.as_str()
            )
        }
        (_, true) => {
            r.state = RolloutState::Running;
            r.detail = "resumed".into();
        }
        (_, false) => {
            r.state = RolloutState::Paused;
            r.detail = "paused".into();
        }
    }
    r.changed_at = now();
    db.put_rollout(&r).await?;
    Ok(r)
}

/// Starts the next group now, or the first group reaching `to` percent, whatever the
/// thresholds say.
pub async fn widen(
    db: &Db,
    p: &Publisher<'_>,
    scope: &Scope,
    to: Option<u8>,
) -> anyhow::Result<Rollout> {
    let mut r = find(db, scope).await?;
    if matches!(r.state, RolloutState::Aborted | RolloutState::Finished) {
        bail!(
            "the rollout of {} is {}",
            r.release.version,
            r.state.as_str()
        );
    }
    let next = match to {
        None => r.group + 1,
        Some(p) => r
            .plan
            .groups
            .iter()
            .position(|g| *g >= p)
            .with_context(|| format!("no group reaches {p} %"))?,
    };
    if next >= r.plan.groups.len() || next <= r.group {
        bail!(
            "the rollout of {} is already at {} %",
            r.release.version,
            r.percent(r.group)
        );
    }
    advance_to(db, p, &mut r, next, "widened by hand").await?;
    Ok(r)
}

/// Boxes that have not installed stop and drop what they fetched; final.
pub async fn abort(db: &Db, p: &Publisher<'_>, scope: &Scope) -> anyhow::Result<Rollout> {
    let mut r = find(db, scope).await?;
    if r.state == RolloutState::Finished {
        bail!("the rollout of {} is finished", r.release.version);
    }
    r.release.rollout.aborted = true;
    p.publish(&r).await?;
    r.state = RolloutState::Aborted;
    r.detail = "aborted".into();
    r.changed_at = now();
    db.put_rollout(&r).await?;
    Ok(r)
}

async fn advance_to(
    db: &Db,
    p: &Publisher<'_>,
    r: &mut Rollout,
    group: usize,
    why: &str,
) -> anyhow::Result<()> {
    r.group = group;
    r.release.rollout.wave_percent = Some(r.percent(group));
    p.publish(r).await?;
    r.state = RolloutState::Running;
    r.detail = format!(
        "{why}: group {} of {} started",
        group + 1,
        r.plan.groups.len()
    );
    r.changed_at = now();
    db.put_rollout(r).await?;
    tracing::info!(
        version = %r.release.version,
        scope = %r.scope.label(),
        percent = r.percent(group),
        "rollout widened"
    );
    Ok(())
}

/// One look at every running rollout: advance, halt or finish as the boxes' reports
/// say.
pub async fn tick(db: &Db, p: &Publisher<'_>) -> anyhow::Result<()> {
    let boxes = boxes(db).await?;
    for mut r in db.rollouts().await? {
        match evaluate(&r, &tally(&r, &boxes)) {
            Step::Stay => {}
            Step::Advance => {
                let next = r.group + 1;
                advance_to(db, p, &mut r, next, "success threshold met").await?;
            }
            Step::Halt(why) => {
                tracing::warn!(version = %r.release.version, why, "rollout halted");
                r.state = RolloutState::Halted;
                r.detail = why;
                r.changed_at = now();
                db.put_rollout(&r).await?;
            }
            Step::Finish => {
                r.state = RolloutState::Finished;
                r.detail = "every group started and the last met its threshold".into();
                r.changed_at = now();
                db.put_rollout(&r).await?;
            }
        }
    }
    Ok(())
}

/// Looks at the rollouts every `every` until `shutdown`.
pub async fn run(
    db: Db,
    signer: std::sync::Arc<Signer>,
    broker: BrokerArgs,
    every: Duration,
    shutdown: CancellationToken,
) {
    let p = Publisher {
        signer: &signer,
        broker: &broker,
    };
    loop {
        if let Err(e) = tick(&db, &p).await {
            tracing::warn!(error = format!("{e:#}"), "cannot move the rollouts");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
