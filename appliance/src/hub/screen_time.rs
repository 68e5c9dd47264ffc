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

use super::Hub;
use crate::base::clock::{ClockTime, Days, LocalTime, in_window};
use crate::store::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// One rule, as a teacher set it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// 0: no daily limit.
    pub minutes_per_day: u32,
    pub days: Vec<Days>,
    pub from: ClockTime,
    pub to: ClockTime,
}

impl Rule {
    /// True when a tablet that was used `used_secs` today may be used at `now`.
    pub fn allows(&self, used_secs: u64, now: LocalTime) -> bool {
        let in_hours = in_window(&self.days, self.from, self.to, now);
        let in_budget =
            self.minutes_per_day == 0 || used_secs < u64::from(self.minutes_per_day) * 60;
        in_hours && in_budget
    }
}

pub struct ScreenTimeService {
    hub: Arc<Hub>,
    store: Store,
    zone: jiff::tz::TimeZone,
    tick: Duration,
}

impl ScreenTimeService {
    pub fn new(hub: Arc<Hub>, store: Store, zone: jiff::tz::TimeZone, tick: Duration) -> Self {
        ScreenTimeService {
            hub,
            store,
            zone,
            tick,
        }
    }
}

/// (class, members or None for the whole class, rule).
type Rules = Vec<(i64, Option<HashSet<i64>>, Rule)>;

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

impl Service for ScreenTimeService {
    fn name(&self) -> &'static str {
        "screen-time"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let today = || {
                jiff::Timestamp::now()
                    .to_zoned(self.zone.clone())
                    .date()
                    .to_string()
            };
            let mut day = today();
            let d = day.clone();
            let mut used: HashMap<i64, u64> = self
                .store
                .read(move |c| {
                    let mut st =
                        c.prepare("SELECT device_id, seconds FROM device_usage WHERE day = ?1")?;
                    let v = st
                        .query_map([d], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                        })?
                        .collect::<Result<HashMap<_, _>, _>>()?;
                    Ok(v)
                })
                .await?;
            // Tablets this service locked (so it only frees what it locked).
            let mut limited: HashSet<i64> = HashSet::new();
            // Foreground seconds per (tablet, app) in the current hour.
            let mut apps: HashMap<(String, String), u32> = HashMap::new();
            let hour_now = || crate::base::clock::unix_now() / 3600 * 3600;
            let mut hour = hour_now();
            let mut ticker = tokio::time::interval(self.tick);
            ticker.tick().await;
            ctx.ready();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                }
                let now_day = today();
                if now_day != day {
                    day = now_day;
                    used.clear();
                }
                let now = LocalTime::at(jiff::Timestamp::now(), &self.zone);
                let rules = self.store.read(load_rules).await?;
                let devices = self.hub.screen_time_view();
                if hour_now() != hour {
                    let closed = std::mem::take(&mut apps);
                    let start = hour;
                    hour = hour_now();
                    if !closed.is_empty() {
                        self.store
                            .write(move |t| {
                                for ((device, app), seconds) in &closed {
                                    crate::store::outbox::append(
                                        t,
                                        start + 3599,
                                        &cartable_protocol::events::EventBody::AppUsage {
                                            hour: start,
                                            device: device.clone(),
                                            app: app.clone(),
                                            seconds: *seconds,
                                        },
                                    )?;
                                }
                                Ok(())
                            })
                            .await?;
                    }
                }
                for d in devices.iter().filter(|d| d.connected) {
                    if let Some(app) = &d.app {
                        *apps.entry((d.name.clone(), app.clone())).or_default() +=
                            self.tick.as_secs() as u32;
                    }
                }
                let mut counted = Vec::new();
                let (mut lock, mut free) = (Vec::new(), Vec::new());
                for d in &devices {
                    if d.connected && !d.desired.locked {
                        let u = used.entry(d.id).or_default();
                        *u += self.tick.as_secs();
                        counted.push((d.id, *u));
                    }
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
                        lock.push(d.id);
                    } else if (allowed || !any) && limited.contains(&d.id) {
                        free.push(d.id);
                    }
                }
                if !lock.is_empty() {
                    tracing::info!(devices = ?lock, "screen time over: tablets locked and cut off");
                    for action in [Action::Lock, Action::InternetOff] {
                        let (_, persist) = self.hub.command(&lock, action);
                        persist.await?;
                    }
                    limited.extend(lock.iter().copied());
                }
                // Freed only if still as this service left them.
                let free: Vec<i64> = free
                    .into_iter()
                    .filter(|id| {
                        devices.iter().find(|d| d.id == *id).is_some_and(|d| {
                            d.desired.locked && d.desired.internet == Internet::Off
                        })
                    })
                    .collect();
                for id in &free {
                    limited.remove(id);
                }
                if !free.is_empty() {
                    tracing::info!(devices = ?free, "screen time open again: tablets freed");
                    for action in [Action::Unlock, Action::InternetOn] {
                        let (_, persist) = self.hub.command(&free, action);
                        persist.await?;
                    }
                }
                if !counted.is_empty() {
                    let day = day.clone();
                    self.store
                        .write(move |t| {
                            let mut up = t.prepare_cached(
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
}
