//! The lab: start a local cluster of peer processes, watch the live
//! communication graph in a web page, end when every peer met its targets.
//!
//! ```text
//! plexus lab frog --peers 8                       # the demo
//! plexus lab counter-race --peers 64 --messages "10 if peer <= 8 else 0" --interval 0
//! plexus lab --list
//! ```
//!
//! An **experiment** is Rust code registered by name in an
//! [`Experiments`] registry. The lab starts `--peers` processes of the same
//! program (`lab-peer`), each a QUIC node on 127.0.0.1 with its own port and
//! temporary data directory, all with certificates from one throwaway
//! cluster CA. Each peer links to up to two peers started before it, then
//! runs the experiment's code with a [`LabContext`]: its peer number, the
//! peer count, its message budget (`--messages`, an [`Expr`] of `peer`),
//! its node, and [`report_target`](LabContext::report_target).
//!
//! A peer is **done** when every target it reported is met; the run ends
//! when every peer is done (or on `--timeout`, a failure, or Ctrl-C).
//! [`wait_for_experiment_end`](LabContext::wait_for_experiment_end) then
//! returns in every peer, the peers stop cleanly, and the lab writes
//! `lab-out/<experiment>-<time>/`: `graph.dot`, `graph.svg`, `graph.json`,
//! `metrics.json` (ops, bytes, convergence time, per-link counts, CPU and
//! memory) and `peers/peer-N.log`.
//!
//! While it runs, the lab serves a page on 127.0.0.1: the graph (peers
//! coloured alive, suspected or down; links weighted by messages), the
//! targets table and the ops each peer saw over time, streamed as
//! server-sent events four times a second.
//!
//! **No orphans.** Each peer's standard input is a pipe from the lab; a
//! peer stops as soon as it closes, so however the lab ends (Ctrl-C, a
//! crash, `kill -9`) its peers end too.
//!
//! Your own program can be a lab with your own experiments:
//!
//! ```no_run
//! use plexus::lab::{Experiments, LabContext};
//!
//! async fn hello(ctx: LabContext) -> plexus::lab::ExperimentResult {
//!     ctx.report_target("said hello", 1, 1);
//!     ctx.wait_for_experiment_end().await;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     plexus::lab::main(Experiments::new().add("hello", "every peer says hello", hello))
//! }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

mod context;
mod expr;
mod layout;
mod out;
mod peer;
mod runner;
mod spawn;
mod view;
mod web;
mod wire;

pub use context::LabContext;
pub use expr::{Expr, ExprError};
pub use out::{dot, svg, Metrics};
pub use peer::{run_peer, PeerArgs};
pub use runner::{run_lab, LabArgs, Outcome};
pub use view::{EdgeSnapshot, PeerSnapshot, RunState, Snapshot};
pub use wire::RosterEntry;

/// The lab's decoders of what crosses its control connections, for the
/// fuzz target (`fuzz/fuzz_targets/lab_control.rs`): not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use super::view::View;
    use super::wire::{ToLab, ToPeer};

    /// Decodes `line` as the lab decodes a peer's line, applies it to a
    /// 4-peer view as peer 2's, and draws a snapshot; decodes it as a peer
    /// decodes the lab's. Errors are fine; a panic is a bug.
    pub fn control_line(line: &[u8]) {
        let mut view = View::new("fuzz", 4);
        if let Ok(msg) = serde_json::from_slice::<ToLab>(line) {
            view.apply(2, Duration::from_millis(1), msg);
            view.tick(Duration::from_millis(2));
            let _ = view.snapshot();
        }
        let _ = serde_json::from_slice::<ToPeer>(line);
    }
}

/// What an experiment's code returns.
pub type ExperimentResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type Run =
    Arc<dyn Fn(LabContext) -> Pin<Box<dyn Future<Output = ExperimentResult> + Send>> + Send + Sync>;

/// The experiments a lab program knows, by name.
#[derive(Clone, Default)]
pub struct Experiments {
    map: BTreeMap<String, (String, Run)>,
}

impl std::fmt::Debug for Experiments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl Experiments {
    /// No experiments yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `run` as `name`, described by `about` (for `--list`). A
    /// second registration of a name replaces the first.
    pub fn add<F, Fut>(mut self, name: &str, about: &str, run: F) -> Self
    where
        F: Fn(LabContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ExperimentResult> + Send + 'static,
    {
        let run: Run = Arc::new(move |ctx| Box::pin(run(ctx)));
        self.map.insert(name.to_owned(), (about.to_owned(), run));
        self
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// Each name with its description.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(n, (a, _))| (n.as_str(), a.as_str()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<Run> {
        self.map.get(name).map(|(_, run)| run.clone())
    }
}

/// Why a lab run, or a peer of it, could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// No experiment has that name.
    #[error("no experiment named {name:?}; the experiments are: {known}")]
    UnknownExperiment {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// `--messages` does not parse or evaluate.
    #[error("--messages {expr:?}: {error}")]
    Messages {
        /// The expression.
        expr: String,
        /// Where and what.
        error: ExprError,
    },
    /// `--messages` gave a peer a negative budget.
    #[error("--messages {expr:?} gives peer {peer} the budget {value}; budgets are 0 or more")]
    NegativeBudget {
        /// The expression.
        expr: String,
        /// The peer.
        peer: u32,
        /// What it gave.
        value: i64,
    },
    /// Making the CA, the identities, the directories or the processes.
    #[error("setting up the lab: {0}")]
    Setup(String),
    /// The control connection between the lab and a peer.
    #[error("the lab's control connection: {0}")]
    Control(std::io::Error),
    /// Writing the run's files.
    #[error("writing {path}: {error}")]
    Output {
        /// The file or directory.
        path: String,
        /// What went wrong.
        error: String,
    },
    /// `lab-peer` was started by hand: it only runs under `plexus lab`.
    #[error("lab-peer runs only under `lab` (it needs the lab's control address)")]
    NotUnderLab,
    /// A peer lost its lab (its standard input or control connection
    /// closed) and stopped.
    #[error("the lab is gone; stopping")]
    LabGone,
}

/// The command line of a lab program: `lab <experiment> [options]` runs a
/// lab, `lab-peer` is a peer process (the lab starts those).
#[derive(Debug, clap::Parser)]
#[command(about = "A local cluster of Plexus peers, its live communication graph in a web page")]
pub struct LabCli {
    #[command(subcommand)]
    command: LabCommand,
}

/// The lab's commands.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Run an experiment on a local cluster and watch it.
    Lab(LabArgs),
    /// One peer of a lab run (started by the lab).
    #[command(hide = true)]
    LabPeer(PeerArgs),
}

/// Runs a lab command with `experiments`: what a lab program's `main`
/// does (the `plexus` binary's `lab` too). Exit code 0 when the run
/// ended with every peer done.
pub fn main(experiments: Experiments) -> ExitCode {
    use clap::Parser;
    let cli = LabCli::parse();
    run_command(cli.command, &experiments)
}

/// Runs one parsed lab command; see [`main`].
pub fn run_command(command: LabCommand, experiments: &Experiments) -> ExitCode {
    let peer = matches!(command, LabCommand::LabPeer(_));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lab: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            LabCommand::Lab(args) if args.list => {
                for (name, about) in experiments.list() {
                    println!("{name:<16} {about}");
                }
                Ok(true)
            }
            LabCommand::Lab(args) => run_lab(args, experiments)
                .await
                .map(|o| o.state == RunState::Done),
            LabCommand::LabPeer(args) => run_peer(args, experiments).await.map(|()| true),
        }
    });
    // Peers may still hold tasks (a stuck link); the process ends here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(LabError::LabGone) if peer => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}: error: {e}", if peer { "lab-peer" } else { "lab" });
            ExitCode::FAILURE
        }
    }
}
