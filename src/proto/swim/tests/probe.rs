//! Probing under loss: many direct pings, proof of life, at-once nacks,
//! and the local health score when the network, not the node, is at fault.

use super::*;

/// The direct ping is sent `direct_pings` times, evenly over the probe
/// timeout, then once more with the helpers.
#[test]
fn direct_pings_are_spread_over_the_timeout() {
    let config = SwimConfig {
        direct_pings: 4,
        probe_timeout: ms(400),
        confirm_probe: false,
        ..SwimConfig::default()
    };
    let mut a = Swim::new(1u64, config, ChaCha8Rng::seed_from_u64(3)).expect("valid");
    a.add_member(Time::ZERO, 2);
    let start = a.poll_timeout().expect("a first probe");
    let mut pings = Vec::new();
    while let Some(now) = a.poll_timeout() {
        a.handle_timeout(now);
        if !events(&mut a).is_empty() {
            break;
        }
        for (to, m) in drain(&mut a) {
            if let (2, SwimKind::Ping { .. }) = (to, m.kind) {
                pings.push(now.since(start));
            }
        }
    }
    assert_eq!(pings, [ms(0), ms(100), ms(200), ms(300), ms(400)]);
}

/// Retries stop at the first ack.
#[test]
fn an_ack_stops_the_retries() {
    let config = SwimConfig {
        direct_pings: 10,
        ..SwimConfig::default()
    };
    let mut a = Swim::new(1u64, config, ChaCha8Rng::seed_from_u64(3)).expect("valid");
    a.add_member(Time::ZERO, 2);
    let now = a.poll_timeout().expect("a first probe");
    a.handle_timeout(now);
    let sent = drain(&mut a);
    let Some((
        2,
        SwimMessage {
            kind: SwimKind::Ping { seq },
            ..
        },
    )) = sent.last().cloned()
    else {
        panic!("no ping: {sent:?}");
    };
    a.handle_message(now + ms(30), 2, msg(SwimKind::Ack { seq }, vec![]));
    let end = now + ms(999);
    while let Some(t) = a.poll_timeout().filter(|t| *t <= end) {
        a.handle_timeout(t);
        assert!(drain(&mut a).is_empty(), "sent after the ack, at {t:?}");
    }
    assert_eq!(a.stats().probes_failed, 0);
}

/// Any message from the target is proof of life: the probe does not fail.
#[test]
fn any_message_from_the_target_clears_its_probe() {
    let mut a = unconfirmed_prober();
    let now = a.poll_timeout().expect("a first probe");
    a.handle_timeout(now);
    drain(&mut a);
    a.heard_from(now, 2);
    let end = now + ms(1500);
    while let Some(t) = a.poll_timeout().filter(|t| *t <= end) {
        a.handle_timeout(t);
        drain(&mut a);
    }
    assert!(events(&mut a).is_empty());
    assert_eq!(a.stats().probes_failed, 0);
    assert_eq!(a.state_of(2), Some(MemberState::Alive));
}

/// A helper that cannot reach the target nacks at once, so the requester
/// knows its own messages get through.
#[test]
fn a_helper_without_the_target_nacks_at_once() {
    let mut r = node(2, 5);
    r.add_member(Time::ZERO, 1);
    drain(&mut r);
    let asked = msg(SwimKind::PingReq { seq: 8, target: 3 }, vec![]);
    r.handle_message(at_secs(10), 1, asked);
    let sent = drain(&mut r);
    assert!(
        sent.iter()
            .any(|(to, m)| *to == 1 && m.kind == SwimKind::Nack { seq: 8 }),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|(to, _)| *to == 3));
}

/// A failed probe during which other members were heard from raises the
/// local health score by one, not by one per silent helper.
#[test]
fn a_node_that_hears_others_blames_the_network_once() {
    let config = SwimConfig {
        confirm_probe: false,
        ..SwimConfig::default()
    };
    let run = |hear: bool| {
        let mut a = Swim::new(1u64, config.clone(), ChaCha8Rng::seed_from_u64(3)).expect("valid");
        for id in 2..=7 {
            a.add_member(Time::ZERO, id);
        }
        let now = a.poll_timeout().expect("a first probe");
        a.handle_timeout(now);
        let target = drain(&mut a)[0].0;
        let end = now + ms(999);
        while let Some(t) = a.poll_timeout().filter(|t| *t < end) {
            a.handle_timeout(t);
            if hear {
                let other = (2..=7).find(|id| *id != target).expect("another member");
                a.heard_from(t, other);
            }
            drain(&mut a);
        }
        a.handle_timeout(end + ms(1));
        assert_eq!(a.stats().probes_failed, 1);
        a.local_health()
    };
    assert_eq!(run(true), 1);
    assert_eq!(run(false), 5, "five silent helpers");
}
