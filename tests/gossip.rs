//! Anti-entropy and stability in the deterministic harness, at 100 nodes:
//! 20% loss, a 50/50 partition healed, 10% of nodes crashing and
//! restarting, late joiners. Every op reaches every live replica, replicas
//! end byte-identical, within 3 anti-entropy rounds after the last fault;
//! idle rounds cost a constant few bytes; stable ops leave the log.
//!
//! Seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use plexus::sim::{Harness, HarnessConfig};
use plexus::OpId;
use rand::Rng;

use common::{random_op, reference, Doc, DocOp};

const N: usize = 100;
const ROUND: Duration = Duration::from_secs(1);

/// `n` nodes on a random graph (a ring plus three random links each), the
/// object created on node 0 and opened everywhere else.
fn cluster(n: usize, config: HarnessConfig) -> Harness<Doc> {
    cluster_of(n, n, config)
}

/// [`cluster`], the object held by the first `holders` nodes only.
fn cluster_of(n: usize, holders: usize, config: HarnessConfig) -> Harness<Doc> {
    let mut h = common::ring_cluster(n, 3, config);
    h.create(0, "doc", Doc::default());
    for i in 1..holders {
        h.open(i, "doc");
    }
    h.drive();
    for i in 0..holders {
        assert!(h.host_of(i, "doc").is_some(), "node {i} opened the doc");
    }
    h
}

/// Shout `count` ops from random live nodes among `from`, spread over
/// `over` of virtual time.
fn shout_over(
    h: &mut Harness<Doc>,
    from: &[usize],
    count: usize,
    over: Duration,
    ops: &mut Vec<(OpId, DocOp)>,
) {
    let gap = over / count as u32;
    for _ in 0..count {
        let live: Vec<usize> = from.iter().copied().filter(|i| h.is_alive(*i)).collect();
        let node = live[h.rng().random_range(0..live.len())];
        let op = random_op(h.rng());
        ops.push((h.shout(node, "doc", op.clone()), op));
        h.run_for(gap);
    }
}

/// Why the live replicas have not converged on exactly `ops`, if they have
/// not.
fn divergence(h: &Harness<Doc>, ops: &[(OpId, DocOp)]) -> Option<String> {
    let expected =
        plexus::proto::message::encode_value(&reference(h.with_final_ids("doc", ops)), "state")
            .expect("states encode");
    for i in (0..h.len()).filter(|i| h.is_alive(*i)) {
        let Some(host) = h.host_of(i, "doc") else {
            return Some(format!("node {i} does not hold the doc"));
        };
        let host = host.lock();
        if let Some((id, _)) = ops
            .iter()
            .find(|(id, _)| !host.replica.has_seen(&id.origin, id.seq))
        {
            return Some(format!("node {i} lacks op {id}"));
        }
        let bytes = plexus::proto::message::encode_value(host.replica.state(), "state")
            .expect("states encode");
        if bytes != expected {
            return Some(format!("node {i}'s state differs from the reference"));
        }
    }
    None
}

/// Run round by round until converged; the number of rounds it took.
fn rounds_to_converge(h: &mut Harness<Doc>, ops: &[(OpId, DocOp)], what: &str) -> u32 {
    let mut rounds = 0;
    while let Some(why) = divergence(h, ops) {
        assert!(
            rounds < 3,
            "{what}: not converged 3 rounds after the last fault: {why} (seed {})",
            h.seed()
        );
        h.run_for(ROUND);
        rounds += 1;
    }
    rounds
}

fn report(h: &Harness<Doc>, what: &str, rounds: u32) {
    let t = h.traffic();
    let line = |k: &str| t.get(k).copied().unwrap_or_default();
    let (op, sum, dig) = (line("op"), line("summary"), line("digest"));
    let repaired: u64 = (0..h.len())
        .map(|i| h.anti_entropy_stats(i).ops_repaired)
        .sum();
    eprintln!(
        "{what}: converged {rounds} round(s) after the last fault; ops {} msgs {} B ({} lost), \
         summaries {} msgs {} B, digests {} msgs {} B, ops repaired {repaired}",
        op.messages, op.bytes, op.dropped, sum.messages, sum.bytes, dig.messages, dig.bytes
    );
}

#[test]
fn twenty_percent_loss_is_repaired() {
    let mut h = cluster(N, HarnessConfig::default());
    let everyone: Vec<usize> = (0..N).collect();
    let mut ops = Vec::new();
    h.set_loss(0.2);
    shout_over(&mut h, &everyone, 400, Duration::from_secs(8), &mut ops);
    h.set_loss(0.0);
    let rounds = rounds_to_converge(&mut h, &ops, "20% loss");
    report(&h, "20% loss", rounds);
}

#[test]
fn a_healed_partition_converges() {
    let mut h = cluster(N, HarnessConfig::default());
    let left: Vec<usize> = (0..N / 2).collect();
    let right: Vec<usize> = (N / 2..N).collect();
    let mut ops = Vec::new();
    h.partition(&[left.clone(), right.clone()]);
    for _ in 0..5 {
        shout_over(&mut h, &left, 20, Duration::from_secs(1), &mut ops);
        shout_over(&mut h, &right, 20, Duration::from_secs(1), &mut ops);
    }
    assert!(
        divergence(&h, &ops).is_some(),
        "a partition must keep the sides apart (seed {})",
        h.seed()
    );
    h.heal();
    let rounds = rounds_to_converge(&mut h, &ops, "50/50 partition");
    report(&h, "50/50 partition", rounds);
}

#[test]
fn crashed_nodes_catch_up_after_restart() {
    let mut h = cluster(N, HarnessConfig::default());
    let everyone: Vec<usize> = (0..N).collect();
    let mut ops = Vec::new();
    shout_over(&mut h, &everyone, 100, Duration::from_secs(2), &mut ops);
    let mut crashed = BTreeSet::new();
    while crashed.len() < N / 10 {
        crashed.insert(h.rng().random_range(0..N));
    }
    for &c in &crashed {
        h.crash(c);
    }
    shout_over(&mut h, &everyone, 200, Duration::from_secs(4), &mut ops);
    for &c in &crashed {
        h.restart(c);
    }
    let rounds = rounds_to_converge(&mut h, &ops, "10% crashed and restarted");
    report(&h, "10% crash/restart", rounds);
}

#[test]
fn late_joiners_catch_up_while_shouts_go_on() {
    let holders = N - 10;
    let mut h = cluster_of(N, holders, HarnessConfig::default());
    let first: Vec<usize> = (0..holders).collect();
    let mut ops = Vec::new();
    shout_over(&mut h, &first, 100, Duration::from_secs(2), &mut ops);
    // Ten nodes open the doc only now, while shouting goes on (with 5%
    // loss, so the open's answer races lost and repaired ops).
    h.set_loss(0.05);
    for j in holders..N {
        h.open(j, "doc");
    }
    shout_over(&mut h, &first, 100, Duration::from_secs(2), &mut ops);
    h.set_loss(0.0);
    for j in holders..N {
        assert!(
            h.host_of(j, "doc").is_some(),
            "late node {j} opened the doc"
        );
    }
    let rounds = rounds_to_converge(&mut h, &ops, "late joiners");
    report(&h, "late joiners", rounds);
}

/// Whether every node's replica of the doc holds the same ack table.
fn acks_agree(h: &Harness<Doc>) -> bool {
    let tables: Vec<_> = (0..h.len())
        .filter_map(|i| h.host_of(i, "doc"))
        .map(|host| host.lock().replica.acks().clone())
        .collect();
    tables.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn idle_rounds_cost_a_constant_few_bytes_and_stable_ops_leave_the_log() {
    let mut h = cluster(N, HarnessConfig::default());
    let everyone: Vec<usize> = (0..N).collect();
    let mut ops = Vec::new();
    shout_over(&mut h, &everyone, 300, Duration::from_secs(3), &mut ops);
    let before = h.traffic().clone();
    h.run_for(ROUND * 3);
    let under_load: u64 = h
        .traffic()
        .iter()
        .filter(|(k, _)| matches!(**k, "summary" | "digest"))
        .map(|(k, t)| t.bytes - before.get(k).map_or(0, |b| b.bytes))
        .sum();
    assert!(
        divergence(&h, &ops).is_none(),
        "converged (seed {})",
        h.seed()
    );
    // Let the acks settle (every node has heard every member's last ack;
    // until then a node's digests still differ from some peer's and it
    // rightly sends them), then measure ten idle rounds.
    let mut waited = 0;
    while !acks_agree(&h) {
        assert!(
            waited < 60,
            "acks still differ after 60 quiet rounds (seed {})",
            h.seed()
        );
        h.run_for(ROUND);
        waited += 1;
    }
    eprintln!("acks agreed everywhere {waited} round(s) after convergence");
    // The exchange that brought the last ack may still be answering.
    h.drive();
    assert!(acks_agree(&h), "acks agree once the last exchange is done");
    let settled = h.traffic().clone();
    h.run_for(ROUND * 10);
    let idle_by = |kinds: &[&str]| -> u64 {
        h.traffic()
            .iter()
            .filter(|(k, _)| kinds.contains(k))
            .map(|(k, t)| t.bytes - settled.get(k).map_or(0, |b| b.bytes))
            .sum()
    };
    let idle = idle_by(&["summary", "digest", "op", "snapshot"]);
    let probes = idle_by(&["probe"]);
    let digests_idle = h.traffic().get("digest").map_or(0, |t| t.messages)
        - settled.get("digest").map_or(0, |t| t.messages);
    let per_node_round = idle as f64 / (N as f64 * 10.0);
    eprintln!(
        "anti-entropy bytes per node per round: {:.0} under load (3 rounds after 300 shouts), \
         {per_node_round:.0} idle; idle digests: {digests_idle}; failure-detector probes idle: \
         {:.0} B per node per second",
        under_load as f64 / (N as f64 * 3.0),
        probes as f64 / (N as f64 * 10.0)
    );
    assert_eq!(digests_idle, 0, "idle rounds exchange summaries only");
    assert!(
        per_node_round < 200.0,
        "an idle round costs a few summaries per node, not bytes per op"
    );
    for i in 0..N {
        let host = h.host_of(i, "doc").expect("held");
        let host = host.lock();
        assert_eq!(
            host.replica.tentative_len(),
            0,
            "node {i}: every op is stable once all acked (seed {})",
            h.seed()
        );
        assert_eq!(
            host.stable.len(),
            ops.len(),
            "node {i}: on_stable once per op"
        );
    }
}
