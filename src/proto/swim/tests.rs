//! Tests of the SWIM failure detector: unit tests on one node, then a small
//! discrete-event simulation of whole clusters.
//!
//! Seeded from `PLEXUS_SEED` when set, else at random; every simulation
//! prints its seed so a failure can be replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

type Node = Swim<u64, ChaCha8Rng>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_secs(s: u64) -> Time {
    Time::ZERO + Duration::from_secs(s)
}

fn node(id: u64, seed: u64) -> Node {
    Swim::new(id, SwimConfig::default(), ChaCha8Rng::seed_from_u64(seed))
        .expect("default config is valid")
}

fn drain(n: &mut Node) -> Vec<(u64, SwimMessage<u64>)> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

fn events(n: &mut Node) -> Vec<FailureEvent<u64>> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn test_seed(name: &str) -> u64 {
    let seed = match std::env::var("PLEXUS_SEED") {
        Ok(s) => s.trim().parse().expect("PLEXUS_SEED must be a u64"),
        Err(_) => rand::rng().random(),
    };
    println!("{name}: PLEXUS_SEED={seed}");
    seed
}

// ---------------------------------------------------------------- one node

#[test]
fn config_is_validated() {
    let bad = SwimConfig {
        probe_timeout: ms(1000),
        ..SwimConfig::default()
    };
    assert_eq!(bad.validate(), Err(SwimConfigError::ProbeTimeout));
    let bad = SwimConfig {
        max_piggyback: 0,
        ..SwimConfig::default()
    };
    let rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(
        Swim::new(1u64, bad, rng).err(),
        Some(SwimConfigError::ZeroPiggyback)
    );
    assert!(SwimConfig::default().validate().is_ok());
}

#[test]
fn idle_without_members() {
    let mut a = node(1, 1);
    assert_eq!(a.poll_timeout(), None);
    assert!(!a.add_member(Time::ZERO, 1), "a node is not its own member");
    assert!(a.add_member(Time::ZERO, 2));
    assert!(!a.add_member(Time::ZERO, 2));
    let first = a.poll_timeout().expect("a member arms the probe timer");
    assert!(first < at_secs(1));
    assert!(a.remove_member(2));
    assert_eq!(a.members().count(), 0);
}

fn msg(kind: SwimKind<u64>, updates: Vec<Update<u64>>) -> SwimMessage<u64> {
    SwimMessage {
        incarnation: 0,
        kind,
        updates,
    }
}

/// A lone peer that never answers is suspected after one period, then
/// declared down when the suspicion times out (4 s for a cluster of two).
#[test]
fn silent_peer_is_suspected_then_down() {
    let mut a = node(1, 7);
    a.add_member(Time::ZERO, 2);
    let mut seen = Vec::new();
    while let Some(now) = a.poll_timeout() {
        assert!(now < at_secs(20), "timers past the expected down");
        a.handle_timeout(now);
        for (to, msg) in drain(&mut a) {
            assert_eq!(to, 2);
            assert!(
                matches!(msg.kind, SwimKind::Ping { .. }),
                "no helpers, so no PingReq"
            );
        }
        seen.extend(events(&mut a).into_iter().map(|e| (now, e)));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (suspected_at, e) = seen[0];
    assert_eq!(e, FailureEvent::Suspected(2));
    let (down_at, e) = seen[1];
    assert_eq!(e, FailureEvent::Down(2));
    assert_eq!(down_at.since(suspected_at), Duration::from_secs(4));
    assert_eq!(a.stats().suspicions_raised, 1);
    assert_eq!(a.state_of(2), Some(MemberState::Down));
}

/// A silent member is pinged again halfway to the indirect phase, and a
/// failed probe only raises doubt: the member is probed again at once and
/// suspected when that probe fails too.
#[test]
fn a_failed_probe_is_retried_and_confirmed_before_any_suspicion() {
    let mut a = node(1, 3);
    a.add_member(Time::ZERO, 2);
    a.add_member(Time::ZERO, 3);
    let (mut pings_to_2, mut suspected_at) = (Vec::new(), None);
    while let Some(now) = a.poll_timeout() {
        if now > at_secs(30) || suspected_at.is_some() {
            break;
        }
        a.handle_timeout(now);
        for (to, m) in drain(&mut a) {
            match (to, m.kind) {
                // 3 answers its pings; 2 never does, and 3 does not help.
                (3, SwimKind::Ping { seq }) => {
                    a.handle_message(now, 3, msg(SwimKind::Ack { seq }, vec![]))
                }
                (2, SwimKind::Ping { seq }) => pings_to_2.push((now, seq)),
                _ => {}
            }
        }
        let heard = events(&mut a);
        assert!(
            heard.iter().all(|e| *e == FailureEvent::Suspected(2)),
            "{heard:?}"
        );
        if !heard.is_empty() {
            suspected_at = Some(now);
        }
    }
    let suspected_at = suspected_at.expect("2 is suspected in the end");
    // Before that, two probes of 2, the second right after the first. The
    // first pings three times: at once, halfway, and with the indirect
    // phase. The confirmation probe is twice as wide: four pings over the
    // (health-stretched, 1 s) timeout, and one with the indirect phase.
    pings_to_2.retain(|(at, _)| *at < suspected_at);
    let probes: BTreeSet<u64> = pings_to_2.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(probes.len(), 2, "{pings_to_2:?}");
    assert_eq!(pings_to_2.len(), 8, "{pings_to_2:?}");
    let (first, confirm) = pings_to_2.split_at(3);
    assert!(first.iter().all(|(_, seq)| *seq == first[0].1));
    assert!(confirm.iter().all(|(_, seq)| *seq == confirm[0].1));
    assert_eq!(first[1].0.since(first[0].0), ms(250));
    assert_eq!(confirm[1].0.since(confirm[0].0), ms(250));
    assert_eq!(confirm[4].0.since(confirm[0].0), ms(1000));
    assert_eq!(a.stats().doubts, 1);
    assert_eq!(a.stats().suspicions_raised, 1);
}

/// The confirmation probe asks twice as many helpers as the first one.
#[test]
fn the_confirmation_probe_asks_twice_the_helpers() {
    let mut a = node(1, 5);
    for id in 2..=14 {
        a.add_member(Time::ZERO, id);
    }
    let mut asked: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut suspected = false;
    while let Some(now) = a.poll_timeout() {
        if now > at_secs(60) || suspected {
            break;
        }
        a.handle_timeout(now);
        for (to, m) in drain(&mut a) {
            match m.kind {
                // Everyone but 2 answers its own pings; no helper helps.
                SwimKind::Ping { seq } if to != 2 => {
                    a.handle_message(now, to, msg(SwimKind::Ack { seq }, vec![]))
                }
                SwimKind::PingReq { seq, target: 2 } => {
                    asked.entry(seq).or_default().insert(to);
                }
                _ => {}
            }
        }
        suspected = events(&mut a).contains(&FailureEvent::Suspected(2));
    }
    assert!(suspected, "2 is suspected in the end");
    let widths: Vec<usize> = asked.values().map(BTreeSet::len).collect();
    assert_eq!(widths, [5, 10], "{asked:?}");
}

/// Node 1 with member 2, probing without the confirmation probe.
fn unconfirmed_prober() -> Node {
    let config = SwimConfig {
        confirm_probe: false,
        ..SwimConfig::default()
    };
    let mut a = Swim::new(1u64, config, ChaCha8Rng::seed_from_u64(3)).expect("valid");
    a.add_member(Time::ZERO, 2);
    a
}

/// Without the confirmation probe, one failed probe is a suspicion.
#[test]
fn without_confirmation_one_failed_probe_suspects() {
    let mut a = unconfirmed_prober();
    let mut pings = 0;
    while let Some(now) = a.poll_timeout() {
        a.handle_timeout(now);
        let sent = drain(&mut a).len();
        if !events(&mut a).is_empty() {
            break;
        }
        pings += sent;
    }
    assert_eq!(pings, 3, "one probe: three pings, no helpers");
    assert_eq!((a.stats().doubts, a.stats().suspicions_raised), (0, 1));
}

/// A helper pings the target again halfway to its nack.
#[test]
fn a_helper_retries_its_ping() {
    let mut r = node(2, 5);
    r.add_member(Time::ZERO, 1);
    r.add_member(Time::ZERO, 3);
    drain(&mut r);
    let asked = at_secs(10);
    r.handle_message(
        asked,
        1,
        msg(SwimKind::PingReq { seq: 8, target: 3 }, vec![]),
    );
    let first = drain(&mut r);
    let (3, SwimKind::Ping { seq: own }) = (first[0].0, first[0].1.kind) else {
        panic!("{first:?}")
    };
    r.handle_timeout(asked + ms(200));
    let again = drain(&mut r);
    assert!(
        again
            .iter()
            .any(|m| m.0 == 3 && m.1.kind == SwimKind::Ping { seq: own }),
        "{again:?}"
    );
}

/// Every member is probed once per round, and acks keep everyone alive.
/// With no other traffic the quietest-first order is a fixed round-robin.
#[test]
fn probes_go_round_robin() {
    let mut a = node(0, 11);
    for id in 1..=5 {
        a.add_member(Time::ZERO, id);
    }
    let mut targets = Vec::new();
    while targets.len() < 15 {
        let now = a.poll_timeout().expect("probing never stops");
        a.handle_timeout(now);
        for (to, m) in drain(&mut a) {
            if let SwimKind::Ping { seq } = m.kind {
                targets.push(to);
                a.handle_message(now + ms(2), to, msg(SwimKind::Ack { seq }, vec![]));
            }
        }
    }
    for round in targets.chunks(5) {
        let probed: BTreeSet<u64> = round.iter().copied().collect();
        assert_eq!(probed, (1..=5).collect(), "{targets:?}");
    }
    assert_eq!(targets[..5], targets[5..10], "the same order every round");
    assert!(events(&mut a).is_empty());
    assert_eq!(a.local_health(), 0);
}

/// Lifeguard: a node whose probes all fail, with no nacks from its helpers,
/// blames itself and slows down.
#[test]
fn local_health_stretches_the_period() {
    let mut a = node(0, 13);
    for id in 1..=5 {
        a.add_member(Time::ZERO, id);
    }
    let mut pings = Vec::new();
    while pings.len() < 6 {
        let now = a.poll_timeout().expect("probing never stops");
        let before = a.stats().probes_sent;
        a.handle_timeout(now);
        drain(&mut a);
        if a.stats().probes_sent > before {
            pings.push(now);
        }
    }
    assert!(a.local_health() >= 3, "{}", a.local_health());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1].since(w[0])).collect();
    assert_eq!(gaps[0], Duration::from_secs(1), "{gaps:?}");
    assert!(gaps[gaps.len() - 1] >= Duration::from_secs(4), "{gaps:?}");
    assert!(a.stats().probes_failed >= 5);
}

#[test]
fn ping_is_acked_and_suspicion_of_self_is_refuted() {
    let mut b = node(2, 3);
    b.add_member(Time::ZERO, 1);
    drain(&mut b);
    let suspect = Update::Suspect {
        id: 2,
        incarnation: 0,
        from: 1,
    };
    b.handle_message(Time::ZERO, 1, msg(SwimKind::Ping { seq: 9 }, vec![suspect]));
    assert_eq!(b.incarnation(), 1);
    assert_eq!(b.stats().refutations, 1);
    let out = drain(&mut b);
    assert_eq!(out.len(), 1);
    let (to, m) = &out[0];
    assert_eq!(
        (*to, m.kind, m.incarnation),
        (1, SwimKind::Ack { seq: 9 }, 1)
    );
    assert_eq!(
        m.updates[0],
        Update::Alive {
            id: 2,
            incarnation: 1
        },
        "the refutation rides first"
    );
    // A stale suspicion does not bump again, but the refutation goes out again.
    b.handle_message(
        Time::ZERO,
        1,
        msg(SwimKind::Ping { seq: 10 }, vec![suspect]),
    );
    assert_eq!(b.incarnation(), 1);
    assert_eq!(
        drain(&mut b)[0].1.updates[0],
        Update::Alive {
            id: 2,
            incarnation: 1
        }
    );
}

#[test]
fn incarnation_orders_updates() {
    let mut a = node(1, 5);
    a.add_member(Time::ZERO, 2);
    let feed =
        |a: &mut Node, u| a.handle_message(Time::ZERO, 3, msg(SwimKind::Ack { seq: 0 }, vec![u]));
    feed(
        &mut a,
        Update::Suspect {
            id: 2,
            incarnation: 0,
            from: 3,
        },
    );
    assert_eq!(a.state_of(2), Some(MemberState::Suspect));
    feed(
        &mut a,
        Update::Alive {
            id: 2,
            incarnation: 0,
        },
    );
    assert_eq!(
        a.state_of(2),
        Some(MemberState::Suspect),
        "alive at i does not beat suspect at i"
    );
    feed(
        &mut a,
        Update::Alive {
            id: 2,
            incarnation: 1,
        },
    );
    assert_eq!(a.state_of(2), Some(MemberState::Alive));
    feed(
        &mut a,
        Update::Dead {
            id: 2,
            incarnation: 0,
        },
    );
    assert_eq!(
        a.state_of(2),
        Some(MemberState::Alive),
        "stale death is ignored"
    );
    feed(
        &mut a,
        Update::Dead {
            id: 2,
            incarnation: 1,
        },
    );
    assert_eq!(a.state_of(2), Some(MemberState::Down));
    feed(
        &mut a,
        Update::Suspect {
            id: 2,
            incarnation: 5,
            from: 3,
        },
    );
    feed(
        &mut a,
        Update::Alive {
            id: 2,
            incarnation: 1,
        },
    );
    assert_eq!(
        a.state_of(2),
        Some(MemberState::Down),
        "down until a higher incarnation"
    );
    // Direct word from the member itself, at a higher incarnation.
    let hello = SwimMessage {
        incarnation: 2,
        kind: SwimKind::Ping { seq: 1 },
        updates: vec![],
    };
    a.handle_message(Time::ZERO, 2, hello);
    assert_eq!(a.state_of(2), Some(MemberState::Alive));
    use FailureEvent::*;
    assert_eq!(
        events(&mut a),
        vec![Suspected(2), Alive(2), Down(2), Alive(2)]
    );
    assert_eq!(a.stats().suspicions_refuted, 1);
}

/// Lifeguard: confirmations from distinct members shorten a suspicion from
/// the maximum towards the minimum; a higher incarnation restarts it.
#[test]
fn confirmations_shorten_suspicion() {
    let mut a = node(0, 5);
    for id in 1..10 {
        a.add_member(Time::ZERO, id);
    }
    let deadline = |a: &Node| {
        a.members[&1]
            .suspicion
            .as_ref()
            .map(|s| s.deadline.since(Time::ZERO))
    };
    let suspect = |from| Update::Suspect {
        id: 1,
        incarnation: 0,
        from,
    };
    let feed =
        |a: &mut Node, u| a.handle_message(Time::ZERO, 9, msg(SwimKind::Nack { seq: 0 }, vec![u]));
    feed(&mut a, suspect(2));
    // n = 10: min = 4 · log10(10) · 1 s = 4 s, max = 6 · min = 24 s.
    assert_eq!(deadline(&a), Some(Duration::from_secs(24)));
    feed(&mut a, suspect(2));
    assert_eq!(
        deadline(&a),
        Some(Duration::from_secs(24)),
        "the same suspecter again"
    );
    feed(&mut a, suspect(3));
    let one = deadline(&a).expect("still suspected");
    assert!(
        one < Duration::from_secs(24) && one > Duration::from_secs(4),
        "{one:?}"
    );
    feed(&mut a, suspect(4));
    feed(&mut a, suspect(5));
    assert_eq!(
        deadline(&a),
        Some(Duration::from_secs(4)),
        "K = 3 confirmations reach the minimum"
    );
    feed(&mut a, suspect(6));
    assert_eq!(
        deadline(&a),
        Some(Duration::from_secs(4)),
        "never below the minimum"
    );
    a.handle_message(
        at_secs(2),
        9,
        msg(
            SwimKind::Nack { seq: 0 },
            vec![Update::Suspect {
                id: 1,
                incarnation: 1,
                from: 2,
            }],
        ),
    );
    assert_eq!(
        deadline(&a),
        Some(Duration::from_secs(26)),
        "a new suspicion at a higher incarnation"
    );
}

#[test]
fn unknown_ids_are_ignored_unless_learning() {
    let mut a = node(1, 5);
    let alive = msg(
        SwimKind::Ack { seq: 0 },
        vec![Update::Alive {
            id: 9,
            incarnation: 0,
        }],
    );
    a.handle_message(Time::ZERO, 8, alive.clone());
    a.handle_message(
        Time::ZERO,
        8,
        msg(SwimKind::PingReq { seq: 1, target: 42 }, vec![]),
    );
    assert_eq!(a.members().count(), 0);
    assert!(drain(&mut a).is_empty());
    let config = SwimConfig {
        learn_from_gossip: true,
        ..SwimConfig::default()
    };
    let mut b = Swim::new(1u64, config, ChaCha8Rng::seed_from_u64(5)).expect("valid");
    b.handle_message(Time::ZERO, 8, alive);
    assert_eq!(b.state_of(8), Some(MemberState::Alive));
    assert_eq!(b.state_of(9), Some(MemberState::Alive));
    assert_eq!(
        events(&mut b),
        vec![FailureEvent::Joined(8), FailureEvent::Joined(9)]
    );
}

/// A relay pings the target, forwards its ack with the target's news, or
/// nacks when the target is silent.
#[test]
fn relay_forwards_ack_or_nacks() {
    let mut r = node(2, 5);
    r.add_member(Time::ZERO, 1);
    r.add_member(Time::ZERO, 3);
    drain(&mut r);
    r.handle_message(
        Time::ZERO,
        1,
        msg(SwimKind::PingReq { seq: 7, target: 3 }, vec![]),
    );
    let out = drain(&mut r);
    let (3, SwimKind::Ping { seq: own }) = (out[0].0, out[0].1.kind) else {
        panic!("{out:?}")
    };
    let ack = SwimMessage {
        incarnation: 4,
        kind: SwimKind::Ack { seq: own },
        updates: vec![],
    };
    r.handle_message(Time::ZERO + ms(5), 3, ack);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, out[0].1.kind), (1, SwimKind::Ack { seq: 7 }));
    assert_eq!(
        out[0].1.updates[0],
        Update::Alive {
            id: 3,
            incarnation: 4
        },
        "the target's word rides along"
    );

    let asked = at_secs(10);
    r.handle_message(
        asked,
        1,
        msg(SwimKind::PingReq { seq: 8, target: 3 }, vec![]),
    );
    drain(&mut r);
    r.handle_timeout(asked + ms(399));
    assert!(!drain(&mut r)
        .iter()
        .any(|m| matches!(m.1.kind, SwimKind::Nack { .. })));
    r.handle_timeout(asked + ms(400));
    let out = drain(&mut r);
    assert!(
        out.iter()
            .any(|m| m.0 == 1 && m.1.kind == SwimKind::Nack { seq: 8 }),
        "{out:?}"
    );
}

#[test]
fn piggyback_is_bounded_and_retransmits_stop() {
    let config = SwimConfig {
        learn_from_gossip: true,
        max_piggyback: 4,
        ..SwimConfig::default()
    };
    let mut a = Swim::new(0u64, config, ChaCha8Rng::seed_from_u64(1)).expect("valid");
    let updates = (1..=20)
        .map(|id| Update::Alive { id, incarnation: 0 })
        .collect();
    a.handle_message(Time::ZERO, 1, msg(SwimKind::Ack { seq: 0 }, updates));
    // n = 21, so each update goes out 4·⌈log₁₀ 22⌉ = 8 times.
    let mut sent: BTreeMap<u64, usize> = BTreeMap::new();
    for seq in 0..200 {
        a.handle_message(Time::ZERO, 1, msg(SwimKind::Ping { seq }, vec![]));
        for (_, m) in drain(&mut a) {
            assert!(m.updates.len() <= 4);
            for u in &m.updates {
                *sent.entry(u.id()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        sent.len(),
        21,
        "every update, our own alive included, went out"
    );
    assert!(sent.values().all(|&c| c == 8), "{sent:?}");
}

#[test]
fn messages_round_trip_through_serde() {
    let updates = vec![
        Update::Dead {
            id: 5,
            incarnation: 2,
        },
        Update::Alive {
            id: 7,
            incarnation: 0,
        },
    ];
    let m = SwimMessage {
        incarnation: 1,
        kind: SwimKind::PingReq {
            seq: 3,
            target: 4u64,
        },
        updates,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&m, &mut bytes).expect("serializes");
    let back: SwimMessage<u64> = ciborium::from_reader(&bytes[..]).expect("deserializes");
    assert_eq!(back, m);
    // Garbage is an error, not a panic.
    assert!(ciborium::from_reader::<SwimMessage<u64>, _>(&bytes[..bytes.len() / 2]).is_err());
}

fn arb_update() -> impl Strategy<Value = Update<u64>> + Clone {
    let id = 0u64..6;
    prop_oneof![
        (id.clone(), 0u64..4).prop_map(|(id, incarnation)| Update::Alive { id, incarnation }),
        (id.clone(), 0u64..4, 0u64..6).prop_map(|(id, incarnation, from)| Update::Suspect {
            id,
            incarnation,
            from
        }),
        (id, 0u64..4).prop_map(|(id, incarnation)| Update::Dead { id, incarnation }),
    ]
}

fn arb_message() -> impl Strategy<Value = SwimMessage<u64>> {
    let seq = 0u64..8;
    let kind = prop_oneof![
        seq.clone().prop_map(|seq| SwimKind::Ping { seq }),
        (seq.clone(), 0u64..8).prop_map(|(seq, target)| SwimKind::PingReq { seq, target }),
        seq.clone().prop_map(|seq| SwimKind::Ack { seq }),
        seq.prop_map(|seq| SwimKind::Nack { seq }),
    ];
    let updates = proptest::collection::vec(arb_update(), 0..12);
    (0u64..4, kind, updates).prop_map(|(incarnation, kind, updates)| SwimMessage {
        incarnation,
        kind,
        updates,
    })
}

proptest! {
    /// Whatever peers send, the node neither panics nor leaves a timer in
    /// the past, and never piggybacks more than allowed.
    #[test]
    fn arbitrary_input_is_survived(
        steps in proptest::collection::vec((0u64..8, 0u64..300, arb_message()), 1..60),
        seed: u64,
    ) {
        let mut a = node(0, seed);
        for id in 1..4 {
            a.add_member(Time::ZERO, id);
        }
        let mut now = Time::ZERO;
        for (from, advance, msg) in steps {
            now = now + ms(advance);
            while let Some(due) = a.poll_timeout().filter(|t| *t <= now) {
                a.handle_timeout(due);
                prop_assert!(a.poll_timeout().is_none_or(|t| t > due), "due {:?} next {:?} probe {:?} next_probe {:?} members {:?}", due, a.poll_timeout(), a.probe, a.next_probe_at, a.members);
            }
            a.handle_message(now, from, msg);
            for (to, m) in drain(&mut a) {
                prop_assert!(to != 0);
                prop_assert!(m.updates.len() <= a.config().max_piggyback);
            }
            events(&mut a);
            prop_assert!(a.members().all(|(id, _)| (1..4).contains(&id)));
        }
    }
}

mod order;
mod probe;
mod sim;
