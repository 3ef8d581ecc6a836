//! The `plexus` command line: cluster CA and node identities.
//!
//! ```text
//! plexus ca init  --dir <ca-dir> [--name <cluster name>]
//! plexus ca issue --ca <ca-dir> --name <node name> --out <node-dir>
//! plexus keygen   --out <node-dir>
//! plexus id       --dir <node-dir>
//! plexus node     --config <site.toml>
//! plexus sim      <scenario.toml> [--json <report.json>] [--seed <seed>]
//! plexus lab      <experiment> [--peers N] [--messages EXPR] [...]
//! ```
//!
//! Commands that make or read a node identity print its node id (64 hex
//! digits) alone on standard output, so scripts can capture it; everything
//! else goes to standard error.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(feature = "lab")]
use plexus::lab::{LabArgs, LabCommand, PeerArgs};
use plexus::site::SiteConfig;
use plexus::tls::{self, ClusterCa, Identity, CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE};

/// What a command returns: its errors are printed, and the exit code is 1.
type CliResult = Result<(), Box<dyn Error>>;

/// Plexus: replicated objects over QUIC.
#[derive(Debug, Parser)]
#[command(name = "plexus", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment on a local cluster of peer processes and watch
    /// its live communication graph in a web page; ends when every peer
    /// met its targets and writes lab-out/<run>/. `plexus lab --list`
    /// names the experiments.
    #[cfg(feature = "lab")]
    Lab(LabArgs),
    /// One peer of a lab run (the lab starts these).
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    LabPeer(PeerArgs),
    /// Manage a cluster certificate authority (for CA-trust clusters).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Make a self-signed node identity (for allow-list clusters) and print
    /// its node id.
    Keygen {
        /// The node directory to write node.key and node.crt to.
        #[arg(long, value_name = "NODE_DIR")]
        out: PathBuf,
    },
    /// Print the node id of the identity saved in a node directory.
    Id {
        /// The node directory holding node.key and node.crt.
        #[arg(long, value_name = "NODE_DIR")]
        dir: PathBuf,
    },
    /// Run a standalone site: a repeater that holds no application types and
    /// relays every op, opaque, between the sites linked to it. Runs until
    /// Ctrl-C or SIGTERM. Logs go to standard error (RUST_LOG filters them).
    Node {
        /// The site file (see `plexus::site`): listen, data_dir, ca/allow,
        /// links.
        #[arg(long, value_name = "SITE_TOML")]
        config: PathBuf,
    },
    /// Run a simulation scenario (see `simulations/*.toml`) in the
    /// deterministic simulator and print its figures; one run per seed.
    Sim {
        /// The scenario file.
        #[arg(value_name = "SCENARIO_TOML")]
        scenario: PathBuf,
        /// Also write the reports, as a JSON array, to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Run this seed only (else PLEXUS_SEED, else the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Draw the cost curve (latency, messages per op and memory per node
    /// against the number of nodes) from `plexus sim --json` reports, as
    /// an SVG image.
    Plot {
        /// Report files (JSON arrays, as `plexus sim --json` writes).
        #[arg(value_name = "REPORT_JSON", required = true)]
        reports: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(long, value_name = "SVG")]
        out: PathBuf,
    },
}

/// The `ca` subcommands.
#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Make a cluster CA: writes ca.key (mode 0600, keep it secret) and
    /// ca.crt (give it to every node). Never overwrites an existing CA.
    Init {
        /// The directory to write the CA to (created if missing).
        #[arg(long, value_name = "CA_DIR")]
        dir: PathBuf,
        /// The cluster's name, the CA certificate's common name.
        #[arg(long, default_value = "plexus cluster")]
        name: String,
    },
    /// Issue a node certificate signed by the CA and print the node id.
    ///
    /// Reuses the key in the node directory when there is one (the node id
    /// stays; only the certificate is replaced), else makes a new key.
    Issue {
        /// The CA directory (ca.key and ca.crt).
        #[arg(long = "ca", value_name = "CA_DIR")]
        ca: PathBuf,
        /// The node's name, the certificate's common name.
        #[arg(long)]
        name: String,
        /// The node directory to write node.key and node.crt to.
        #[arg(long, value_name = "NODE_DIR")]
        out: PathBuf,
    },
}

#[cfg(feature = "lab")]
mod experiments;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "lab")]
        Command::Lab(args) => {
            return plexus::lab::run_command(LabCommand::Lab(args), &experiments::all())
        }
        #[cfg(feature = "lab")]
        Command::LabPeer(args) => {
            return plexus::lab::run_command(LabCommand::LabPeer(args), &experiments::all())
        }
        Command::Ca {
            command: CaCommand::Init { dir, name },
        } => ca_init(&dir, &name),
        Command::Ca {
            command: CaCommand::Issue { ca, name, out },
        } => ca_issue(&ca, &name, &out),
        Command::Keygen { out } => keygen(&out),
        Command::Id { dir } => id(&dir),
        Command::Node { config } => run_node(&config),
        Command::Sim {
            scenario,
            json,
            seed,
        } => sim(&scenario, json.as_deref(), seed),
        Command::Plot { reports, out } => plot(&reports, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sim")]
fn sim(path: &Path, json: Option<&Path>, seed: Option<u64>) -> CliResult {
    use plexus::sim::{run, Scenario};
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let scenario = Scenario::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let seeds = seed.map_or_else(|| scenario.seeds_to_run(), |s| vec![s]);
    let mut reports = Vec::new();
    for seed in seeds {
        let report = run(&scenario, seed)?;
        println!("{report}");
        reports.push(report);
    }
    if let Some(out) = json {
        let text = serde_json::to_string_pretty(&reports)?;
        std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}

#[cfg(feature = "sim")]
fn plot(reports: &[PathBuf], out: &Path) -> CliResult {
    use plexus::sim::{cost_curve_svg, CostPoint};
    let mut points = Vec::new();
    for path in reports {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let list = match value {
            serde_json::Value::Array(list) => list,
            one => vec![one],
        };
        for (i, report) in list.iter().enumerate() {
            points.push(
                CostPoint::from_report(i, report)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
    }
    let svg = cost_curve_svg(&points)?;
    std::fs::write(out, svg).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!("{} point(s) drawn to {}", points.len(), out.display());
    Ok(())
}

#[cfg(not(feature = "sim"))]
fn plot(_: &[PathBuf], _: &Path) -> CliResult {
    Err("this plexus was built without the `sim` feature (it is on by default)".into())
}

#[cfg(not(feature = "sim"))]
fn sim(_: &Path, _: Option<&Path>, _: Option<u64>) -> CliResult {
    Err("this plexus was built without the `sim` feature (it is on by default)".into())
}

fn ca_init(dir: &Path, name: &str) -> CliResult {
    let ca = ClusterCa::generate(name)?;
    ca.save(dir)?;
    eprintln!(
        "cluster CA {name:?} made:\n  {}  give it to every node\n  {}  keep it secret",
        dir.join(CA_CERT_FILE).display(),
        dir.join(CA_KEY_FILE).display(),
    );
    Ok(())
}

fn ca_issue(ca_dir: &Path, name: &str, out: &Path) -> CliResult {
    let ca = ClusterCa::load(ca_dir)?;
    let key_path = out.join(KEY_FILE);
    let reused = key_path.try_exists()?;
    let identity = if reused {
        Identity::load_key(out)?
    } else {
        Identity::generate()?
    };
    let identity = ca.issue(identity, name)?;
    identity.save(out)?;
    eprintln!(
        "node {name:?}: {} ({}), {} signed by {}",
        key_path.display(),
        if reused { "existing key" } else { "new key" },
        out.join(CERT_FILE).display(),
        ca_dir.join(CA_CERT_FILE).display(),
    );
    println!("{}", tls::node_id_hex(&identity.node_id()));
    Ok(())
}

fn keygen(out: &Path) -> CliResult {
    let key_path = out.join(KEY_FILE);
    if key_path.try_exists()? {
        return Err(format!(
            "{} already exists; remove it to make a new identity (that changes the node id)",
            key_path.display()
        )
        .into());
    }
    let identity = Identity::generate()?;
    identity.save(out)?;
    eprintln!(
        "self-signed identity: {}, {}",
        key_path.display(),
        out.join(CERT_FILE).display()
    );
    println!("{}", tls::node_id_hex(&identity.node_id()));
    Ok(())
}

fn id(dir: &Path) -> CliResult {
    let identity = Identity::load(dir)?;
    println!("{}", tls::node_id_hex(&identity.node_id()));
    Ok(())
}

fn run_node(config: &Path) -> CliResult {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let site = SiteConfig::load(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = site.builder()?.start().await?;
        eprintln!(
            "site {} listening on {}",
            tls::node_id_hex(&node.id()),
            node.local_addr()
        );
        println!("{}", node.local_addr());
        for addr in &site.links {
            // A failed first attempt is logged; the link keeps retrying.
            if let Err(e) = node.link(*addr).await {
                tracing::warn!(%addr, error = %e, "link failed; retrying in the background");
                node.keep_linking(*addr);
            }
        }
        wait_for_stop().await?;
        eprintln!("stopping");
        node.shutdown();
        Ok(())
    })
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn wait_for_stop() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
