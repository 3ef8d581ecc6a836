//! The deterministic harness: many sans-IO nodes in one process, virtual
//! time, a seeded RNG.
//!
//! Messages cross links encoded (as on a real network) after a random
//! latency, so they can overtake each other; a link can also duplicate
//! messages. Every run is reproducible from its seed: [`Harness::from_env`]
//! reads `PLEXUS_SEED` and prints the seed it used.
//!
//! Tests read like scripts: set up, act, [`drive`](Harness::drive), assert.
//! The harness grows into the full simulator (loss, partitions, crashes,
//! thousands of nodes) in later releases.

mod harness;

pub use harness::{seed_from_env, Harness, HarnessConfig, SimHost, Traffic};
