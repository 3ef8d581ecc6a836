//! Property: replicas that see the same ops — in any order, with duplicates,
//! with stability advancing at random safe points — end byte-identical, equal
//! to the ops applied in id order, and their observers hear of each op once.
//!
//! 1,000 cases by default (`PROPTEST_CASES` overrides); the RNG seed comes
//! from `PLEXUS_SEED` when set and is printed at the start of the run.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use plexus::proto::replica::{Applied, Replica, ReplicaConfig};
use plexus::{NodeId, OpId};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use common::{reference, Doc, DocOp};

/// One step of a scripted run.
#[derive(Clone, Debug)]
enum Action {
    /// Replica `r` shouts `op` on object `o`.
    Shout { r: usize, o: usize, op: DocOp },
    /// Replica `r` receives one op it has not seen (or, if `dup`, one it has).
    Deliver { r: usize, pick: usize, dup: bool },
    /// Replica `r` advances object `o`'s stable frontier to a random safe point.
    Stabilize { r: usize, o: usize, pick: u64 },
}

fn op_strategy() -> impl Strategy<Value = DocOp> {
    prop_oneof![
        "[a-z]{0,3}".prop_map(DocOp::Push),
        Just(DocOp::Pop),
        any::<u8>().prop_map(DocOp::Mark),
        any::<u32>().prop_map(DocOp::Add),
    ]
}

fn action_strategy(replicas: usize, objects: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..replicas, 0..objects, op_strategy()).prop_map(|(r, o, op)| Action::Shout { r, o, op }),
        4 => (0..replicas, any::<usize>(), prop::bool::weighted(0.15))
            .prop_map(|(r, pick, dup)| Action::Deliver { r, pick, dup }),
        1 => (0..replicas, 0..objects, any::<u64>()).prop_map(|(r, o, pick)| Action::Stabilize { r, o, pick }),
    ]
}

/// Replica tuning: tiny checkpoint intervals so rollbacks to checkpoints
/// happen in short runs, and the default.
fn config_strategy() -> impl Strategy<Value = ReplicaConfig> {
    prop_oneof![
        Just(ReplicaConfig::default()),
        (1usize..6, 0usize..5).prop_map(|(checkpoint_every, max_checkpoints)| ReplicaConfig {
            checkpoint_every,
            max_checkpoints
        }),
    ]
}

type Scenario = (usize, usize, Vec<Action>, u64, ReplicaConfig);

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5, 1usize..=3).prop_flat_map(|(replicas, objects)| {
        (
            Just(replicas),
            Just(objects),
            prop::collection::vec(action_strategy(replicas, objects), 1..120),
            any::<u64>(),
            config_strategy(),
        )
    })
}

/// A replica with what its observer heard.
struct Site {
    replicas: Vec<Replica<Doc>>,
    fired: Vec<Vec<OpId>>,
    stable_fired: Vec<Vec<OpId>>,
    /// Ops (by index into `all_ops`) delivered to this site.
    delivered: BTreeSet<usize>,
}

struct World {
    sites: Vec<Site>,
    /// Every op made: (object, id, op).
    all_ops: Vec<(usize, OpId, DocOp)>,
}

impl World {
    fn new(replicas: usize, objects: usize, config: ReplicaConfig) -> Self {
        let sites = (0..replicas)
            .map(|r| Site {
                replicas: (0..objects)
                    .map(|_| {
                        Replica::with_config(NodeId::from_u64(r as u64 + 1), Doc::default(), config)
                    })
                    .collect(),
                fired: vec![Vec::new(); objects],
                stable_fired: vec![Vec::new(); objects],
                delivered: BTreeSet::new(),
            })
            .collect();
        Self {
            sites,
            all_ops: Vec::new(),
        }
    }

    fn deliver(&mut self, r: usize, k: usize) {
        let (o, id, op) = self.all_ops[k].clone();
        let site = &mut self.sites[r];
        let fired = &mut site.fired[o];
        let outcome = site.replicas[o]
            .apply(id, op, |_, _, id| fired.push(id))
            .expect("a safe stability schedule never refuses an op");
        let first = site.delivered.insert(k);
        assert_eq!(
            outcome == Applied::Duplicate,
            !first,
            "duplicate detection for op {id}"
        );
    }

    /// The highest Lamport time at which object `o` can be stable at
    /// replica `r`: no op at or below it may still arrive there.
    fn safe_lamport(&self, r: usize, o: usize) -> u64 {
        // A future op is made after its origin's clock: above every clock.
        let mut bound = self
            .sites
            .iter()
            .map(|s| s.replicas[o].lamport())
            .min()
            .unwrap_or(0);
        for (k, (obj, id, _)) in self.all_ops.iter().enumerate() {
            if *obj == o && !self.sites[r].delivered.contains(&k) {
                bound = bound.min(id.lamport - 1);
            }
        }
        bound
    }

    fn stabilize(&mut self, r: usize, o: usize, lamport: u64) {
        let frontier = OpId {
            lamport,
            origin: NodeId::from_bytes([0xff; 32]),
            seq: u64::MAX,
        };
        let site = &mut self.sites[r];
        let stable_fired = &mut site.stable_fired[o];
        site.replicas[o].advance_stable(frontier, |_, _, id| stable_fired.push(id));
    }
}

fn run((replicas, objects, actions, shuffle_seed, config): Scenario) {
    let mut world = World::new(replicas, objects, config);
    for action in actions {
        match action {
            Action::Shout { r, o, op } => {
                let site = &mut world.sites[r];
                let fired = &mut site.fired[o];
                let id = site.replicas[o].shout(op.clone(), |_, _, id| fired.push(id));
                world.all_ops.push((o, id, op));
                site.delivered.insert(world.all_ops.len() - 1);
            }
            Action::Deliver { r, pick, dup } => {
                let candidates: Vec<usize> = (0..world.all_ops.len())
                    .filter(|k| world.sites[r].delivered.contains(k) == dup)
                    .collect();
                if !candidates.is_empty() {
                    world.deliver(r, candidates[pick % candidates.len()]);
                }
            }
            Action::Stabilize { r, o, pick } => {
                let current = world.sites[r].replicas[o]
                    .frontier()
                    .map_or(0, |f| f.lamport);
                let safe = world.safe_lamport(r, o);
                if safe > current {
                    world.stabilize(r, o, current + 1 + pick % (safe - current));
                }
            }
        }
    }
    // Deliver the rest in a scrambled order, each op twice.
    let mut rest: Vec<(usize, usize)> = Vec::new();
    for r in 0..replicas {
        for k in 0..world.all_ops.len() {
            rest.push((r, k));
            rest.push((r, k));
        }
    }
    let mut state = shuffle_seed | 1;
    for i in (1..rest.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        rest.swap(i, (state % (i as u64 + 1)) as usize);
    }
    for (r, k) in rest {
        world.deliver(r, k);
    }

    for o in 0..objects {
        let ops: Vec<(OpId, DocOp)> = world
            .all_ops
            .iter()
            .filter(|(obj, _, _)| *obj == o)
            .map(|(_, id, op)| (*id, op.clone()))
            .collect();
        let expected = reference(ops.clone());
        let expected_bytes = encode(&expected);
        let ids: BTreeSet<OpId> = ops.iter().map(|(id, _)| *id).collect();
        for (r, site) in world.sites.iter().enumerate() {
            let replica = &site.replicas[o];
            assert_eq!(
                encode(replica.state()),
                expected_bytes,
                "replica {r} object {o}"
            );
            let fired: BTreeMap<OpId, usize> =
                site.fired[o].iter().fold(BTreeMap::new(), |mut m, id| {
                    *m.entry(*id).or_default() += 1;
                    m
                });
            assert!(
                fired.values().all(|n| *n == 1),
                "replica {r}: an observer fired twice"
            );
            assert_eq!(
                fired.keys().copied().collect::<BTreeSet<_>>(),
                ids,
                "replica {r}"
            );
        }
        // Everything is delivered everywhere: fold it all, stable must agree.
        let top = ops.iter().map(|(id, _)| id.lamport).max().unwrap_or(0);
        for r in 0..replicas {
            world.stabilize(r, o, top);
            let site = &world.sites[r];
            assert_eq!(site.replicas[o].tentative_len(), 0);
            assert_eq!(
                encode(site.replicas[o].stable_state()),
                expected_bytes,
                "stable {r}"
            );
            let stable: BTreeSet<OpId> = site.stable_fired[o].iter().copied().collect();
            assert_eq!(
                stable.len(),
                site.stable_fired[o].len(),
                "on_stable fired twice"
            );
            assert_eq!(stable, ids, "on_stable fires once per op");
        }
    }
}

fn encode(doc: &Doc) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(doc, &mut out).expect("Doc encodes");
    out
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let seed = plexus::sim::seed_from_env();
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_converge_whatever_the_delivery_order(scenario in scenario()) {
        run(scenario);
    }
}

#[test]
fn late_joiner_built_from_an_export_converges() {
    let a = NodeId::from_u64(1);
    let b = NodeId::from_u64(2);
    let mut ra = Replica::new(a, Doc::default());
    let mut ops = Vec::new();
    for i in 0..50u8 {
        let op = if i % 3 == 0 {
            DocOp::Mark(i)
        } else {
            DocOp::Push(i.to_string())
        };
        let id = ra.shout(op.clone(), |_, _, _| {});
        ops.push((id, op));
    }
    ra.advance_stable(ops[20].0, |_, _, _| {});
    let mut rb = Replica::from_state(b, ra.export());
    assert_eq!(rb.state(), ra.state());
    assert_eq!(rb.tentative_len(), 29);
    // The joiner's own ops continue the order, and a stale op is refused.
    let id = rb.shout(DocOp::Pop, |_, _, _| {});
    assert!(id > ops[49].0);
    assert!(rb
        .apply(ops[3].0, ops[3].1.clone(), |_, _, _| {})
        .is_ok_and(|a| a == Applied::Duplicate));
}

/// A long tentative log (nothing folds: no acks) and a late op 100 places
/// from its end. Checkpoints spread over the whole log, geometrically, so
/// the replay starts near the op; when only the newest were kept (covering
/// the last `max_checkpoints × checkpoint_every` = 32 ops), it started
/// from the stable snapshot: all 1,000 ops.
#[test]
fn checkpoints_spread_over_a_long_log_so_a_late_op_far_back_replays_little() {
    let config = ReplicaConfig {
        checkpoint_every: 8,
        max_checkpoints: 4,
    };
    let mut replica = Replica::with_config(NodeId::from_u64(1), Doc::default(), config);
    let writer = NodeId::from_u64(2);
    let mut ops = Vec::new();
    for seq in 1..=1000u64 {
        let id = OpId {
            lamport: 2 * seq,
            origin: writer,
            seq,
        };
        let op = DocOp::Push(seq.to_string());
        let applied = replica.apply(id, op.clone(), |_, _, _| {});
        assert_eq!(applied, Ok(Applied::InOrder));
        ops.push((id, op));
    }
    let late = OpId {
        lamport: 2 * 900 + 1,
        origin: NodeId::from_u64(3),
        seq: 1,
    };
    let op = DocOp::Push("late".into());
    let applied = replica.apply(late, op.clone(), |_, _, _| {});
    ops.push((late, op));
    let Ok(Applied::Replayed { replayed }) = applied else {
        panic!("a late order-sensitive op replays: {applied:?}");
    };
    eprintln!("a late op 100 places from the end of 1,000 replayed {replayed} ops");
    // The op and the 100 after it, plus at most one gap of checkpoints
    // grown apart with the distance from the end.
    assert!(
        replayed <= 101 + 2 * 1000 / 4,
        "replayed {replayed} ops for a late op 100 places from the end"
    );
    assert_eq!(replica.state(), &reference(ops));
}

/// A fold over the ops of more writers than it keeps slots for still
/// records, per origin, the highest seq folded (what a snapshot tells a
/// joiner it holds).
#[test]
fn a_fold_over_many_interleaved_writers_records_each_origins_top_seq() {
    let me = NodeId::from_u64(1000);
    let mut replica = Replica::new(me, Doc::default());
    let writers: Vec<NodeId> = (1..=12).map(NodeId::from_u64).collect();
    let mut lamport = 0;
    for seq in 1..=5u64 {
        for origin in &writers {
            lamport += 1;
            let id = OpId {
                lamport,
                origin: *origin,
                seq,
            };
            replica
                .apply(id, DocOp::Mark(seq as u8), |_, _, _| {})
                .expect("a valid op");
        }
    }
    // Fold all but the last round: origins 1..=12 up to seq 4.
    let frontier = OpId {
        lamport: 4 * writers.len() as u64,
        origin: NodeId::MAX,
        seq: u64::MAX,
    };
    assert_eq!(replica.advance_stable(frontier, |_, _, _| {}), 48);
    let folded = replica.export().folded;
    for origin in &writers {
        assert_eq!(folded.get(origin), 4, "origin {origin}");
    }
    assert_eq!(folded.0.len(), writers.len());
}
