//! Time, as the box reads it: unix seconds for events, the monotonic instant for
//! TTLs and timeouts, and school-local time (weekday and minute in `[filter]
//! timezone`) for schedules, screen time, prefetch windows and "today".
//!
//! [`Clock`] is the one way services read the time, so a test can hand them a
//! [`Clock::manual`] and move it instead of sleeping. The school-time types
//! ([`LocalTime`], [`Days`], [`ClockTime`]) are plain values: the filter decides with
//! them without ever reading a clock. The local time always comes from the bundled
//! time zone database, never the system's zone: an image without tzdata must not put
//! attendance on another day.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Unix seconds now, from the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where services read the time: the system's clock, or a manual one in tests.
#[derive(Clone)]
pub struct Clock {
    zone: jiff::tz::TimeZone,
    manual: Option<Arc<Manual>>,
}

struct Manual {
    /// The monotonic instant when the clock was made; `offset` is added to it.
    start: Instant,
    at_start: jiff::Timestamp,
    offset: Mutex<Duration>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("zone", &self.zone.iana_name())
            .field("manual", &self.manual.is_some())
            .finish()
    }
}

impl Clock {
    /// The system's clock, with local time read in `zone`.
    pub fn system(zone: jiff::tz::TimeZone) -> Clock {
        Clock { zone, manual: None }
    }

    /// A clock that shows `at` until [`Clock::advance`] moves it (tests).
    pub fn manual(zone: jiff::tz::TimeZone, at: jiff::Timestamp) -> Clock {
        Clock {
            zone,
            manual: Some(Arc::new(Manual {
                start: Instant::now(),
                at_start: at,
                offset: Mutex::new(Duration::ZERO),
            })),
        }
    }

    /// Moves a manual clock forward (wall and monotonic time alike); the system clock
    /// cannot be moved, and this does nothing to it.
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            *m.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
        }
    }

    fn offset(m: &Manual) -> Duration {
        *m.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }

    /// The wall-clock instant.
    pub fn now(&self) -> jiff::Timestamp {
        match &self.manual {
            None => jiff::Timestamp::now(),
            Some(m) => {
                let span = jiff::SignedDuration::try_from(Self::offset(m)).unwrap_or_default();
                m.at_start.checked_add(span).unwrap_or(m.at_start)
            }
        }
    }

    /// Unix seconds.
    pub fn unix(&self) -> i64 {
        match &self.manual {
            None => unix_now(),
            Some(_) => self.now().as_second(),
        }
    }

    /// The monotonic instant, for TTLs and timeouts.
    pub fn instant(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.start + Self::offset(m),
        }
    }

    /// School-local weekday and minute.
    pub fn local(&self) -> LocalTime {
        LocalTime::at(self.now(), &self.zone)
    }

    /// The school-local date, as `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        self.now().to_zoned(self.zone.clone()).date().to_string()
    }
}

/// The local time a decision is made at; the caller reads the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Monday ... 6 = Sunday.
    pub weekday: u8,
    /// Minutes since midnight.
    pub minute: u16,
}

impl LocalTime {
    /// The wall-clock time in `zone` at `instant`.
    pub fn at(instant: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> Self {
        let dt = instant.to_zoned(zone.clone()).datetime();
        LocalTime::new(
            dt.weekday().to_monday_zero_offset() as u8,
            dt.hour() as u8,
            dt.minute() as u8,
        )
    }

    /// `YYYY-MM-DD HH:MM` (or with a `T`) read as a wall-clock time in `zone`.
    pub fn parse(text: &str, zone: &jiff::tz::TimeZone) -> Result<Self, String> {
        let bad = || format!("`{text}` is not YYYY-MM-DD HH:MM");
        let dt: jiff::civil::DateTime = text.trim().replace(' ', "T").parse().map_err(|_| bad())?;
        let instant = dt.to_zoned(zone.clone()).map_err(|_| bad())?.timestamp();
        Ok(LocalTime::at(instant, zone))
    }

    pub fn new(weekday: u8, hour: u8, minute: u8) -> Self {
        LocalTime {
            weekday: weekday % 7,
            minute: u16::from(hour) * 60 + u16::from(minute),
        }
    }
}

/// A set of weekdays (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Days(pub(crate) u8);

impl Days {
    pub const WEEKDAYS: Days = Days(0b0001_1111);
    pub const ALL: Days = Days(0b0111_1111);

    fn union(days: &[Days]) -> u8 {
        days.iter().fold(0u8, |acc, d| acc | d.0)
    }
}

/// True when `now` falls on one of `days` between `from` (included, midnight when
/// absent) and `to` (excluded, the end of the day when absent); a window whose end is
/// before its start crosses midnight.
pub fn covers(
    days: &[Days],
    from: Option<ClockTime>,
    to: Option<ClockTime>,
    now: LocalTime,
) -> bool {
    let days = Days::union(days);
    let on = |weekday: u8| days & (1 << weekday) != 0;
    let from = from.map_or(0, |t| t.0);
    let to = to.map_or(24 * 60, |t| t.0);
    if from <= to {
        on(now.weekday) && now.minute >= from && now.minute < to
    } else {
        // Crosses midnight: the evening of a listed day, or the morning after.
        (on(now.weekday) && now.minute >= from) || (on((now.weekday + 6) % 7) && now.minute < to)
    }
}

/// [`covers`] with both ends given.
pub fn in_window(days: &[Days], from: ClockTime, to: ClockTime, now: LocalTime) -> bool {
    covers(days, Some(from), Some(to), now)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TryFrom<String> for Days {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let day = |d: &str| {
            let d = d.trim().to_ascii_lowercase();
            DAY_NAMES
                .iter()
                .position(|n| d.starts_with(n) || french_day(&d) == Some(*n))
                .ok_or_else(|| {
                    format!("`{s}` is not a day or range of days (mon, tue, ..., mon-fri)")
                })
        };
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut bits = 0u8;
                let mut d = a;
                loop {
                    bits |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
                Ok(Days(bits))
            }
            None => Ok(Days(1 << day(&s)?)),
        }
    }
}

fn french_day(d: &str) -> Option<&'static str> {
    Some(match d {
        "lun" | "lundi" => "mon",
        "mar" | "mardi" => "tue",
        "mer" | "mercredi" => "wed",
        "jeu" | "jeudi" => "thu",
        "ven" | "vendredi" => "fri",
        "sam" | "samedi" => "sat",
        "dim" | "dimanche" => "sun",
        _ => return None,
    })
}

impl From<Days> for String {
    fn from(d: Days) -> String {
        let names: Vec<&str> = (0..7)
            .filter(|i| d.0 & (1 << i) != 0)
            .map(|i| DAY_NAMES[i])
            .collect();
        names.join(",")
    }
}

/// A time of day, `HH:MM`; `24:00` is the end of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime(pub(crate) u16);

impl TryFrom<String> for ClockTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time of day (HH:MM)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(ClockTime(h * 60 + m))
    }
}

impl ClockTime {
    pub const fn hm(hour: u16, minute: u16) -> ClockTime {
        ClockTime(hour * 60 + minute)
    }
}

impl From<ClockTime> for String {
    fn from(t: ClockTime) -> String {
        format!("{:02}:{:02}", t.0 / 60, t.0 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("Europe/Paris").unwrap()
    }

    #[test]
    fn a_manual_clock_moves_wall_and_monotonic_time_together() {
        // Monday 2026-11-23 22:59:30 UTC is 23:59:30 in Paris.
        let at: jiff::Timestamp = "2026-11-23T22:59:30Z".parse().unwrap();
        let clock = Clock::manual(paris(), at);
        let (t0, i0) = (clock.unix(), clock.instant());
        assert_eq!(clock.today(), "2026-11-23");
        assert_eq!(clock.local(), LocalTime::new(0, 23, 59));
        clock.advance(Duration::from_secs(45));
        assert_eq!(clock.unix() - t0, 45);
        assert_eq!(clock.instant() - i0, Duration::from_secs(45));
        // Past midnight in Paris while still the 23rd in UTC: "today" is the school's.
        assert_eq!(clock.today(), "2026-11-24");
        assert_eq!(clock.local(), LocalTime::new(1, 0, 0));
    }

    #[test]
    fn windows_cross_midnight_and_days_parse_in_french() {
        let days = vec![Days::try_from("lun-ven".to_string()).unwrap()];
        let (from, to) = (ClockTime::hm(22, 0), ClockTime::hm(6, 0));
        assert!(in_window(&days, from, to, LocalTime::new(4, 23, 0)));
        // Saturday 5:00 is the morning after Friday.
        assert!(in_window(&days, from, to, LocalTime::new(5, 5, 0)));
        assert!(!in_window(&days, from, to, LocalTime::new(5, 23, 0)));
        assert!(covers(&[Days::ALL], None, None, LocalTime::new(6, 12, 0)));
        assert_eq!(String::from(days[0]), "mon,tue,wed,thu,fri");
        assert!(ClockTime::try_from("24:01".to_string()).is_err());
    }
}
