//! The rollout rules on made-up boxes: groups advance on commits, failures halt,
//! silence is pending, boxes the release does not apply to are left out.

use super::*;

fn release(version: &str) -> Release {
    Release {
        version: version.into(),
        board: "x86_64".into(),
        ..Release::default()
    }
}

fn rollout(groups: &[u8], success: u8, errors: Threshold) -> Rollout {
    Rollout::new(
        Scope::Fleet,
        release("2026.12.2"),
        Plan::new(groups, success, errors).unwrap(),
        1_000,
    )
}

/// Boxes of one site named so that each group of `groups` holds `per_group`.
fn boxes_by_group(r: &Rollout, per_group: usize) -> Vec<Vec<BoxRelease>> {
    let mut out = vec![Vec::new(); r.plan.groups.len()];
    for i in 0.. {
        let name = format!("box-{i}");
        let g = r.group_of("ecole", &name).unwrap();
        if out[g].len() < per_group {
            out[g].push(BoxRelease {
                site: "ecole".into(),
                r#box: name,
                running: "2026.12.1".into(),
                board: "x86_64".into(),
                ..BoxRelease::default()
            });
        }
        if out.iter().all(|g| g.len() == per_group) {
            return out;
        }
    }
    unreachable!()
}

fn says(b: &mut BoxRelease, state: UpdateState) {
    b.version = Some("2026.12.2".into());
    b.state = Some(state);
    if state == UpdateState::Committed {
        b.running = "2026.12.2".into();
    }
}

#[test]
fn a_group_that_reaches_its_success_threshold_starts_the_next_and_the_last_finishes() {
    let mut r = rollout(&[10, 50, 100], 75, Threshold::Count(2));
    let mut groups = boxes_by_group(&r, 4);
    let all = |g: &Vec<Vec<BoxRelease>>| g.concat();
    assert_eq!(evaluate(&r, &tally(&r, &all(&groups))), Step::Stay);
    for b in &mut groups[0][..2] {
        says(b, UpdateState::Committed);
    }
    says(&mut groups[0][2], UpdateState::Checking);
    // Booted into the release, its health not yet checked: not committed.
    groups[0][2].running = "2026.12.2".into();
    assert_eq!(evaluate(&r, &tally(&r, &all(&groups))), Step::Stay);
    says(&mut groups[0][2], UpdateState::Committed);
    let t = tally(&r, &all(&groups));
    assert_eq!((t[0].boxes, t[0].committed, t[0].pending), (4, 3, 1));
    assert_eq!(evaluate(&r, &t), Step::Advance);
    r.group = 1;
    // The second group's boxes have not said anything: pending, no advance.
    assert_eq!(evaluate(&r, &tally(&r, &all(&groups))), Step::Stay);
    for g in &mut groups[1..] {
        for b in g {
            says(b, UpdateState::Committed);
        }
    }
    assert_eq!(evaluate(&r, &tally(&r, &all(&groups))), Step::Advance);
    r.group = 2;
    assert_eq!(evaluate(&r, &tally(&r, &all(&groups))), Step::Finish);
}

#[test]
fn offline_boxes_are_pending_never_failed_and_failures_halt_at_the_threshold() {
    let r = rollout(&[50, 100], 100, Threshold::Count(2));
    let mut groups = boxes_by_group(&r, 5);
    // Three boxes of the first group never heard from (a school on holiday), one
    // committed, one rolled back: below the threshold of two, and not all committed.
    says(&mut groups[0][0], UpdateState::Committed);
    says(&mut groups[0][1], UpdateState::RolledBack);
    let t = tally(&r, &groups.concat());
    assert_eq!((t[0].pending, t[0].failed, t[0].committed), (3, 1, 1));
    assert_eq!(evaluate(&r, &t), Step::Stay);
    says(&mut groups[0][2], UpdateState::Refused);
    match evaluate(&r, &tally(&r, &groups.concat())) {
        Step::Halt(why) => assert!(why.contains("2 of 5"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Percent thresholds count the boxes of every started group.
    let r = rollout(&[50, 100], 100, Threshold::Percent(50));
    assert_eq!(evaluate(&r, &tally(&r, &groups.concat())), Step::Stay);
    says(&mut groups[0][3], UpdateState::RolledBack);
    assert!(matches!(
        evaluate(&r, &tally(&r, &groups.concat())),
        Step::Halt(_)
    ));
}

#[test]
fn boxes_the_release_does_not_apply_to_are_not_counted() {
    let r = rollout(&[100], 100, Threshold::Count(1));
    let mut groups = boxes_by_group(&r, 3);
    let g = &mut groups[0];
    // A Pi refuses the x86 release: not a failure of the release.
    g[0].board = "rpi4".into();
    says(&mut g[0], UpdateState::Refused);
    // A box already ahead.
    g[1].running = "2027.1".into();
    says(&mut g[2], UpdateState::Committed);
    let t = tally(&r, &groups.concat());
    assert_eq!((t[0].boxes, t[0].committed, t[0].failed), (1, 1, 0));
    assert_eq!(evaluate(&r, &t), Step::Finish);
    // Not running: a paused or halted rollout stays where it is.
    let mut paused = r.clone();
    paused.state = RolloutState::Paused;
    assert_eq!(evaluate(&paused, &t), Step::Stay);
}

#[test]
fn a_group_with_no_box_is_passed_at_once() {
    let r = rollout(&[1, 100], 90, Threshold::Count(1));
    assert_eq!(evaluate(&r, &tally(&r, &[])), Step::Advance);
}

#[test]
fn plans_and_thresholds_are_checked() {
    assert!(Plan::new(&[10, 50], 80, Threshold::Count(1)).is_err());
    assert!(Plan::new(&[50, 10, 100], 80, Threshold::Count(1)).is_err());
    assert!(Plan::new(&[0, 100], 80, Threshold::Count(1)).is_err());
    assert!(Plan::new(&[100], 0, Threshold::Count(1)).is_err());
    assert_eq!("3".parse(), Ok(Threshold::Count(3)));
    assert_eq!("10%".parse(), Ok(Threshold::Percent(10)));
    for bad in ["0", "0%", "101%", "x", "-1"] {
        assert!(bad.parse::<Threshold>().is_err(), "{bad}");
    }
}

#[test]
fn the_latest_event_of_each_box_is_its_word_and_presence_says_what_runs() {
    let ev = |state: &str, running: &str| {
        serde_json::json!({"type": "release", "version": "2026.12.2", "state": state,
            "running": running, "board": "x86_64", "progress": {}})
    };
    let events = vec![
        ("ecole".into(), "a".into(), ev("downloading", "2026.12.1")),
        ("ecole".into(), "a".into(), ev("committed", "2026.12.2")),
        ("ecole".into(), "b".into(), ev("refused", "2026.12.1")),
        (
            "ecole".into(),
            "b".into(),
            serde_json::json!({"type": "release"}),
        ),
    ];
    let presence = vec![(
        "ecole".to_string(),
        "a".to_string(),
        "2026.12.2".to_string(),
        5,
        true,
    )];
    let boxes = latest(events, &presence);
    assert_eq!(boxes.len(), 2);
    assert_eq!(boxes[0].state, Some(UpdateState::Committed));
    assert_eq!(
        (boxes[0].running.as_str(), boxes[0].online),
        ("2026.12.2", true)
    );
    assert_eq!(boxes[1].state, Some(UpdateState::Refused));
    assert_eq!(boxes[1].running, "2026.12.1");
}

#[test]
fn failures_a_person_resumed_past_no_longer_halt() {
    let mut r = rollout(&[100], 100, Threshold::Count(1));
    let mut groups = boxes_by_group(&r, 3);
    says(&mut groups[0][0], UpdateState::RolledBack);
    let t = tally(&r, &groups.concat());
    assert!(matches!(evaluate(&r, &t), Step::Halt(_)));
    r.failures_accepted = failures(&r, &t);
    assert_eq!(evaluate(&r, &t), Step::Stay);
    says(&mut groups[0][1], UpdateState::Refused);
    assert!(matches!(
        evaluate(&r, &tally(&r, &groups.concat())),
        Step::Halt(_)
    ));
}
