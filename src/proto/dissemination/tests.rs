//! The run-based tree on its own, link by link. The node-level behaviour
//! (100 nodes, loss, partitions) is tested through the harness in
//! `tests/gossip.rs`.

use super::*;
use crate::proto::id::OpId;
use std::time::Duration;

fn t(ms: u64) -> Time {
    Time::from_micros(ms * 1000)
}

fn origin() -> NodeId {
    NodeId::from_u64(7)
}

fn key() -> ObjectKey {
    ObjectKey::new("test.Doc", "a")
}

fn frame(seq: u64) -> OpFrame {
    OpFrame {
        object: key(),
        id: OpId {
            lamport: seq,
            origin: origin(),
            seq,
        },
        payload: bytes::Bytes::from_static(b"\x01"),
    }
}

/// The settings these tests count with (not the defaults, which may move).
fn config() -> DisseminationConfig {
    DisseminationConfig {
        graft_timeout_1: Duration::from_millis(500),
        graft_timeout_2: Duration::from_millis(250),
        max_graft_attempts: 10,
        ihave_interval: Duration::from_millis(25),
        ihave_batch: 256,
        max_cached_ops: 1 << 16,
        max_missing_runs: 4096,
        max_trees: 4096,
        first_fanout: 0,
    }
}

/// The node at the other end of link `l`.
fn peer(l: u32) -> NodeId {
    NodeId::from_u64(100 + u64::from(l))
}

fn tree(links: &[u32]) -> (Dissemination<u32>, Slot) {
    let mut d = Dissemination::new(&config());
    for l in links {
        d.handle_link_up(*l, peer(*l));
    }
    let slot = d.slot(&key());
    (d, slot)
}

fn drain(d: &mut Dissemination<u32>) -> Vec<(Vec<u32>, Message)> {
    std::iter::from_fn(|| d.poll_send())
        .map(|(to, m, _)| (to.to_vec(), m))
        .collect()
}

fn runs(first: u64, last: u64) -> Vec<ObjectRuns> {
    vec![ObjectRuns {
        object: key(),
        runs: vec![SeqRun {
            origin: origin(),
            first,
            last,
        }],
    }]
}

/// Link `l` asks for ops of [`origin`] to be announced only.
fn prune(d: &mut Dissemination<u32>, l: u32) {
    d.handle_tree_change(t(0), l, &TreeMsg::Prune(vec![origin()]));
}

#[test]
fn ops_go_eager_and_a_duplicate_prunes() {
    let (mut d, slot) = tree(&[1, 2, 3]);
    d.received(t(0), 1, slot, frame(1), true);
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        vec![2, 3],
        "pushed to every eager link but the sender"
    );
    assert!(matches!(out[0].1, Message::Op(ref f) if f.id.seq == 1));
    d.received(t(1), 2, slot, frame(1), false);
    assert_eq!(
        drain(&mut d),
        vec![(vec![2], Message::Tree(TreeMsg::Prune(vec![origin()])))]
    );
    assert_eq!(d.stats().duplicates, 1);
    // Link 2 is lazy now: ops are announced to it, as runs, after the
    // batching interval.
    for seq in 2..=5 {
        d.broadcast(t(2), slot, frame(seq));
    }
    let out = drain(&mut d);
    assert!(out.iter().all(|(to, _)| to == &vec![1, 3]));
    assert_eq!(d.poll_timeout(), Some(t(27)));
    d.handle_timeout(t(27));
    assert_eq!(
        drain(&mut d),
        vec![(vec![2], Message::Tree(TreeMsg::IHave(runs(2, 5))))],
        "four ops, one run"
    );
    assert_eq!(d.stats().ops_announced, 4);
    assert!(d.is_idle());
}

#[test]
fn a_prune_makes_the_link_lazy_and_a_graft_eager_again() {
    let (mut d, slot) = tree(&[1, 2]);
    prune(&mut d, 2);
    d.broadcast(t(0), slot, frame(1));
    assert_eq!(drain(&mut d)[0].0, vec![1]);
    d.handle_graft(t(0), 2, Some(slot), &runs(1, 9)[0].runs, None);
    let out = drain(&mut d);
    assert_eq!(out.len(), 1, "only cached ops are pushed");
    assert_eq!(out[0].0, vec![2]);
    d.broadcast(t(1), slot, frame(2));
    assert_eq!(drain(&mut d)[0].0, vec![1, 2], "the grafter is eager again");
}

#[test]
fn frames_of_a_hosted_object_are_not_cached() {
    let (mut d, slot) = tree(&[1, 2]);
    prune(&mut d, 2);
    d.broadcast(t(0), slot, frame(1));
    // From now on the replica answers grafts; the cache lets go too.
    d.serve(slot);
    d.broadcast(t(1), slot, frame(2));
    assert_eq!(drain(&mut d).len(), 2, "both ops still pushed eagerly");
    d.handle_graft(t(0), 2, Some(slot), &runs(1, 9)[0].runs, None);
    assert!(drain(&mut d).is_empty(), "nothing cached to push");
    d.handle_graft(
        t(0),
        2,
        Some(slot),
        &runs(1, 9)[0].runs,
        Some(vec![frame(2)]),
    );
    let out = drain(&mut d);
    assert_eq!(out.len(), 1, "the replica's ops are pushed");
    assert!(matches!(out[0].1, Message::Op(ref f) if f.id.seq == 2));
}

#[test]
fn missing_runs_are_grafted_from_one_announcer_then_the_next() {
    let (mut d, slot) = tree(&[1, 2]);
    d.announced(t(0), 1, slot, runs(1, 4).remove(0).runs);
    d.announced(t(100), 2, slot, runs(3, 6).remove(0).runs);
    d.received(t(200), 2, slot, frame(2), true);
    drain(&mut d);
    assert_eq!(d.poll_timeout(), Some(t(500)));
    d.handle_timeout(t(500));
    let graft = |spans: &[(u64, u64)]| {
        Message::Tree(TreeMsg::Graft(vec![ObjectRuns {
            object: key(),
            runs: spans
                .iter()
                .map(|&(first, last)| SeqRun {
                    origin: origin(),
                    first,
                    last,
                })
                .collect(),
        }]))
    };
    // Only what was announced 500 ms ago is due; seq 2 arrived meanwhile.
    assert_eq!(drain(&mut d), vec![(vec![1], graft(&[(1, 1), (3, 4)]))]);
    // 5 and 6 (announced at 100) are due at 600, with the retries of 1, 3-4
    // at 750: asked of the other announcer.
    d.handle_timeout(t(600));
    assert_eq!(drain(&mut d), vec![(vec![2], graft(&[(5, 6)]))]);
    for seq in 1..=6 {
        d.received(t(700), 1, slot, frame(seq), seq != 2);
    }
    drain(&mut d);
    assert!(d.is_idle(), "nothing missing once everything arrived");
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn a_missing_run_is_given_up_after_its_attempts() {
    let config = DisseminationConfig {
        max_graft_attempts: 3,
        ..config()
    };
    let mut d = Dissemination::new(&config);
    d.handle_link_up(1u32, peer(1));
    let slot = d.slot(&key());
    d.announced(t(0), 1, slot, runs(1, 1).remove(0).runs);
    let mut grafts = 0;
    while let Some(at) = d.poll_timeout() {
        d.handle_timeout(at);
        grafts += drain(&mut d).len();
    }
    assert_eq!(grafts, 3);
    assert!(d.is_idle());
}

#[test]
fn announcements_from_strangers_and_nonsense_runs_are_harmless() {
    let (mut d, slot) = tree(&[1]);
    d.announced(t(0), 9, slot, runs(1, 3).remove(0).runs);
    assert!(d.is_idle(), "a link the tree does not know is ignored");
    let nonsense = vec![
        SeqRun {
            origin: origin(),
            first: 9,
            last: 3,
        },
        SeqRun {
            origin: origin(),
            first: 1,
            last: u64::MAX,
        },
    ];
    d.handle_graft(t(0), 1, Some(slot), &nonsense, None);
    d.handle_graft(t(0), 1, None, &nonsense, None);
    assert!(drain(&mut d).is_empty());
    d.handle_link_down(1);
    d.handle_link_down(1);
    d.broadcast(t(1), slot, frame(1));
    assert!(drain(&mut d).is_empty(), "no links, nothing sent");
}

#[test]
fn the_frame_cache_is_bounded() {
    let config = DisseminationConfig {
        max_cached_ops: 4,
        ..config()
    };
    let mut d = Dissemination::new(&config);
    d.handle_link_up(1u32, peer(1));
    let slot = d.slot(&key());
    for seq in 1..=10 {
        d.broadcast(t(0), slot, frame(seq));
    }
    drain(&mut d);
    d.handle_graft(t(0), 1, Some(slot), &runs(1, 10)[0].runs, None);
    let pushed: Vec<u64> = drain(&mut d)
        .into_iter()
        .map(|(_, m)| match m {
            Message::Op(f) => f.id.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(pushed, vec![7, 8, 9, 10], "the newest four");
}

#[test]
fn tree_messages_round_trip_through_cbor() {
    for msg in [
        TreeMsg::IHave(runs(1, 5)),
        TreeMsg::Graft(runs(7, 7)),
        TreeMsg::Prune(vec![origin()]),
        TreeMsg::Eager(vec![origin(), peer(1)]),
        TreeMsg::Lazy(Vec::new()),
    ] {
        let mut bytes = Vec::new();
        ciborium::into_writer(&msg, &mut bytes).expect("encodes");
        let back: TreeMsg = ciborium::from_reader(&bytes[..]).expect("decodes");
        assert_eq!(back, msg);
    }
}

#[test]
fn interleaved_and_reordered_announcements_merge_into_runs() {
    let (mut d, slot) = tree(&[1, 2]);
    prune(&mut d, 2);
    let other = NodeId::from_u64(8);
    // Each origin has its own tree: link 2 is lazy for both.
    d.handle_tree_change(t(0), 2, &TreeMsg::Prune(vec![other]));
    let from_other = |seq| {
        let mut f = frame(seq);
        f.id.origin = other;
        f
    };
    for seq in [1, 2, 3] {
        d.broadcast(t(0), slot, frame(seq));
        d.broadcast(t(0), slot, from_other(seq));
    }
    d.broadcast(t(0), slot, frame(5));
    d.broadcast(t(0), slot, frame(4));
    d.broadcast(t(0), slot, from_other(9));
    drain(&mut d);
    d.handle_timeout(t(25));
    let mut expected = vec![
        SeqRun {
            origin: origin(),
            first: 1,
            last: 5,
        },
        SeqRun {
            origin: other,
            first: 1,
            last: 3,
        },
        SeqRun {
            origin: other,
            first: 9,
            last: 9,
        },
    ];
    expected.sort_by_key(|r| (r.origin, r.first));
    assert_eq!(
        drain(&mut d),
        vec![(
            vec![2],
            Message::Tree(TreeMsg::IHave(vec![ObjectRuns {
                object: key(),
                runs: expected,
            }]))
        )]
    );
    assert_eq!(d.stats().ops_announced, 9);
}

#[test]
fn a_late_eager_copy_undoes_the_graft_not_the_tree() {
    let (mut d, slot) = tree(&[1, 2]);
    prune(&mut d, 2);
    // Link 1 is the tree; link 2 announces an op whose eager copy is late.
    d.announced(t(0), 2, slot, runs(1, 1).remove(0).runs);
    d.handle_timeout(t(500));
    assert!(
        matches!(&drain(&mut d)[..], [(to, Message::Tree(TreeMsg::Graft(_)))] if to == &vec![2])
    );
    d.received(t(600), 2, slot, frame(1), true);
    drain(&mut d);
    // The eager copy arrives after all: link 2, the graft's, is pruned.
    d.received(t(700), 1, slot, frame(1), false);
    assert_eq!(
        drain(&mut d),
        vec![(vec![2], Message::Tree(TreeMsg::Prune(vec![origin()])))]
    );
    d.broadcast(t(800), slot, frame(2));
    assert_eq!(drain(&mut d)[0].0, vec![1], "the tree is as it was");
    // Without a recent graft, a duplicate prunes its own sender.
    d.received(t(5000), 1, slot, frame(2), false);
    assert_eq!(
        drain(&mut d),
        vec![(vec![1], Message::Tree(TreeMsg::Prune(vec![origin()])))]
    );
}

#[test]
fn a_repair_moves_no_link_and_the_late_tree_copy_prunes_nothing() {
    let (mut d, slot) = tree(&[1, 2]);
    // Anti-entropy over link 2 brings op 1 first; the tree's copy over
    // link 1 was only late.
    d.repaired(t(0), 2, slot, frame(1), true);
    let out = drain(&mut d);
    assert_eq!(out.len(), 1, "relayed like an op");
    assert_eq!(out[0].0, vec![1]);
    d.received(t(10), 1, slot, frame(1), false);
    assert!(drain(&mut d).is_empty(), "no prune of the tree's link");
    // A repair that is a duplicate prunes nothing either.
    d.repaired(t(20), 2, slot, frame(1), false);
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.stats().duplicates, 2);
    d.broadcast(t(30), slot, frame(2));
    assert_eq!(drain(&mut d)[0].0, vec![1, 2], "both links still eager");
    // Long after the repair, a duplicate prunes its sender again.
    d.received(t(5000), 1, slot, frame(2), false);
    assert_eq!(
        drain(&mut d),
        vec![(vec![1], Message::Tree(TreeMsg::Prune(vec![origin()])))]
    );
}

#[test]
fn a_neighbour_of_the_origin_takes_its_ops_straight_from_it() {
    // Link 1 leads to the origin itself (node 101).
    let (mut d, slot) = tree(&[1, 2, 3]);
    let origin = peer(1);
    let from_origin = |seq| {
        let mut f = frame(seq);
        f.id.origin = origin;
        f
    };
    d.handle_tree_change(t(0), 1, &TreeMsg::Lazy(vec![origin]));
    d.received(t(1), 2, slot, from_origin(1), true);
    let out = drain(&mut d);
    assert_eq!(
        out[..2],
        [
            (vec![1], Message::Tree(TreeMsg::Eager(vec![origin]))),
            (vec![2], Message::Tree(TreeMsg::Lazy(vec![origin]))),
        ]
    );
    assert_eq!(out[2].0, vec![3], "relayed on, not back to the origin");
    assert_eq!(d.stats().shortcuts, 1);
    // The origin's own copy arrives late: it prunes nothing.
    d.received(t(2), 1, slot, from_origin(1), false);
    assert!(drain(&mut d).is_empty());
}

/// A frame of `origin`'s op `seq`.
fn frame_of(origin: u64, seq: u64) -> OpFrame {
    OpFrame {
        id: OpId {
            lamport: seq,
            origin: NodeId::from_u64(origin),
            seq,
        },
        ..frame(seq)
    }
}

#[test]
fn a_run_is_relayed_as_its_ops_one_by_one_would_be() {
    // Two origins interleaved, a gap, a duplicate; one origin announced
    // only on link 3, the other pushed everywhere.
    let arrivals = [
        (7, 1, true),
        (7, 2, true),
        (7, 3, true),
        (9, 1, true),
        (9, 2, true),
        (7, 4, true),
        (7, 6, true),
        (7, 3, false),
        (9, 3, true),
    ];
    let setup = || {
        let (mut d, slot) = tree(&[1, 2, 3]);
        d.handle_tree_change(t(0), 3, &TreeMsg::Prune(vec![NodeId::from_u64(7)]));
        (d, slot)
    };
    let (mut one_by_one, slot) = setup();
    for (origin, seq, first) in arrivals {
        one_by_one.received(t(1), 1, slot, frame_of(origin, seq), first);
    }
    let (mut batched, _) = setup();
    let run = arrivals.map(|(origin, seq, first)| (frame_of(origin, seq), first));
    batched.received_run(t(1), 1, slot, run);
    for d in [&mut one_by_one, &mut batched] {
        d.handle_timeout(t(100));
    }
    let expected = drain(&mut one_by_one);
    assert!(
        expected
            .iter()
            .any(|(to, m)| to == &vec![3] && matches!(m, Message::Tree(TreeMsg::IHave(_)))),
        "the pruned origin's ops are announced: {expected:?}"
    );
    assert_eq!(drain(&mut batched), expected);
    assert_eq!(batched.stats(), one_by_one.stats());

    // The same for ops made here.
    let (mut one_by_one, slot) = setup();
    let (mut batched, _) = setup();
    let made = [(7, 1), (7, 2), (9, 1), (7, 3)];
    for (origin, seq) in made {
        one_by_one.broadcast(t(1), slot, frame_of(origin, seq));
    }
    batched.broadcast_run(t(1), slot, made.map(|(o, s)| frame_of(o, s)));
    for d in [&mut one_by_one, &mut batched] {
        d.handle_timeout(t(100));
    }
    let expected = drain(&mut one_by_one);
    assert_eq!(drain(&mut batched), expected);
    assert_eq!(batched.stats(), one_by_one.stats());
}
