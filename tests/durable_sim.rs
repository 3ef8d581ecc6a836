//! Durable nodes in the deterministic harness: the write-ahead gate under
//! crashes that lose what the store had not committed.
//!
//! Every node has a simulated store ([`Harness::make_durable`]) committing
//! at random steps; one node is crashed at random moments and restarted
//! from its store. With the gate, replicas converge, no committed shout is
//! lost, no seq is given to two ops, and no peer folds what the crashed
//! node could lose. Without it, the same crash makes a restarted node reuse
//! a seq, and its new ops sort below a frontier its peers passed.
//!
//! Seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use plexus::proto::replica::ApplyError;
use plexus::sim::{seed_from_env, DurableConfig, Harness, HarnessConfig, ShoutFate};
use plexus::{NodeId, OpId};
use rand::Rng;

use common::{random_op, reference, Doc, DocOp};

const DOC: &str = "doc";

/// `n` durable nodes, all linked, holding the doc (its first state
/// committed everywhere).
fn cluster(n: usize, seed: u64, config: DurableConfig) -> Harness<Doc> {
    let mut h = Harness::new(n, seed, HarnessConfig::default());
    for i in 0..n {
        h.make_durable(i, config);
    }
    for i in 0..n {
        for j in i + 1..n {
            h.link(i, j);
        }
    }
    h.create(0, DOC, Doc::default());
    for i in 1..n {
        h.open(i, DOC);
    }
    h.drive();
    for i in 0..n {
        assert!(h.host_of(i, DOC).is_some(), "node {i} opened the doc");
    }
    h.commit_all();
    h.drive();
    h
}

/// The highest seq of `origin` that any node but `except` holds.
fn peers_max_seq(h: &Harness<Doc>, origin: NodeId, except: usize) -> u64 {
    (0..h.len())
        .filter(|i| *i != except)
        .filter_map(|i| h.host_of(i, DOC))
        .map(|host| {
            let r = &host.lock().replica;
            let above = r
                .held_above(usize::MAX)
                .into_iter()
                .filter(|(o, _, _)| *o == origin)
                .map(|(_, _, last)| last)
                .max()
                .unwrap_or(0);
            r.version_vector().get(&origin).max(above)
        })
        .max()
        .unwrap_or(0)
}

/// The ops every node but `except` has folded.
fn folded_by_peers(h: &Harness<Doc>, except: usize) -> Vec<(usize, OpId)> {
    (0..h.len())
        .filter(|i| *i != except)
        .filter_map(|i| h.host_of(i, DOC).map(|host| (i, host)))
        .flat_map(|(i, host)| {
            let stable = host.lock().stable.clone();
            stable.into_iter().map(move |id| (i, id))
        })
        .collect()
}

/// The highest stable frontier of any node but `except`.
fn peers_frontier(h: &Harness<Doc>, except: usize) -> Option<OpId> {
    (0..h.len())
        .filter(|i| *i != except)
        .filter_map(|i| h.host_of(i, DOC))
        .filter_map(|host| host.lock().replica.frontier())
        .max()
}

/// What a node restarted from its store may be held to, right after the
/// restart: a member of the replica set holds every op a peer folded (its
/// ack never covered an op it could lose; a node that never wrote reports
/// no ack, holds nothing back, and catches up like any lagging reader),
/// and it holds its own ops up to the highest seq any peer holds (so its
/// next seq is new).
fn restart_problems(h: &Harness<Doc>, node: usize) -> Vec<String> {
    let host = h.host_of(node, DOC).expect("restarted with the doc");
    let r = &host.lock().replica;
    let mut problems = Vec::new();
    let peers = peers_max_seq(h, r.me(), node);
    let own = r.version_vector().get(&r.me());
    if own < peers {
        problems.push(format!(
            "node {node} restarted holding its own ops up to seq {own}, but a peer holds seq \
             {peers}: its next op reuses seq {}",
            own + 1
        ));
    }
    for (peer, id) in folded_by_peers(h, node) {
        if r.is_admitted() && !r.has_seen(&id.origin, id.seq) {
            problems.push(format!(
                "node {peer} folded {id}, which node {node} lost in the crash"
            ));
        }
    }
    problems
}

/// Why the nodes have not converged on `ops` applied in order,
/// everything folded. The order is that of the ids the ops ended with: a
/// node's first op on the doc is re-stamped when a member admits it.
fn divergence(h: &Harness<Doc>, ops: &[(OpId, DocOp)]) -> Option<String> {
    let expected = &reference(h.with_final_ids(DOC, ops));
    for i in 0..h.len() {
        let Some(host) = h.host_of(i, DOC) else {
            return Some(format!("node {i} does not hold the doc"));
        };
        let host = host.lock();
        if host.replica.state() != expected {
            return Some(format!("node {i}'s state differs from the reference"));
        }
        if host.replica.tentative_len() > 0 {
            return Some(format!(
                "node {i} holds {} ops not folded",
                host.replica.tentative_len()
            ));
        }
        if host.replica.stable_state() != expected {
            return Some(format!("node {i}'s stable snapshot differs"));
        }
    }
    None
}

/// Commit everything, run 100 ms, until `done`; `false` if not within
/// `limit`.
fn settle(h: &mut Harness<Doc>, limit: Duration, done: impl Fn(&Harness<Doc>) -> bool) -> bool {
    let start = h.now();
    loop {
        h.commit_all();
        if done(h) {
            return true;
        }
        if h.now().since(start) >= limit {
            return false;
        }
        h.run_for(Duration::from_millis(100));
    }
}

/// Each node's replica, for a failure message.
fn describe(h: &Harness<Doc>) -> String {
    let mut out = String::new();
    for i in 0..h.len() {
        let Some(host) = h.host_of(i, DOC) else {
            out.push_str(&format!("\nnode {i}: no doc"));
            continue;
        };
        let r = &host.lock().replica;
        out.push_str(&format!(
            "\nnode {i} ({}): {:?}; frontier {:?}, {} tentative, pending {}, vv {:?}, acks {:?}",
            r.me(),
            r.state(),
            r.frontier(),
            r.tentative_len(),
            h.pending(i, DOC),
            r.version_vector(),
            r.acks()
        ));
        out.push_str(&format!(
            "\n  tentative {:?}\n  above {:?}\n  stable {:?}",
            r.tentative_ids().collect::<Vec<_>>(),
            r.held_above(100),
            r.stable_state()
        ));
    }
    out
}

/// Every node's current state is the same.
fn states_equal(h: &Harness<Doc>) -> bool {
    let first = h.snapshot_bytes(0, DOC);
    (1..h.len()).all(|i| h.snapshot_bytes(i, DOC) == first)
}

#[test]
fn crashes_lose_only_what_was_not_committed_and_replicas_converge() {
    let seed = seed_from_env();
    let n = 4;
    let mut h = cluster(n, seed, DurableConfig::default());
    let victim = h.rng().random_range(0..n);
    let me = h.host_of(victim, DOC).expect("held").lock().replica.me();
    let mut ops: Vec<(OpId, DocOp)> = Vec::new();
    // Indices of the shouts committed when a crash came.
    let mut committed_at_crash = BTreeSet::new();
    let mut lost = 0;
    for round in 0..6 {
        let burst = h.rng().random_range(10..30);
        let crash_at = h.rng().random_range(0..burst);
        for k in 0..burst {
            if k == crash_at {
                committed_at_crash.extend(
                    h.durable_book()
                        .shouts
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.fate == ShoutFate::Committed)
                        .map(|(i, _)| i),
                );
                h.crash(victim);
            }
            let live: Vec<usize> = (0..n).filter(|i| h.is_alive(*i)).collect();
            let node = live[h.rng().random_range(0..live.len())];
            let op = random_op(h.rng());
            ops.push((h.shout(node, DOC, op.clone()), op));
            let gap = h.rng().random_range(0..30);
            h.run_for(Duration::from_millis(gap));
        }
        let down = h.rng().random_range(50..2_000);
        h.run_for(Duration::from_millis(down));
        h.restart(victim);
        let problems = restart_problems(&h, victim);
        assert!(
            problems.is_empty(),
            "seed {seed}, round {round}: {problems:#?}"
        );
        // A new op at once, before the node hears from anyone.
        let frontier = peers_frontier(&h, victim);
        let peers = peers_max_seq(&h, me, victim);
        let op = random_op(h.rng());
        let member = h
            .host_of(victim, DOC)
            .expect("held")
            .lock()
            .replica
            .is_admitted();
        let id = h.shout(victim, DOC, op.clone());
        assert!(
            id.seq > peers,
            "seed {seed}, round {round}: node {victim}'s first op after the restart, {id}, \
             reuses a seq a peer holds (up to {peers})"
        );
        // (A node that never wrote makes a provisional op, re-stamped
        // above a member's clock once admitted.)
        assert!(
            !member || frontier.is_none_or(|f| id > f),
            "seed {seed}, round {round}: node {victim}'s first op after the restart, {id}, \
             sorts at or below a peer's frontier {frontier:?}"
        );
        ops.push((id, op));
        let book = h.durable_book();
        let now_lost = book
            .shouts
            .iter()
            .filter(|s| s.fate == ShoutFate::Lost)
            .count();
        eprintln!(
            "round {round}: node {victim} down {down} ms, {} shouts lost in the crash",
            now_lost - lost
        );
        lost = now_lost;
    }
    // Every node is durable: the book lists every shout, in order (an id
    // may repeat: a lost op's, given again after the restart).
    let book = h.durable_book();
    assert_eq!(book.shouts.len(), ops.len());
    let mut survivors: Vec<(OpId, DocOp)> = Vec::new();
    let mut lost = 0;
    for (i, (shout, (id, op))) in book.shouts.iter().zip(&ops).enumerate() {
        assert_eq!(shout.id, *id);
        if shout.fate == ShoutFate::Lost {
            lost += 1;
            assert!(
                !committed_at_crash.contains(&i),
                "seed {seed}: {id} was committed, then lost"
            );
        } else {
            survivors.push((*id, op.clone()));
        }
    }
    let converged = settle(&mut h, Duration::from_secs(30), |h| {
        divergence(h, &survivors).is_none()
    });
    assert!(
        converged,
        "seed {seed}: not converged 30 s after the last restart: {:?}",
        divergence(&h, &survivors)
    );
    for i in 0..n {
        let host = h.host_of(i, DOC).expect("held");
        let r = &host.lock().replica;
        for (id, _) in &survivors {
            assert!(
                r.has_seen(&id.origin, id.seq),
                "seed {seed}: node {i} lacks {id}"
            );
        }
    }
    let book = h.durable_book();
    assert!(
        book.conflicts.is_empty(),
        "seed {seed}: two ops under one id: {:?}",
        book.conflicts
    );
    assert!(
        book.leaked.is_empty(),
        "seed {seed}: ops left a node before they were committed: {:?}",
        book.leaked
    );
    assert!(
        book.refused.is_empty(),
        "seed {seed}: replicas refused ops: {:?}",
        book.refused
    );
    eprintln!(
        "seed {seed}: {} shouts, {} lost in crashes (never left node {victim}), {} committed \
         before a crash; all {n} replicas equal, everything folded",
        ops.len(),
        lost,
        committed_at_crash.len()
    );
}

/// Node 0 shouts ops its store commits only a prefix of, the peers get
/// what may leave, node 0 crashes, restarts from its store, and shouts
/// once more. Returns the harness, the last op, the highest seq of node
/// 0 a peer held at the restart, and every op that may count.
fn crash_after_uncommitted_shouts(
    seed: u64,
    gate: bool,
) -> (Harness<Doc>, OpId, u64, Vec<(OpId, DocOp)>) {
    let config = DurableConfig {
        gate,
        commit_chance: 0.0,
        snapshot_chance: 0.0,
    };
    let mut h = cluster(3, seed, config);
    let me = h.host_of(0, DOC).expect("held").lock().replica.me();
    let shouts = h.rng().random_range(2..8);
    let committed = h.rng().random_range(0..shouts);
    let mut ops = Vec::new();
    for i in 0..shouts {
        let op = DocOp::Push(format!("before{i}"));
        ops.push((h.shout(0, DOC, op.clone()), op));
    }
    h.commit_some(0, DOC, committed);
    h.run_for(Duration::from_secs(3));
    h.commit(1);
    h.commit(2);
    h.crash(0);
    h.run_for(Duration::from_millis(500));
    h.restart(0);
    let peers = peers_max_seq(&h, me, 0);
    let op = DocOp::Push("after".into());
    let id = h.shout(0, DOC, op.clone());
    ops.truncate(committed);
    ops.push((id, op));
    eprintln!(
        "gate {gate}: {shouts} shouts, {committed} committed; after the restart a peer holds seq \
         {peers}, the new op is {id}"
    );
    (h, id, peers, ops)
}

#[test]
fn without_the_gate_a_restart_reuses_a_seq_and_with_it_never() {
    let seed = seed_from_env();

    // Without the gate, uncommitted ops left node 0 before the crash: its
    // next op takes a seq its peers already hold for another op.
    let (mut h, id, peers, _) = crash_after_uncommitted_shouts(seed, false);
    assert!(
        id.seq <= peers,
        "seed {seed}: without the gate, the peers should hold node 0's lost ops"
    );
    let book = h.durable_book();
    assert!(
        book.conflicts.iter().any(|c| c.second == id),
        "seed {seed}: the reused seq should show as two ops under one id: {:?}",
        book.conflicts
    );
    assert!(!book.leaked.is_empty(), "seed {seed}: lost ops had left");
    // The replicas never agree, or agree by dropping the new op.
    let lost_new = |h: &Harness<Doc>| {
        (0..h.len()).any(|i| {
            let host = h.host_of(i, DOC).expect("held");
            let r = &host.lock().replica;
            !r.state().items.iter().any(|s| s.starts_with("after/"))
        })
    };
    let agreed = settle(&mut h, Duration::from_secs(10), states_equal);
    assert!(
        !agreed || lost_new(&h),
        "seed {seed}: without the gate, a reused seq should diverge or lose the new op"
    );
    eprintln!(
        "without the gate: {}",
        if agreed {
            "the replicas agreed by dropping node 0's new op"
        } else {
            "the replicas diverged for good"
        }
    );

    // With the gate, nothing uncommitted left node 0: the seq is new, and
    // the replicas converge on what was committed plus the new op.
    let (mut h, id, peers, ops) = crash_after_uncommitted_shouts(seed, true);
    assert!(
        id.seq > peers,
        "seed {seed}: with the gate, {id} reuses a seq a peer holds (up to {peers})"
    );
    let converged = settle(&mut h, Duration::from_secs(30), |h| {
        divergence(h, &ops).is_none()
    });
    assert!(
        converged,
        "seed {seed}: with the gate, not converged: {:?}",
        divergence(&h, &ops)
    );
    let book = h.durable_book();
    assert!(book.conflicts.is_empty(), "{:?}", book.conflicts);
    assert!(book.leaked.is_empty(), "{:?}", book.leaked);
    assert!(book.refused.is_empty(), "{:?}", book.refused);
}

/// Node 0 commits nothing while its peers shout and commit; its acks
/// travel for `settle`; then it crashes and restarts from its store and
/// shouts. Returns the harness, the restart problems, and the new op.
fn crash_with_uncommitted_peer_ops(seed: u64, gate: bool) -> (Harness<Doc>, Vec<String>, OpId) {
    let config = DurableConfig {
        gate,
        commit_chance: 0.0,
        snapshot_chance: 0.0,
    };
    let mut h = cluster(3, seed, config);
    // Node 0's store learns the replica set (its first state predates the
    // joins): see `a_restart_must_not_forget_the_replica_set`.
    h.write_state(0, DOC);
    h.commit(0);
    let shouts = h.rng().random_range(3..12);
    for _ in 0..shouts {
        let node = h.rng().random_range(1..3);
        let op = random_op(h.rng());
        h.shout(node, DOC, op);
        h.commit(node);
        let gap = h.rng().random_range(0..50);
        h.run_for(Duration::from_millis(gap));
    }
    for _ in 0..30 {
        h.commit(1);
        h.commit(2);
        h.run_for(Duration::from_millis(100));
    }
    h.crash(0);
    h.run_for(Duration::from_millis(300));
    h.restart(0);
    let problems = restart_problems(&h, 0);
    let id = h.shout(0, DOC, DocOp::Push("after".into()));
    (h, problems, id)
}

#[test]
fn no_peer_folds_what_a_durable_node_could_lose() {
    let seed = seed_from_env();

    // Without the gate, node 0 acknowledged ops it had not committed: the
    // peers folded them, node 0 lost them, and its new op sorts below the
    // frontier the peers passed, so they refuse it.
    let (mut h, problems, id) = crash_with_uncommitted_peer_ops(seed, false);
    assert!(
        !problems.is_empty(),
        "seed {seed}: without the gate, the peers should have folded ops node 0 lost"
    );
    eprintln!("without the gate: {problems:#?}");
    settle(&mut h, Duration::from_secs(5), |_| false);
    let book = h.durable_book();
    assert!(
        book.refused
            .iter()
            .any(|(_, e)| matches!(e, ApplyError::BelowStable { op, .. } if *op == id)),
        "seed {seed}: without the gate, node 0's new op {id} should sort below the peers' \
         frontier: refused {:?}",
        book.refused
    );

    // With the gate: nothing folded that node 0 lacks after the restart,
    // its new op is accepted everywhere, and the replicas converge.
    let (mut h, problems, id) = crash_with_uncommitted_peer_ops(seed, true);
    assert!(problems.is_empty(), "seed {seed}: {problems:#?}");
    let frontier = peers_frontier(&h, 0);
    assert!(
        frontier.is_none_or(|f| id > f),
        "seed {seed}: {id} sorts at or below a peer's frontier {frontier:?}"
    );
    let converged = settle(&mut h, Duration::from_secs(30), |h| {
        states_equal(h)
            && (0..h.len()).all(|i| {
                let host = h.host_of(i, DOC).expect("held");
                let r = &host.lock().replica;
                r.tentative_len() == 0 && r.has_seen(&id.origin, id.seq)
            })
    });
    assert!(
        converged,
        "seed {seed}: with the gate, not converged:{}",
        describe(&h)
    );
    let stable = h
        .host_of(0, DOC)
        .expect("held")
        .lock()
        .replica
        .stable_state()
        .clone();
    for i in 1..h.len() {
        let host = h.host_of(i, DOC).expect("held");
        assert_eq!(
            host.lock().replica.stable_state(),
            &stable,
            "seed {seed}: node {i}'s stable snapshot"
        );
    }
    let book = h.durable_book();
    assert!(
        book.refused.is_empty(),
        "seed {seed}: refused {:?}",
        book.refused
    );
    assert!(book.conflicts.is_empty(), "{:?}", book.conflicts);
    assert!(book.leaked.is_empty(), "{:?}", book.leaked);
}

/// A member that admitted a writer must not forget it in a crash, or it
/// restarts knowing only itself as a member and folds on its own ack alone.
///
/// The regression (when joiners were admitted as they opened the doc):
/// node 0's store held its state from `create` (replica set `{node 0}`);
/// node 0 admitted node 2 in memory only; node 2 shouted, committed and
/// relayed an op; node 0 applied it, crashed before committing, and
/// restarted with the table `{node 0}`. Its first shout, once committed,
/// was complete on its own ack: node 0 folded it past node 2's op, which
/// it lacked, and the replicas diverged for good (or a peer rebased onto
/// node 0's snapshot and dropped node 2's committed op). Now an admission
/// is committed before the answer leaves (the driver's `CellHost::admit`,
/// and the harness's durable host).
#[test]
fn a_restart_must_not_forget_the_replica_set() {
    let seed = seed_from_env();
    let config = DurableConfig {
        gate: true,
        commit_chance: 0.0,
        snapshot_chance: 0.0,
    };
    let mut h = cluster(3, seed, config);
    let theirs = h.shout(2, DOC, DocOp::Push("theirs".into()));
    h.commit(2);
    h.run_for(Duration::from_secs(1));
    h.commit(1);
    h.crash(0);
    h.run_for(Duration::from_millis(300));
    h.restart(0);
    let ours = h.shout(0, DOC, DocOp::Push("ours".into()));
    h.commit(0);
    let expected = vec![
        (theirs, DocOp::Push("theirs".into())),
        (ours, DocOp::Push("ours".into())),
    ];
    let converged = settle(&mut h, Duration::from_secs(30), |h| {
        divergence(h, &expected).is_none()
    });
    assert!(
        converged,
        "seed {seed}: {theirs} (committed at node 2) and {ours} should both survive: {:?}{}",
        divergence(&h, &expected),
        describe(&h)
    );
}

/// How many of `node`'s items were pushed as `name`.
fn pushed(h: &Harness<Doc>, node: usize, name: &str) -> usize {
    h.state(node, DOC).map_or(0, |d| {
        d.items
            .iter()
            .filter(|i| i.split('/').next() == Some(name))
            .count()
    })
}

/// A node evicted while cut off learns it on its return and moves to a
/// new restart epoch; until a peer's table shows the new origin, its
/// shouts are provisional (applied there, not sent). A crash in that
/// window, after a whole state was written, lost them: the state leaves
/// provisional ops out and replaces the ops logged before it, and the ops
/// logged after it came back as ordinary ops of the new origin, with
/// Lamport times its peers' frontiers may have passed. Now the store
/// keeps them beside the state, and the node resumes awaiting admission.
#[test]
fn provisional_ops_survive_a_crash_while_the_origin_awaits_admission() {
    let seed = seed_from_env();
    let n = 5;
    let mut config = HarnessConfig::default();
    config.repeater.evict_after = Some(Duration::from_secs(10));
    let mut h = Harness::new(n, seed, config);
    let manual = DurableConfig {
        gate: true,
        commit_chance: 0.0,
        snapshot_chance: 0.0,
    };
    for i in 0..n {
        h.make_durable(i, manual);
        for j in 0..i {
            h.link(i, j);
        }
    }
    h.create(0, DOC, Doc::default());
    for i in 1..n {
        h.open(i, DOC);
    }
    h.drive();
    h.commit_all();
    h.drive();
    // Node 4 writes once, so it is a member (a reader holds nothing back
    // and is never evicted).
    h.shout(4, DOC, DocOp::Push("member".into()));
    for _ in 0..20 {
        h.commit_all();
        h.run_for(Duration::from_millis(100));
    }
    assert!(h
        .host_of(4, DOC)
        .expect("held")
        .lock()
        .replica
        .is_admitted());

    let away = 4;
    let rest: Vec<usize> = (0..n).filter(|i| *i != away).collect();
    h.partition(&[vec![away], rest.clone()]);
    let mut names = Vec::new();
    for k in 0..8 {
        let node = if k % 4 == 0 {
            away
        } else {
            rest[k % rest.len()]
        };
        let name = format!("apart{k}");
        h.shout(node, DOC, DocOp::Push(name.clone()));
        names.push(name);
        h.commit_all();
        h.run_for(Duration::from_millis(500));
    }
    let old = h.id(away);
    let mut waited = 0;
    while !rest.iter().all(|i| {
        let host = h.host_of(*i, DOC).expect("holds the doc");
        let evicted = host.lock().replica.acks().eviction(&old).is_some();
        evicted
    }) {
        assert!(waited < 90, "not evicted within {waited} s (seed {seed})");
        h.commit_all();
        h.run_for(Duration::from_secs(1));
        waited += 1;
    }

    // Back, one event at a time, until the node learns it was evicted;
    // then cut it off again before a peer can admit its new origin.
    h.heal();
    let admitted = |h: &Harness<Doc>| {
        let host = h.host_of(away, DOC).expect("holds the doc");
        let admitted = host.lock().replica.is_admitted();
        admitted
    };
    let mut steps = 0;
    while admitted(&h) {
        assert!(
            h.step(),
            "the queue ran dry before the node learned of its eviction"
        );
        steps += 1;
        assert!(steps < 1_000_000, "the node never learned (seed {seed})");
    }
    h.partition(&[vec![away], rest.clone()]);

    // Provisional shouts, committed, with a whole state written between
    // them (as the driver compacts its log every so many ops).
    let mut provisional = Vec::new();
    for k in 0..5 {
        if k == 3 {
            h.write_state(away, DOC);
        }
        let name = format!("provisional{k}");
        h.shout(away, DOC, DocOp::Push(name.clone()));
        h.commit(away);
        provisional.push(name);
    }
    assert!(!admitted(&h), "still cut off, so still awaiting admission");
    h.crash(away);
    h.restart(away);
    assert!(
        !admitted(&h),
        "resumed from its store still awaiting admission (seed {seed})"
    );
    for name in &provisional {
        assert_eq!(
            pushed(&h, away, name),
            1,
            "{name} is back after the restart (seed {seed}):{}",
            describe(&h)
        );
    }

    h.heal();
    names.extend(provisional);
    let done = |h: &Harness<Doc>| {
        states_equal(h)
            && (0..n).all(|i| {
                let host = h.host_of(i, DOC).expect("holds the doc");
                let folded = host.lock().replica.tentative_len() == 0;
                folded && names.iter().all(|name| pushed(h, i, name) == 1)
            })
    };
    assert!(
        settle(&mut h, Duration::from_secs(30), done),
        "seed {seed}: not every shout once on every node, folded:{}",
        describe(&h)
    );
    let host = h.host_of(away, DOC).expect("holds the doc");
    assert_eq!(
        host.lock().replica.me(),
        plexus::proto::stability::epoch_origin(old, 1)
    );
}
