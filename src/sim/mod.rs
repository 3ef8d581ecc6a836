//! The deterministic harness: many sans-IO nodes in one process, virtual
//! time, a seeded RNG.
//!
//! Messages cross links after a random latency, so they can overtake each
//! other; a link can also duplicate messages. Each message is encoded once
//! when sent (its size is what the byte figures count, and a message over
//! the frame limit is a bug); the receivers get the message itself, and
//! test builds check that the encoding decodes back to it. Every run is reproducible from its seed: [`Harness::from_env`]
//! reads `PLEXUS_SEED` and prints the seed it used.
//!
//! Tests read like scripts: set up, act, [`drive`](Harness::drive), assert.
//!
//! On top of the harness, [`run`] plays a [`Scenario`] (read from TOML: the
//! nodes, their links and latency model, loss, writers, crashes, flapping
//! nodes, partitions) and measures it into a [`Report`]: delivery, missed
//! ops, relative message redundancy, last-delivery hop, latency to full
//! replication, anti-entropy bytes, failure detection, the simulator's own
//! speed. `plexus sim <scenario.toml>` runs one from the command line.

mod harness;
mod lag;
mod latency;
mod plot;
mod report;
mod run;
mod scenario;
mod tally;
mod trace;

pub use harness::{
    seed_from_env, DurableBook, DurableConfig, DurableShout, Harness, HarnessConfig, SeqConflict,
    ShoutFate, SimHost, Traffic,
};
pub use latency::{LinkLatency, Region};
pub use plot::{cost_curve_svg, CostPoint, PlotError};
pub use report::{Percentiles, Report};
pub use run::{run, SimError};
pub use scenario::{
    Crashes, DetectorSettings, Flapping, Partition, Scenario, Topology, TreeSettings,
};
pub use tally::{Tally, TallyOp};
pub use trace::{OpRecord, OpTrace};
