//! Whether this box takes a release: the board, the version (newer than what runs,
//! and not below the release's `min_from`), a version never to take again, the
//! rollout's wave and sites; and whether now is inside the install window. Pure: the
//! agent hands it the facts.

use cartable_protocol::release::{Release, Version, parse_window, place_in_fleet};

use crate::base::clock::{self, ClockTime, Days, LocalTime};

/// What the box is, for the decision.
#[derive(Debug, Clone)]
pub(crate) struct BoxFacts<'a> {
    pub(crate) site: &'a str,
    pub(crate) box_id: &'a str,
    pub(crate) board: &'a str,
    pub(crate) running: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Take,
    /// Already running it (or committed): nothing to do.
    Running,
    /// Not for this box now (another wave or site): not an error, nothing reported.
    NotYet(String),
    /// Refused, with the reason reported once.
    Refuse(String),
}

pub(crate) fn decide(r: &Release, b: &BoxFacts<'_>, never: Option<&str>) -> Decision {
    if r.board != b.board {
        return Decision::Refuse(format!(
            "release {} is for board `{}`, this box is `{}`",
            r.version, r.board, b.board
        ));
    }
    let (Some(new), running) = (Version::parse(&r.version), Version::parse(b.running)) else {
        return Decision::Refuse(format!("`{}` is not a version", r.version));
    };
    if let Some(running) = &running {
        if new == *running {
            return Decision::Running;
        }
        if new < *running && !r.downgrade {
            return Decision::Refuse(format!(
                "release {} is older than the running {}",
                r.version, b.running
            ));
        }
        if new > *running && r.downgrade {
            return Decision::Refuse(format!(
                "release {} is a rollback order, and this box runs the older {}",
                r.version, b.running
            ));
        }
        if let Some(min) = r.min_from.as_deref().and_then(Version::parse)
            && *running < min
            && !r.downgrade
        {
            return Decision::Refuse(format!(
                "release {} upgrades from {} or later; this box runs {}",
                r.version,
                r.min_from.as_deref().unwrap_or_default(),
                b.running
            ));
        }
    }
    if let Some(why) = never {
        return Decision::Refuse(format!("release {} is not taken again: {why}", r.version));
    }
    if r.rollout.aborted {
        return Decision::NotYet(format!("the rollout of {} is aborted", r.version));
    }
    if !r.rollout.sites.is_empty() && !r.rollout.sites.iter().any(|s| s == b.site) {
        return Decision::NotYet(format!("release {} is for other sites for now", r.version));
    }
    if let Some(percent) = r.rollout.wave_percent {
        let place = place_in_fleet(b.site, b.box_id);
        if place >= u32::from(percent) {
            return Decision::NotYet(format!(
                "release {} goes to {percent} % of the fleet for now; this box is at {place} %",
                r.version
            ));
        }
    }
    Decision::Take
}

/// Whether `now` (school-local) is inside `window` ("HH:MM-HH:MM", every day, may
/// pass midnight). An unreadable window is never open.
pub(crate) fn in_window(window: &str, now: LocalTime) -> bool {
    parse_window(window).is_some_and(|(from, to)| {
        clock::in_window(&[Days::ALL], ClockTime(from), ClockTime(to), now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::release::Rollout;

    fn release(version: &str) -> Release {
        Release {
            version: version.into(),
            board: "x86_64".into(),
            ..Release::default()
        }
    }

    const BOX: BoxFacts<'static> = BoxFacts {
        site: "ecole-a",
        box_id: "box-1",
        board: "x86_64",
        running: "2026.12.1",
    };

    #[test]
    fn a_box_takes_only_a_newer_release_for_its_board_and_wave() {
        assert_eq!(decide(&release("2026.12.2"), &BOX, None), Decision::Take);
        assert_eq!(decide(&release("2026.12.1"), &BOX, None), Decision::Running);
        assert!(
            matches!(decide(&release("2026.11.9"), &BOX, None), Decision::Refuse(m) if m.contains("older"))
        );
        let mut r = release("2026.12.2");
        r.board = "rpi4".into();
        assert!(matches!(decide(&r, &BOX, None), Decision::Refuse(m) if m.contains("rpi4")));
        assert!(
            matches!(decide(&release("2026.12.2"), &BOX, Some("rolled back")), Decision::Refuse(m) if m.contains("rolled back"))
        );
        let mut r = release("2026.12.2");
        r.min_from = Some("2026.12.0.5".into());
        assert_eq!(decide(&r, &BOX, None), Decision::Take);
        r.min_from = Some("2026.12.1.1".into());
        assert!(
            matches!(decide(&r, &BOX, None), Decision::Refuse(m) if m.contains("upgrades from"))
        );
        let mut r = release("2026.12.2");
        r.rollout = Rollout {
            wave_percent: None,
            sites: vec!["ecole-b".into()],
            ..Rollout::default()
        };
        assert!(matches!(decide(&r, &BOX, None), Decision::NotYet(_)));
        r.rollout.sites.push("ecole-a".into());
        assert_eq!(decide(&r, &BOX, None), Decision::Take);
    }

    #[test]
    fn an_older_release_is_taken_only_as_a_signed_rollback_order() {
        let mut r = release("2026.11.9");
        r.downgrade = true;
        r.min_from = Some("2027.1".into());
        assert_eq!(decide(&r, &BOX, None), Decision::Take);
        // A rollback order never moves a box forward.
        let mut r = release("2026.12.2");
        r.downgrade = true;
        assert!(
            matches!(decide(&r, &BOX, None), Decision::Refuse(m) if m.contains("rollback order"))
        );
        // An aborted rollout starts nowhere.
        let mut r = release("2026.12.2");
        r.rollout.aborted = true;
        assert!(matches!(decide(&r, &BOX, None), Decision::NotYet(m) if m.contains("aborted")));
    }

    #[test]
    fn waves_take_a_growing_share_and_keep_the_boxes_they_had() {
        let place = |i: u32| place_in_fleet("ecole", &format!("box-{i}"));
        let share = |p: u32| (0..1000).filter(|i| place(*i) < p).count();
        let (ten, fifty) = (share(10), share(50));
        assert!((60..140).contains(&ten), "{ten} of 1000 in a 10 % wave");
        assert!(
            (420..580).contains(&fifty),
            "{fifty} of 1000 in a 50 % wave"
        );
        let mut r = release("2026.12.2");
        r.rollout.wave_percent = Some(100);
        assert_eq!(decide(&r, &BOX, None), Decision::Take);
    }

    #[test]
    fn windows_pass_midnight() {
        let at = |h, m| LocalTime::new(2, h, m);
        assert!(in_window("20:00-06:00", at(23, 0)));
        assert!(in_window("20:00-06:00", at(5, 59)));
        assert!(!in_window("20:00-06:00", at(6, 0)));
        assert!(!in_window("20:00-06:00", at(12, 0)));
        assert!(in_window("12:00-13:30", at(13, 0)));
        assert!(!in_window("nonsense", at(13, 0)));
    }
}
