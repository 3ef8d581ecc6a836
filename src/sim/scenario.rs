//! A simulation scenario, as written in `simulations/*.toml`.
//!
//! ```toml
//! name = "1k-uniform"
//! nodes = 1000
//! seeds = [1, 2, 3, 4]          # or `seed = 7`; PLEXUS_SEED overrides
//! topology = { kind = "overlay", active = 5 }
//! latency = { model = "uniform", min_ms = 10, max_ms = 50 }
//! loss = 0.0
//! objects = 1
//! writers = 100                # nodes that shout (0: every node)
//! ops = 2000                   # shouts in all, spread over `load_s`
//! load_s = 20.0
//! idle_s = 10.0                # measured after convergence
//! ```
//!
//! Faults: `[crashes]` (how many nodes crash during the load and after how
//! long they restart), `[flapping]` (nodes that go down and up again and
//! again), `[[partitions]]` (a split at some second of the load, healed at
//! another). `[tree]` and `[failure_detector]` override the defaults of the
//! broadcast trees and of SWIM.

use serde::{Deserialize, Serialize};

use super::latency::LinkLatency;

/// How the nodes are linked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Topology {
    /// Every node linked to every other (small clusters).
    FullMesh,
    /// A ring plus `extra` random links per node.
    Random {
        /// Random links added per node.
        extra: usize,
    },
    /// A HyParView overlay: each node joins through a random earlier one.
    Overlay {
        /// The active view size (the overlay's fanout).
        active: usize,
    },
}

/// Nodes that crash during the load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crashes {
    /// How many (chosen at random, writers included).
    pub count: usize,
    /// When the first crashes, in seconds into the load; the others follow
    /// evenly until `last_s`.
    pub first_s: f64,
    /// When the last crashes.
    pub last_s: f64,
    /// How long each stays down before it restarts; `None` never.
    pub restart_after_s: Option<f64>,
}

/// Nodes that go down and come back, again and again, during the load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flapping {
    /// How many.
    pub count: usize,
    /// Seconds up, then seconds down, in turn.
    pub up_s: f64,
    /// Seconds down each time.
    pub down_s: f64,
}

/// A split of the nodes into two sides, healed later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it starts, in seconds into the load.
    pub at_s: f64,
    /// When it heals.
    pub heal_s: f64,
    /// The share of nodes on the smaller side (nodes are assigned at
    /// random).
    pub fraction: f64,
}

/// Broadcast tree settings to try (the defaults otherwise; see
/// [`DisseminationConfig`](crate::proto::dissemination::DisseminationConfig)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSettings {
    /// `max_trees`: 0 keeps one tree for every origin.
    pub max_trees: Option<usize>,
    /// `first_fanout`: 0 floods every link.
    pub first_fanout: Option<usize>,
    /// `graft_timeout_1` in milliseconds.
    pub graft_timeout_ms: Option<f64>,
}

/// Overlay settings, where not the defaults (see
/// [`HyParViewConfig`](crate::proto::hyparview::HyParViewConfig) and
/// [`SamplingConfig`](crate::proto::sampling::SamplingConfig)); used with
/// `topology = { kind = "overlay", .. }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySettings {
    /// `rotation`: one swap of a full view in so many shuffles (0: never).
    pub rotation: Option<u32>,
    /// Peer sampling beside HyParView, with this view size (0: off; on
    /// with the default view of 30 if not given).
    pub sampling_view: Option<usize>,
    /// Peer sampling's cycle in milliseconds.
    pub sampling_period_ms: Option<f64>,
}

/// Failure detector settings, where not the defaults (see
/// [`SwimConfig`](crate::proto::swim::SwimConfig)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSettings {
    /// `probe_interval` in milliseconds.
    pub probe_interval_ms: Option<f64>,
    /// `probe_timeout` in milliseconds.
    pub probe_timeout_ms: Option<f64>,
    /// `direct_pings`.
    pub direct_pings: Option<u32>,
    /// `indirect_probes`.
    pub indirect_probes: Option<usize>,
    /// `confirm_probe`.
    pub confirm_probe: Option<bool>,
    /// `suspicion_multiplier`.
    pub suspicion_multiplier: Option<u32>,
    /// `max_local_health`.
    pub max_local_health: Option<u32>,
}

impl DetectorSettings {
    /// The default configuration with these settings applied.
    pub fn config(&self) -> crate::proto::swim::SwimConfig {
        let mut c = crate::proto::swim::SwimConfig::default();
        let millis = |ms: f64| std::time::Duration::from_micros((ms.max(0.0) * 1000.0) as u64);
        if let Some(ms) = self.probe_interval_ms {
            c.probe_interval = millis(ms);
        }
        if let Some(ms) = self.probe_timeout_ms {
            c.probe_timeout = millis(ms);
        }
        c.direct_pings = self.direct_pings.unwrap_or(c.direct_pings);
        c.indirect_probes = self.indirect_probes.unwrap_or(c.indirect_probes);
        c.confirm_probe = self.confirm_probe.unwrap_or(c.confirm_probe);
        c.suspicion_multiplier = self.suspicion_multiplier.unwrap_or(c.suspicion_multiplier);
        c.max_local_health = self.max_local_health.unwrap_or(c.max_local_health);
        c
    }
}

/// One scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// How many nodes.
    pub nodes: usize,
    /// The seed, unless `seeds` or `PLEXUS_SEED` is given.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Several seeds: one run each.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// How the nodes are linked.
    pub topology: Topology,
    /// The latency model.
    pub latency: LinkLatency,
    /// The chance that any message is lost, during the load.
    #[serde(default)]
    pub loss: f64,
    /// How many objects (every node holds every object).
    #[serde(default = "one")]
    pub objects: usize,
    /// How many nodes shout; 0 means every node.
    #[serde(default)]
    pub writers: usize,
    /// Shouts in all, spread evenly over the load.
    pub ops: usize,
    /// How long the load lasts, in seconds.
    pub load_s: f64,
    /// How long the idle phase after convergence lasts (its anti-entropy
    /// traffic is measured), in seconds.
    #[serde(default = "ten")]
    pub idle_s: f64,
    /// How long the nodes settle before the idle phase is measured, in
    /// seconds: counted from when every op is stable at every live node
    /// (or, if that takes over `max_rounds` rounds, from then).
    #[serde(default = "five")]
    pub settle_s: f64,
    /// The most anti-entropy rounds to wait for convergence after the load
    /// and the last fault, and again for every op to be stable.
    #[serde(default = "twenty")]
    pub max_rounds: u32,
    /// Nodes crashing during the load.
    #[serde(default)]
    pub crashes: Option<Crashes>,
    /// Flapping nodes.
    #[serde(default)]
    pub flapping: Option<Flapping>,
    /// Partitions during the load.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// Broadcast tree settings, where not the defaults.
    #[serde(default)]
    pub tree: TreeSettings,
    /// Anti-entropy's `max_digest_bytes`, where not the default (a small
    /// value makes small runs split their digests into pieces).
    #[serde(default)]
    pub max_digest_bytes: Option<usize>,
    /// Failure detector settings, where not the defaults.
    #[serde(default)]
    pub failure_detector: DetectorSettings,
    /// Overlay settings, where not the defaults.
    #[serde(default)]
    pub overlay: OverlaySettings,
}

fn one() -> usize {
    1
}

fn ten() -> f64 {
    10.0
}

fn five() -> f64 {
    5.0
}

fn twenty() -> u32 {
    20
}

impl Scenario {
    /// Parse a scenario from TOML and check it.
    pub fn from_toml(text: &str) -> Result<Self, super::SimError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| super::SimError::Parse(e.to_string()))?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Why the scenario cannot run, if it cannot.
    pub fn check(&self) -> Result<(), super::SimError> {
        let bad = |why: String| Err(super::SimError::Invalid(why));
        if self.nodes < 2 {
            return bad(format!("nodes = {}: at least 2", self.nodes));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return bad(format!("loss = {}: from 0 up to (not) 1", self.loss));
        }
        if self.objects == 0 {
            return bad("objects = 0: at least 1".into());
        }
        if self.writers > self.nodes {
            return bad(format!("writers = {} > nodes", self.writers));
        }
        if !(self.load_s > 0.0 && self.load_s.is_finite()) {
            return bad(format!("load_s = {}: positive", self.load_s));
        }
        if !(self.settle_s >= 0.0 && self.settle_s.is_finite()) {
            return bad(format!("settle_s = {}: zero or more", self.settle_s));
        }
        if !(self.idle_s >= 0.0 && self.idle_s.is_finite()) {
            return bad(format!("idle_s = {}: zero or more", self.idle_s));
        }
        let faulty = self.crashes.as_ref().map_or(0, |c| c.count)
            + self.flapping.as_ref().map_or(0, |f| f.count);
        if faulty >= self.nodes {
            return bad(format!(
                "{faulty} crashing or flapping nodes of {}",
                self.nodes
            ));
        }
        if let Some(c) = &self.crashes {
            if c.first_s > c.last_s || c.first_s < 0.0 || c.last_s > self.load_s {
                return bad("crashes: 0 <= first_s <= last_s <= load_s".into());
            }
        }
        if let Some(f) = &self.flapping {
            if f.up_s <= 0.0 || f.down_s <= 0.0 {
                return bad("flapping: up_s and down_s positive".into());
            }
        }
        for p in &self.partitions {
            if !(p.at_s < p.heal_s && p.fraction > 0.0 && p.fraction <= 0.5) {
                return bad("partitions: at_s < heal_s, 0 < fraction <= 0.5".into());
            }
        }
        if self.max_digest_bytes.is_some_and(|b| b < 512) {
            return bad("max_digest_bytes: 512 or more".into());
        }
        if let Err(e) = self.failure_detector.config().validate() {
            return bad(format!("failure_detector: {e}"));
        }
        if let Topology::Overlay { active } = self.topology {
            if active < 2 {
                return bad("overlay: active of 2 or more".into());
            }
        } else if self.overlay != OverlaySettings::default() {
            return bad("[overlay] settings need topology kind \"overlay\"".into());
        }
        if let Some(view) = self.overlay.sampling_view.filter(|v| *v > 0) {
            if view < 4 {
                return bad(format!(
                    "overlay: sampling_view = {view}: 0 (off) or 4 or more"
                ));
            }
        }
        if self
            .overlay
            .sampling_period_ms
            .is_some_and(|ms| !(ms > 0.0 && ms.is_finite()))
        {
            return bad("overlay: sampling_period_ms positive".into());
        }
        Ok(())
    }

    /// The seeds to run: `PLEXUS_SEED` if set, else `seeds`, else `seed`,
    /// else 1.
    pub fn seeds_to_run(&self) -> Vec<u64> {
        if let Some(seed) = std::env::var("PLEXUS_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return vec![seed];
        }
        if !self.seeds.is_empty() {
            return self.seeds.clone();
        }
        vec![self.seed.unwrap_or(1)]
    }
}
