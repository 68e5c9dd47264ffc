//! Screen-time limits, enforced by the box: per class or level group, the hours the
//! tablets may be used and the minutes a day. Every tick, each connected, unlocked
//! tablet's use is counted; a tablet past its limits is locked and cut off the
//! internet (the DNS server refuses it too), and set free again when the window
//! opens or the day changes, unless a teacher locked it meanwhile.
//!
//! The same tick adds up each tablet's foreground app time per hour; closed hours go
//! to the outbox as `app_usage` events (the central side's "which tablets are used").
//! The hour in progress is in memory: a crash loses at most that hour's statistics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cartable_protocol::device::{Action, Internet};
use rusqlite::params;

use super::{DeviceView, Hub};
use crate::base::clock::{Clock, ClockTime, Days, LocalTime, in_window};
use crate::store::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// One rule, as a teacher set it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// 0: no daily limit.
    pub minutes_per_day: u32,
    pub days: Vec<Days>,
    pub from: ClockTime,
    pub to: ClockTime,
}

impl Rule {
    /// True when a tablet that was used `used_secs` today may be used at `now`.
    pub(crate) fn allows(&self, used_secs: u64, now: LocalTime) -> bool {
        let in_hours = in_window(&self.days, self.from, self.to, now);
        let in_budget =
            self.minutes_per_day == 0 || used_secs < u64::from(self.minutes_per_day) * 60;
        in_hours && in_budget
    }
}

pub(crate) struct ScreenTimeService {
    hub: Arc<Hub>,
    store: Store,
    /// School-local time: the day, the hours of the rules.
    clock: Clock,
    tick: Duration,
}

impl ScreenTimeService {
    pub(crate) fn new(hub: Arc<Hub>, store: Store, clock: Clock, tick: Duration) -> Self {
        ScreenTimeService {
            hub,
            store,
            clock,
            tick,
        }
    }
}

/// (class, members or None for the whole class, rule).
pub(crate) type Rules = Vec<(i64, Option<HashSet<i64>>, Rule)>;

fn load_rules(c: &rusqlite::Connection) -> Result<Rules, crate::store::StoreError> {
    let mut st = c.prepare(
        "SELECT class_id, group_id, minutes_per_day, days, from_time, to_time FROM screen_time",
    )?;
    let rows: Vec<(i64, i64, u32, String, String, String)> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut members = c.prepare("SELECT pupil_id FROM pupil_group_members WHERE group_id = ?1")?;
    let mut out = Vec::new();
    for (class, group, minutes, days, from, to) in rows {
        let days: Vec<Days> = days
            .split(',')
            .filter_map(|d| Days::try_from(d.to_string()).ok())
            .collect();
        let (Ok(from), Ok(to)) = (ClockTime::try_from(from), ClockTime::try_from(to)) else {
            continue;
        };
        let who = if group == 0 {
            None
        } else {
            Some(
                members
                    .query_map([group], |r| r.get::<_, i64>(0))?
                    .collect::<Result<HashSet<_>, _>>()?,
            )
        };
        out.push((
            class,
            who,
            Rule {
                minutes_per_day: minutes,
                days,
                from,
                to,
            },
        ));
    }
    Ok(out)
}

/// What one tick decides.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Past their limits: locked and cut off the internet.
    pub lock: Vec<i64>,
    /// Within their limits again (or no longer ruled), and still as this service
    /// left them: unlocked and given the internet back.
    pub free: Vec<i64>,
}

/// The screen-time decision of one tick, from what the hub shows, the rules, the
/// seconds each tablet was used today, and the tablets this service locked.
pub(crate) fn decide(
    devices: &[DeviceView],
    rules: &Rules,
    used: &HashMap<i64, u64>,
    limited: &HashSet<i64>,
    now: LocalTime,
) -> Decision {
    let mut out = Decision::default();
    for d in devices {
        let u = used.get(&d.id).copied().unwrap_or(0);
        let applies = rules.iter().filter(|(class, who, _)| {
            Some(*class) == d.class_id
                && who
                    .as_ref()
                    .is_none_or(|w| d.pupil.is_some_and(|p| w.contains(&p)))
        });
        let mut any = false;
        let mut allowed = true;
        for (_, _, rule) in applies {
            any = true;
            allowed &= rule.allows(u, now);
        }
        if any && !allowed && !limited.contains(&d.id) {
            out.lock.push(d.id);
        } else if (allowed || !any)
            && limited.contains(&d.id)
            // Freed only if still as this service left them: a teacher's lock stays.
            && d.desired.locked
            && d.desired.internet == Internet::Off
        {
            out.free.push(d.id);
        }
    }
    out
}

/// What the service counts between ticks.
struct Tally {
    /// The school-local day `used` counts.
    day: String,
    /// Seconds each tablet was used today (connected and unlocked).
    used: HashMap<i64, u64>,
    /// Tablets this service locked (so it only frees what it locked).
    limited: HashSet<i64>,
    /// Foreground seconds per (tablet, app) in the current hour.
    apps: HashMap<(String, String), u32>,
    /// The hour in progress (unix seconds).
    hour: i64,
}

impl ScreenTimeService {
    async fn used_on(&self, day: String) -> Result<HashMap<i64, u64>, crate::store::StoreError> {
        self.store
            .read(move |c| {
                let mut st =
                    c.prepare("SELECT device_id, seconds FROM device_usage WHERE day = ?1")?;
                let v = st
                    .query_map([day], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<Result<HashMap<_, _>, _>>()?;
                Ok(v)
            })
            .await
    }

    /// Sends the apps' time of a closed hour to the outbox.
    async fn close_hour(&self, t: &mut Tally) -> anyhow::Result<()> {
        let hour_now = self.clock.unix() / 3600 * 3600;
        if hour_now == t.hour {
            return Ok(());
        }
        let closed = std::mem::take(&mut t.apps);
        let start = std::mem::replace(&mut t.hour, hour_now);
        if closed.is_empty() {
            return Ok(());
        }
        self.store
            .write(move |tx| {
                for ((device, app), seconds) in &closed {
                    let class = crate::store::school::device_class(tx, device)?;
                    crate::store::outbox::append(
                        tx,
                        start + 3599,
                        &cartable_protocol::events::EventBody::AppUsage {
                            hour: start,
                            device: device.clone(),
                            app: app.clone(),
                            seconds: *seconds,
                            class,
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// One tick: count use, lock what is past its limits, free what is back within.
    async fn tick(&self, t: &mut Tally) -> anyhow::Result<()> {
        let today = self.clock.today();
        if today != t.day {
            t.day = today;
            t.used.clear();
        }
        let rules = self.store.read(load_rules).await?;
        let devices = self.hub.screen_time_view();
        self.close_hour(t).await?;
        let secs = self.tick.as_secs();
        let mut counted = Vec::new();
        for d in devices.iter().filter(|d| d.connected) {
            if let Some(app) = &d.app {
                *t.apps.entry((d.name.clone(), app.clone())).or_default() += secs as u32;
            }
            if !d.desired.locked {
                let u = t.used.entry(d.id).or_default();
                *u += secs;
                counted.push((d.id, *u));
            }
        }
        let Decision { lock, free } =
            decide(&devices, &rules, &t.used, &t.limited, self.clock.local());
        if !lock.is_empty() {
            tracing::info!(devices = ?lock, "screen time over: tablets locked and cut off");
            for action in [Action::Lock, Action::InternetOff] {
                let (_, persist) = self.hub.command(&lock, action);
                persist.await?;
            }
            t.limited.extend(lock.iter().copied());
        }
        if !free.is_empty() {
            for id in &free {
                t.limited.remove(id);
            }
            tracing::info!(devices = ?free, "screen time open again: tablets freed");
            for action in [Action::Unlock, Action::InternetOn] {
                let (_, persist) = self.hub.command(&free, action);
                persist.await?;
            }
        }
        if !counted.is_empty() {
            let day = t.day.clone();
            self.store
                .write(move |tx| {
                    let mut up = tx.prepare_cached(
                        "INSERT INTO device_usage(device_id, day, seconds) VALUES (?1, ?2, ?3)
                         ON CONFLICT(device_id, day) DO UPDATE SET seconds = excluded.seconds",
                    )?;
                    for (id, secs) in &counted {
                        up.execute(params![id, day, *secs as i64])?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }
}

impl Service for ScreenTimeService {
    fn name(&self) -> &'static str {
        "screen-time"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let day = self.clock.today();
            let mut tally = Tally {
                used: self.used_on(day.clone()).await?,
                day,
                limited: HashSet::new(),
                apps: HashMap::new(),
                hour: self.clock.unix() / 3600 * 3600,
            };
            let mut ticker = tokio::time::interval(self.tick);
            ticker.tick().await;
            ctx.ready();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                }
                self.tick(&mut tally).await?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(minutes: u32, from: (u16, u16), to: (u16, u16)) -> Rule {
        Rule {
            minutes_per_day: minutes,
            days: vec![Days::WEEKDAYS],
            from: ClockTime::hm(from.0, from.1),
            to: ClockTime::hm(to.0, to.1),
        }
    }

    #[test]
    fn a_tablet_is_allowed_in_its_hours_and_within_its_minutes() {
        let r = rule(45, (8, 30), (16, 30));
        let tuesday_10h = LocalTime::new(1, 10, 0);
        assert!(r.allows(0, tuesday_10h));
        assert!(r.allows(44 * 60 + 59, tuesday_10h));
        assert!(!r.allows(45 * 60, tuesday_10h), "budget spent");
        assert!(!r.allows(0, LocalTime::new(1, 17, 0)), "after hours");
        assert!(!r.allows(0, LocalTime::new(5, 10, 0)), "Saturday");
        assert!(
            rule(0, (0, 0), (24, 0)).allows(1_000_000, tuesday_10h),
            "no daily limit"
        );
    }

    fn tablet(
        id: i64,
        class: i64,
        pupil: Option<i64>,
        locked: bool,
        internet: Internet,
    ) -> DeviceView {
        DeviceView {
            id,
            class_id: Some(class),
            pupil,
            connected: true,
            desired: cartable_protocol::device::DesiredState {
                locked,
                internet,
                ..Default::default()
            },
            name: format!("tab-{id}"),
            app: None,
        }
    }

    #[test]
    fn the_decision_locks_what_is_over_and_frees_only_what_it_locked() {
        let tuesday_10h = LocalTime::new(1, 10, 0);
        // Class 1: 45 minutes a day for everyone; class 2: group {7} only until 9:00.
        let rules: Rules = vec![
            (1, None, rule(45, (8, 0), (17, 0))),
            (2, Some(HashSet::from([7])), rule(0, (8, 0), (9, 0))),
        ];
        let devices = vec![
            tablet(1, 1, None, false, Internet::On), // over its minutes
            tablet(2, 1, None, false, Internet::On), // within
            tablet(3, 2, Some(7), false, Internet::On), // its group is past 9:00
            tablet(4, 2, Some(8), false, Internet::On), // not in the group
            tablet(5, 1, None, true, Internet::Off), // locked by us, within again
            tablet(6, 1, None, true, Internet::On),  // a teacher changed it since
        ];
        let used = HashMap::from([(1, 45 * 60), (2, 60), (5, 0), (6, 0)]);
        let limited = HashSet::from([5, 6]);
        let d = decide(&devices, &rules, &used, &limited, tuesday_10h);
        assert_eq!(d.lock, [1, 3]);
        assert_eq!(
            d.free,
            [5],
            "tablet 6's internet was given back by a teacher"
        );
        // Already locked by us: not locked again; outside every rule: freed.
        let d = decide(&devices, &rules, &used, &HashSet::from([1]), tuesday_10h);
        assert_eq!(d.lock, [3]);
        assert!(
            d.free.is_empty(),
            "tablet 1 is not as we left it (not locked)"
        );
    }
}
