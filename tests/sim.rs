//! The simulator's CI suite: the small scenarios in `simulations/ci-*.toml`
//! over several seeds (or `PLEXUS_SEED`). The assertions are on
//! correctness — no op missed, every live replica converged, the same seed
//! gives the same run; the figures are printed.

use std::path::Path;

use plexus::sim::{run, Report, Scenario, SimError};

fn scenario(file: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("simulations")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("scenario file");
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn check(report: &Report) {
    eprintln!("{report}");
    assert_eq!(report.missed, 0, "missed ops (seed {})", report.seed);
    assert!(
        report.converged_rounds.is_some(),
        "not converged (seed {})",
        report.seed
    );
    assert!(report.ops > 0, "no ops shouted");
    assert_eq!(
        report.ops_nowhere_writer_up, 0,
        "ops lost (seed {})",
        report.seed
    );
    assert_eq!(
        report.overlay_parts[1], 1,
        "the overlay ended in parts (seed {})",
        report.seed
    );
    // Every node is up again at the end: every op must become stable
    // (folded) everywhere.
    assert_eq!(
        (report.unstable_ops, report.stable_rounds.is_some()),
        (0, true),
        "ops never stable everywhere (seed {})",
        report.seed
    );
    assert_eq!(report.stability_lag_ms.count, report.ops);
}

#[test]
fn a_random_graph_with_loss_crashes_and_a_partition_misses_nothing() {
    let s = scenario("ci-small.toml");
    for seed in s.seeds_to_run() {
        check(&run(&s, seed).expect("runs"));
    }
}

#[test]
fn an_overlay_with_crashes_and_flapping_nodes_misses_nothing() {
    let s = scenario("ci-overlay.toml");
    for seed in s.seeds_to_run() {
        check(&run(&s, seed).expect("runs"));
    }
}

#[test]
fn digests_split_into_pieces_still_repair_and_stabilise_everything() {
    let s = scenario("ci-split.toml");
    for seed in s.seeds_to_run() {
        let report = run(&s, seed).expect("runs");
        check(&report);
        assert!(
            report.digest_pieces > 0,
            "no digest was split (seed {seed})"
        );
        assert_eq!(report.bad_pieces, 0, "seed {seed}");
    }
}

#[test]
fn every_crash_is_detected_under_half_loss() {
    let s = scenario("ci-detect.toml");
    for seed in s.seeds_to_run() {
        let report = run(&s, seed).expect("runs");
        check(&report);
        assert!(report.outages > 0, "no crash (seed {seed})");
        assert_eq!(
            report.detection_ms.count, report.outages,
            "a crash went undetected (seed {seed})"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let mut s = scenario("ci-small.toml");
    s.nodes = 20;
    s.ops = 60;
    let seed = plexus::sim::seed_from_env();
    let (a, b) = (run(&s, seed).expect("runs"), run(&s, seed).expect("runs"));
    let figures = |r: &Report| {
        (
            r.missed,
            r.rmr.to_bits(),
            r.ldh_max,
            r.latency_ms.p99.to_bits(),
            r.largest_message,
            r.events,
            r.virtual_s.to_bits(),
            r.stability_lag_ms.p99.to_bits(),
        )
    };
    assert_eq!(figures(&a), figures(&b), "seed {seed}");
}

#[test]
fn every_scenario_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("simulations/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 2, "{count} scenario files");
}

#[test]
fn bad_scenarios_are_refused_with_a_reason() {
    let base = "name = \"x\"\nnodes = 10\ntopology = { kind = \"full_mesh\" }\n\
                latency = { model = \"static\", ms = 5 }\nops = 10\nload_s = 1.0\n";
    assert!(Scenario::from_toml(base).is_ok());
    let overlay = base.replace(
        "{ kind = \"full_mesh\" }",
        "{ kind = \"overlay\", active = 4 }",
    );
    assert!(Scenario::from_toml(&format!("{overlay}[overlay]\nsampling_view = 0\n")).is_ok());
    let cases = [
        (base.replace("nodes = 10", "nodes = 1"), "at least 2"),
        (format!("{base}loss = 1.5\n"), "loss"),
        (format!("{base}writers = 11\n"), "writers"),
        (base.replace("load_s = 1.0", "load_s = -1.0"), "load_s"),
        (format!("{base}color = 3\n"), "color"),
        (format!("{base}max_digest_bytes = 10\n"), "max_digest_bytes"),
        (
            format!("{base}[failure_detector]\ndirect_pings = 0\n"),
            "direct_pings",
        ),
        (
            format!("{base}[failure_detector]\nprobe_timeout_ms = 2000\n"),
            "probe timeout",
        ),
        (base.replace("full_mesh", "hypercube"), "hypercube"),
        (
            format!("{base}[overlay]\nrotation = 3\n"),
            "need topology kind \"overlay\"",
        ),
        (
            format!("{overlay}[overlay]\nsampling_view = 2\n"),
            "sampling_view = 2",
        ),
        (
            format!("{overlay}[overlay]\nsampling_period_ms = 0\n"),
            "sampling_period_ms",
        ),
        (
            format!("{base}[crashes]\ncount = 10\nfirst_s = 0.0\nlast_s = 0.5\n"),
            "crashing",
        ),
    ];
    for (text, why) in cases {
        let err = Scenario::from_toml(&text).expect_err(why);
        assert!(
            matches!(err, SimError::Parse(_) | SimError::Invalid(_)),
            "{err:?}"
        );
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}
