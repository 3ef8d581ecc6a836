//! The probe order: the quietest member first, so a crash is found within
//! one round, and sooner when the others talk.

use super::*;

/// Runs the timers due up to `end`. Every ping to a member in `answer` is
/// acked 2 ms later, and every member in `talk` is heard from 5 ms after
/// each timer. Returns the probes begun, with their targets.
fn probe_until(a: &mut Node, end: Time, answer: &[u64], talk: &[u64]) -> Vec<(Time, u64)> {
    let mut targets = Vec::new();
    while let Some(now) = a.poll_timeout().filter(|t| *t <= end) {
        let before = a.stats().probes_sent;
        a.handle_timeout(now);
        for &id in talk {
            a.heard_from(now + ms(5), id);
        }
        let sent = drain(a);
        if a.stats().probes_sent > before {
            if let Some((to, _)) = sent
                .iter()
                .find(|(_, m)| matches!(m.kind, SwimKind::Ping { .. }))
            {
                targets.push((now, *to));
            }
        }
        for (to, m) in sent {
            if let SwimKind::Ping { seq } = m.kind {
                if answer.contains(&to) {
                    a.handle_message(now + ms(2), to, msg(SwimKind::Ack { seq }, vec![]));
                }
            }
        }
    }
    targets
}

/// With no traffic but the probes, each member is probed exactly once a
/// round, so a member that crashes is probed within one round. The
/// paper's list reshuffled every round lets two probes of a member be
/// almost two rounds apart.
#[test]
fn each_member_is_probed_exactly_once_a_round() {
    let mut a = node(0, test_seed("order-round"));
    for id in 1..=5 {
        a.add_member(Time::ZERO, id);
    }
    let targets = probe_until(&mut a, at_secs(60), &[1, 2, 3, 4, 5], &[]);
    assert!(targets.len() >= 55, "{}", targets.len());
    for id in 1..=5 {
        let times: Vec<Time> = targets
            .iter()
            .filter(|(_, t)| *t == id)
            .map(|(at, _)| *at)
            .collect();
        for gap in times.windows(2).map(|w| w[1].since(w[0])) {
            assert_eq!(gap, Duration::from_secs(5), "member {id}: {targets:?}");
        }
    }
}

/// A member that talks needs no probe to show it is up: the probes go to
/// the one that fell silent.
#[test]
fn members_that_talk_are_not_probed() {
    let mut a = node(0, test_seed("order-talk"));
    for id in 1..=4 {
        a.add_member(Time::ZERO, id);
    }
    // One quiet round first, then 1, 2 and 3 talk all the time.
    probe_until(&mut a, at_secs(5), &[1, 2, 3, 4], &[]);
    for id in 1..=3 {
        a.heard_from(at_secs(5) + ms(5), id);
    }
    let targets = probe_until(&mut a, at_secs(15), &[1, 2, 3, 4], &[1, 2, 3]);
    assert!(targets.len() >= 9, "{targets:?}");
    assert!(targets.iter().all(|(_, to)| *to == 4), "{targets:?}");
    assert!(events(&mut a).is_empty());
}

/// A suspect is expected to fail its probes. While this node hears from
/// its other members, those failures do not raise its local health: one
/// crashed member, probed each round until declared down, must not
/// stretch the period and slow the detection of the next crash.
#[test]
fn failed_probes_of_a_suspect_leave_local_health_alone() {
    let config = SwimConfig {
        confirm_probe: false,
        ..SwimConfig::default()
    };
    let mut a = Swim::new(
        1u64,
        config,
        ChaCha8Rng::seed_from_u64(test_seed("order-health")),
    )
    .expect("valid");
    a.add_member(Time::ZERO, 2);
    a.add_member(Time::ZERO, 3);
    let mut suspect_probes = 0;
    let mut end = Time::ZERO;
    while a.state_of(3) != Some(MemberState::Down) {
        end = end + ms(100);
        let was_suspect = a.state_of(3) == Some(MemberState::Suspect);
        let targets = probe_until(&mut a, end, &[2], &[2]);
        if was_suspect {
            suspect_probes += targets.iter().filter(|(_, to)| *to == 3).count();
            assert!(
                a.local_health() <= 1,
                "health {} at {end:?}",
                a.local_health()
            );
        }
        assert!(end < at_secs(120), "3 never declared down");
    }
    assert!(suspect_probes >= 3, "{suspect_probes}");
    assert_eq!(a.state_of(2), Some(MemberState::Alive));
}
