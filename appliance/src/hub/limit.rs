//! Guessing, slowed down: failed sign-ins, enrolment codes and Headwind device
//! numbers, counted per client address and per purpose (as AdGuard Home does).
//!
//! A login name is never locked: five wrong passwords typed for `c.martin` from a
//! pupil's tablet must not lock the teacher out. The address that guesses waits
//! instead, longer at each failure past the first few (1 s, 2 s, 4 s ... 15 min), and
//! each purpose counts apart, so wrong passwords on the staff-room PC do not stop
//! tablets enrolling. The counts are kept in the store: a restart resets no delay.
//! The map is bounded: past [`MAX_CLIENTS`] addresses, the one idle longest goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::params;

use crate::base::clock::Clock;
use crate::store::{Store, StoreError};

/// Failures an address may make before it has to wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered per purpose.
pub(crate) const MAX_CLIENTS: usize = 4096;
/// A record idle this long is forgotten (its delay is long over).
const FORGET_AFTER: i64 = 24 * 3600;

/// What is being guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    SignIn,
    Enrolment,
    Headwind,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign-in",
            Purpose::Enrolment => "enrolment",
            Purpose::Headwind => "headwind",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    /// Unix seconds before which the address is refused.
    blocked_until: i64,
    last_at: i64,
}

/// The failures of one purpose.
pub(crate) struct Limiter {
    purpose: Purpose,
    store: Store,
    clock: Clock,
    records: Mutex<HashMap<IpAddr, Record>>,
}

/// The wait after the `failures`-th failure in a row.
fn wait_after(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    crate::base::backoff::doubling(Duration::from_secs(1), MAX_WAIT, failures - FREE_FAILURES)
}

/// The first whole second at which an address may try again, `wait` after a failure
/// at `now_ms`: rounded up, so a one-second wait is never cut short by the second
/// ticking just after the failure (an address that failed at 11.99 s waits until 13 s,
/// not 12 s).
fn blocked_until(now_ms: i64, wait: Duration) -> i64 {
    if wait.is_zero() {
        return now_ms.div_euclid(1000);
    }
    let until_ms = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    until_ms.saturating_add(999).div_euclid(1000)
}

impl Limiter {
    /// The limiter of `purpose`, with the failures the store remembers.
    pub(crate) fn load(
        purpose: Purpose,
        store: &Store,
        clock: &Clock,
    ) -> Result<Limiter, StoreError> {
        let since = clock.unix() - FORGET_AFTER;
        let rows: Vec<(String, i64, i64, i64)> = store.read_blocking(|c| {
            let mut st = c.prepare(
                "SELECT client, failures, blocked_until, last_at FROM auth_failures
                 WHERE purpose = ?1 AND last_at > ?2 ORDER BY last_at DESC LIMIT ?3",
            )?;
            let v = st
                .query_map(params![purpose.as_str(), since, MAX_CLIENTS as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(v)
        })?;
        let records = rows
            .into_iter()
            .filter_map(|(client, failures, blocked_until, last_at)| {
                let record = Record {
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    blocked_until,
                    last_at,
                };
                Some((client.parse().ok()?, record))
            })
            .collect();
        Ok(Limiter {
            purpose,
            store: store.clone(),
            clock: clock.clone(),
            records: Mutex::new(records),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` while `client` must wait before its next attempt.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let now = self.clock.unix();
        match self.lock().get(&client) {
            Some(r) if r.blocked_until > now => {
                Err(Duration::from_secs((r.blocked_until - now) as u64))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `client`; returns how long it must now wait.
    pub(crate) async fn failed(&self, client: IpAddr) -> Duration {
        let now_ms = self.clock.now().as_millisecond();
        let now = now_ms.div_euclid(1000);
        let record = {
            let mut map = self.lock();
            if !map.contains_key(&client) && map.len() >= MAX_CLIENTS {
                let idle = map.iter().min_by_key(|(_, r)| r.last_at).map(|(ip, _)| *ip);
                if let Some(ip) = idle {
                    map.remove(&ip);
                }
            }
            let r = map.entry(client).or_default();
            r.failures = r.failures.saturating_add(1);
            r.blocked_until = blocked_until(now_ms, wait_after(r.failures));
            r.last_at = now;
            *r
        };
        let purpose = self.purpose.as_str();
        let stored = self
            .store
            .write(move |t| {
                t.execute(
                    "INSERT INTO auth_failures(purpose, client, failures, blocked_until, last_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(purpose, client) DO UPDATE SET failures = excluded.failures,
                       blocked_until = excluded.blocked_until, last_at = excluded.last_at",
                    params![
                        purpose,
                        client.to_string(),
                        i64::from(record.failures),
                        record.blocked_until,
                        record.last_at
                    ],
                )?;
                t.execute(
                    "DELETE FROM auth_failures WHERE last_at < ?1",
                    [now - FORGET_AFTER],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot record a failed attempt");
        }
        tracing::info!(purpose, %client, failures = record.failures, "failed attempt");
        Duration::from_secs((record.blocked_until - now).max(0) as u64)
    }

    /// A success from `client`: its count starts again.
    pub(crate) async fn succeeded(&self, client: IpAddr) {
        if self.lock().remove(&client).is_none() {
            return;
        }
        let purpose = self.purpose.as_str();
        let _ = self
            .store
            .write(move |t| {
                t.execute(
                    "DELETE FROM auth_failures WHERE purpose = ?1 AND client = ?2",
                    params![purpose, client.to_string()],
                )?;
                Ok(())
            })
            .await;
    }

    /// Addresses remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(dir: &std::path::Path, clock: &Clock) -> Limiter {
        let store = Store::open(dir).unwrap();
        Limiter::load(Purpose::SignIn, &store, clock).unwrap()
    }

    #[tokio::test]
    async fn an_address_waits_longer_at_each_failure_and_a_restart_keeps_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let l = limiter(dir.path(), &clock);
        let (pupil, teacher): (IpAddr, IpAddr) = ([10, 0, 3, 7].into(), [10, 0, 1, 2].into());
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(l.failed(pupil).await, Duration::ZERO);
            assert!(l.check(pupil).is_ok());
        }
        assert_eq!(l.failed(pupil).await, Duration::from_secs(1));
        assert!(l.check(pupil).is_err());
        assert!(l.check(teacher).is_ok(), "another address is not slowed");
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.failed(pupil).await, Duration::from_secs(2));
        // The store remembers: a restart does not reset the delay.
        let again = Limiter::load(Purpose::SignIn, &l.store, &clock).unwrap();
        assert_eq!(again.check(pupil), Err(Duration::from_secs(2)));
        // Another purpose counts apart.
        let enrol = Limiter::load(Purpose::Enrolment, &l.store, &clock).unwrap();
        assert!(enrol.check(pupil).is_ok());
        clock.advance(Duration::from_secs(2));
        again.succeeded(pupil).await;
        assert!(again.check(pupil).is_ok());
        // The wait is capped.
        assert_eq!(wait_after(100), MAX_WAIT);
    }

    /// CI saw a guessing address let through 12 ms after its fifth failure: the wait
    /// ended at the next whole second, not one second later.
    #[tokio::test]
    async fn a_wait_is_never_cut_short_by_the_second_ticking() {
        let dir = tempfile::tempdir().unwrap();
        let at = jiff::Timestamp::from_millisecond(11_989).unwrap();
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, at);
        let l = limiter(dir.path(), &clock);
        let pupil: IpAddr = [10, 0, 3, 7].into();
        for _ in 0..FREE_FAILURES {
            l.failed(pupil).await;
        }
        clock.advance(Duration::from_millis(12));
        assert!(
            l.check(pupil).is_err(),
            "12 ms after a one-second wait began"
        );
        clock.advance(Duration::from_millis(988));
        assert!(l.check(pupil).is_err(), "999 ms after");
        clock.advance(Duration::from_millis(11));
        assert!(
            l.check(pupil).is_ok(),
            "at the whole second after the wait ended"
        );
    }

    #[tokio::test]
    async fn the_map_is_bounded_and_forgets_the_longest_idle() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let l = limiter(dir.path(), &clock);
        {
            let mut map = l.lock();
            for i in 0..MAX_CLIENTS as u32 {
                let r = Record {
                    failures: 1,
                    blocked_until: 0,
                    last_at: i64::from(i) + 1,
                };
                map.insert(IpAddr::from(i.to_be_bytes()), r);
            }
        }
        clock.advance(Duration::from_secs(1_000_000));
        l.failed([192, 0, 2, 1].into()).await;
        assert_eq!(l.len(), MAX_CLIENTS);
        assert!(
            !l.lock().contains_key(&IpAddr::from([0, 0, 0, 0])),
            "the oldest went"
        );
    }
}
