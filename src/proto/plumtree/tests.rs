//! Tests of the Plumtree state machine: unit tests of each rule, then a
//! discrete-event simulation of a 100-node cluster.

use std::time::Duration;

use super::*;

type Tree = Plumtree<u32, u64>;

fn t(ms: u64) -> Time {
    Time::from_micros(ms * 1000)
}

fn drain(tree: &mut Tree) -> Vec<Event<u32, u64>> {
    std::iter::from_fn(|| tree.poll_event()).collect()
}

fn send(to: u32, msg: PlumMsg<u64>) -> Event<u32, u64> {
    Event::Send { to, msg }
}

fn ihave(pairs: &[(u64, u32)]) -> PlumMsg<u64> {
    PlumMsg::IHave(
        pairs
            .iter()
            .map(|&(id, hops)| Announcement { id, hops })
            .collect(),
    )
}

/// A node with neighbours 1..=n, all eager.
fn node(config: Config, n: u32) -> Tree {
    let mut tree = Tree::new(config);
    for p in 1..=n {
        tree.handle_neighbor_up(p);
    }
    tree
}

#[test]
fn first_receipt_pushes_to_eager_and_announces_to_lazy() {
    let mut tree = node(Config::default(), 4);
    tree.handle_message(t(0), 3, PlumMsg::Prune);
    tree.handle_message(t(0), 4, PlumMsg::Prune);
    tree.handle_received(t(1), 1, 7, 2, true);
    let push = Event::Push {
        to: vec![2],
        id: 7,
        hops: 3,
    };
    assert_eq!(drain(&mut tree), vec![push]);
    // Announcements wait for the batch timer.
    assert_eq!(tree.poll_timeout(), Some(t(11)));
    tree.handle_received(t(5), 2, 8, 1, true);
    drain(&mut tree);
    tree.handle_timeout(t(11));
    assert_eq!(
        drain(&mut tree),
        vec![
            send(3, ihave(&[(7, 3), (8, 2)])),
            send(4, ihave(&[(7, 3), (8, 2)]))
        ]
    );
    let s = tree.stats();
    assert_eq!(
        (s.payloads_pushed, s.ihaves_sent, s.ids_announced),
        (2, 2, 4)
    );
}

#[test]
fn duplicate_prunes_sender_and_prune_moves_to_lazy() {
    let mut tree = node(Config::default(), 3);
    tree.handle_received(t(0), 1, 7, 1, true);
    drain(&mut tree);
    tree.handle_received(t(1), 2, 7, 4, false);
    assert_eq!(drain(&mut tree), vec![send(2, PlumMsg::Prune)]);
    tree.handle_message(t(1), 3, PlumMsg::Prune);
    assert_eq!(tree.eager_peers().collect::<Vec<_>>(), vec![1]);
    assert_eq!(tree.lazy_peers().collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(tree.stats().duplicates, 1);
    assert_eq!(tree.stats().prunes_sent, 1);
    // A broadcast now pushes to 1 only.
    tree.broadcast(t(2), 9);
    assert_eq!(
        drain(&mut tree),
        vec![Event::Push {
            to: vec![1],
            id: 9,
            hops: 1
        }]
    );
}

#[test]
fn missing_message_grafts_first_announcer_then_next() {
    let mut tree = node(Config::default(), 3);
    tree.handle_message(t(0), 2, ihave(&[(7, 3)]));
    tree.handle_message(t(30), 3, ihave(&[(7, 2)]));
    tree.handle_message(t(40), 2, ihave(&[(7, 3)]));
    assert_eq!(tree.missing_count(), 1);
    assert_eq!(tree.poll_timeout(), Some(t(100)));
    tree.handle_timeout(t(99));
    assert!(drain(&mut tree).is_empty());
    tree.handle_timeout(t(100));
    assert_eq!(drain(&mut tree), vec![send(2, PlumMsg::Graft(vec![7]))]);
    assert_eq!(tree.poll_timeout(), Some(t(150)));
    tree.handle_timeout(t(150));
    assert_eq!(drain(&mut tree), vec![send(3, PlumMsg::Graft(vec![7]))]);
    // The answer cancels the timer.
    tree.handle_received(t(160), 3, 7, 3, true);
    assert_eq!(tree.missing_count(), 0);
    assert_eq!(tree.poll_timeout(), Some(t(160) + Duration::from_secs(60)));
    let s = tree.stats();
    assert_eq!((s.grafts_sent, s.ids_grafted), (2, 2));
}

#[test]
fn grafts_to_one_peer_share_a_message_and_give_up_eventually() {
    let config = Config {
        max_graft_attempts: 3,
        ..Config::default()
    };
    let mut tree = node(config, 2);
    tree.handle_message(t(0), 2, ihave(&[(7, 1), (8, 1)]));
    tree.handle_timeout(t(100));
    assert_eq!(drain(&mut tree), vec![send(2, PlumMsg::Graft(vec![7, 8]))]);
    tree.handle_timeout(t(150));
    tree.handle_timeout(t(200));
    assert_eq!(drain(&mut tree).len(), 2);
    tree.handle_timeout(t(250));
    assert!(drain(&mut tree).is_empty());
    assert_eq!(tree.missing_count(), 0);
    assert_eq!(tree.poll_timeout(), None);
}

#[test]
fn graft_is_answered_with_payload_and_moves_to_eager() {
    let mut tree = node(Config::default(), 2);
    tree.handle_message(t(0), 2, PlumMsg::Prune);
    tree.handle_received(t(0), 1, 7, 4, true);
    drain(&mut tree);
    tree.handle_message(t(1), 2, PlumMsg::Graft(vec![7, 99, 7]));
    assert_eq!(
        drain(&mut tree),
        vec![Event::Push {
            to: vec![2],
            id: 7,
            hops: 5
        }]
    );
    assert_eq!(tree.eager_peers().collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn full_batch_goes_at_once() {
    let config = Config {
        ihave_batch: 2,
        ..Config::default()
    };
    let mut tree = node(config, 2);
    tree.handle_message(t(0), 2, PlumMsg::Prune);
    tree.broadcast(t(0), 1);
    tree.broadcast(t(0), 2);
    tree.broadcast(t(0), 3);
    let sends: Vec<_> = drain(&mut tree)
        .into_iter()
        .filter(|e| matches!(e, Event::Send { .. }))
        .collect();
    assert_eq!(sends, vec![send(2, ihave(&[(1, 1), (2, 1)]))]);
    tree.handle_timeout(t(10));
    assert_eq!(drain(&mut tree), vec![send(2, ihave(&[(3, 1)]))]);
}

#[test]
fn announcements_repeat_to_eager_and_lazy_peers_when_configured() {
    let config = Config {
        ihave_repeats: 2,
        ..Config::default()
    };
    let mut tree = node(config, 2);
    tree.handle_message(t(0), 2, PlumMsg::Prune);
    tree.broadcast(t(0), 1);
    drain(&mut tree);
    let mut sent = Vec::new();
    while let Some(at) = tree.poll_timeout().filter(|&at| at < t(1000)) {
        tree.handle_timeout(at);
        for e in drain(&mut tree) {
            sent.push((at.as_micros() / 1000, e));
        }
    }
    let once = |to| send(to, ihave(&[(1, 1)]));
    assert_eq!(
        sent,
        vec![
            (10, once(2)),
            (210, once(1)),
            (210, once(2)),
            (410, once(1)),
            (410, once(2))
        ]
    );
    assert_eq!(tree.stats().ihaves_sent, 5);
}

#[test]
fn neighbor_down_regrafts_at_once() {
    let mut tree = node(Config::default(), 3);
    tree.handle_message(t(0), 2, ihave(&[(7, 3)]));
    tree.handle_message(t(0), 3, ihave(&[(7, 3)]));
    tree.handle_timeout(t(100));
    assert_eq!(drain(&mut tree), vec![send(2, PlumMsg::Graft(vec![7]))]);
    tree.handle_neighbor_down(t(110), 2);
    assert!(!tree.is_neighbor(&2));
    assert_eq!(tree.poll_timeout(), Some(t(110)));
    tree.handle_timeout(t(110));
    assert_eq!(drain(&mut tree), vec![send(3, PlumMsg::Graft(vec![7]))]);
    // Pending announcements to a departed peer are dropped.
    tree.handle_message(t(111), 1, PlumMsg::Prune);
    tree.broadcast(t(111), 8);
    drain(&mut tree);
    tree.handle_neighbor_down(t(112), 1);
    tree.handle_timeout(t(200));
    assert!(drain(&mut tree)
        .iter()
        .all(|e| !matches!(e, Event::Send { to: 1, .. })));
}

#[test]
fn received_ids_are_forgotten_after_the_horizon() {
    let config = Config {
        horizon: Duration::from_secs(1),
        ..Config::default()
    };
    let mut tree = node(config, 1);
    tree.handle_received(t(0), 1, 7, 1, true);
    tree.handle_received(t(500), 1, 8, 1, true);
    assert_eq!(tree.remembered_count(), 2);
    assert_eq!(tree.poll_timeout(), Some(t(1000)));
    tree.handle_timeout(t(1000));
    assert_eq!(tree.remembered_count(), 1);
    tree.handle_timeout(t(1500));
    assert_eq!(tree.remembered_count(), 0);
    assert_eq!(tree.poll_timeout(), None);
    // A graft for a forgotten id gets no payload.
    drain(&mut tree);
    tree.handle_message(t(1600), 1, PlumMsg::Graft(vec![7]));
    assert!(drain(&mut tree).is_empty());
}

#[test]
fn much_shorter_lazy_path_replaces_the_eager_one() {
    let config = Config {
        optimization_threshold: Some(3),
        ..Config::default()
    };
    let mut tree = node(config, 3);
    tree.handle_message(t(0), 2, PlumMsg::Prune);
    tree.handle_message(t(0), 3, PlumMsg::Prune);
    tree.handle_received(t(0), 1, 7, 9, true);
    drain(&mut tree);
    // Not enough of a gain.
    tree.handle_message(t(1), 2, ihave(&[(7, 7)]));
    assert!(drain(&mut tree).is_empty());
    tree.handle_message(t(1), 3, ihave(&[(7, 6)]));
    assert_eq!(
        drain(&mut tree),
        vec![send(3, PlumMsg::Graft(vec![])), send(1, PlumMsg::Prune)]
    );
    assert_eq!(tree.eager_peers().collect::<Vec<_>>(), vec![3]);
    assert_eq!(tree.stats().tree_swaps, 1);
    // The swap sticks: the old path's hop count is no longer the reference.
    tree.handle_message(t(2), 2, ihave(&[(7, 4)]));
    assert!(drain(&mut tree).is_empty());
}

#[test]
fn nonsense_from_peers_is_ignored() {
    let mut tree = node(Config::default(), 1);
    tree.handle_message(t(0), 42, ihave(&[(7, u32::MAX)]));
    tree.handle_message(t(0), 42, PlumMsg::Prune);
    tree.handle_message(t(0), 42, PlumMsg::Graft(vec![1, 2]));
    tree.handle_message(t(0), 1, PlumMsg::Graft(vec![]));
    tree.handle_received(t(0), 42, 7, u32::MAX, false);
    tree.handle_received(t(0), 1, 8, u32::MAX, true);
    tree.handle_message(t(0), 1, ihave(&[(8, 0)]));
    assert!(!tree.is_neighbor(&42));
    assert_eq!(tree.missing_count(), 0);
    assert!(drain(&mut tree).is_empty());
    let zero = Config {
        ihave_batch: 0,
        ihave_interval: Duration::ZERO,
        graft_timeout_2: Duration::ZERO,
        optimization_threshold: Some(0),
        ..Config::default()
    };
    let mut tree = node(zero, 2);
    tree.handle_message(t(0), 2, PlumMsg::Prune);
    tree.broadcast(t(0), 1);
    tree.handle_message(t(0), 2, ihave(&[(5, 1)]));
    tree.handle_timeout(t(100));
    tree.handle_timeout(t(100));
    assert!(drain(&mut tree).len() <= 4);
}

#[test]
fn messages_round_trip_through_cbor() {
    for msg in [
        ihave(&[(1, 2), (3, 4)]),
        PlumMsg::Graft(vec![5, 6]),
        PlumMsg::Prune,
    ] {
        let mut bytes = Vec::new();
        ciborium::into_writer(&msg, &mut bytes).expect("encode");
        let back: PlumMsg<u64> = ciborium::from_reader(&bytes[..]).expect("decode");
        assert_eq!(back, msg);
    }
    assert!(ciborium::from_reader::<PlumMsg<u64>, _>(&[0xff, 0x00][..]).is_err());
}

mod sim;
