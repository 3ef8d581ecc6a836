//! Starting the peer processes: a throwaway cluster CA, one identity and
//! one data directory per peer, and the children themselves.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, ChildStdin, Command};

use super::wire::CONTROL_ENV;
use super::LabError;
use crate::tls::{ClusterCa, Identity};

/// A running peer process.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    pub peer: u32,
    pub child: Child,
    /// The write end of its standard input: dropping it tells the peer
    /// the lab is gone.
    pub lifeline: Option<ChildStdin>,
    pub exited: Option<std::process::ExitStatus>,
}

/// What every peer process is started with.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub experiment: &'a str,
    pub budgets: &'a [u64],
    pub interval_ms: u64,
    pub seed: u64,
    pub control: SocketAddr,
    /// The temporary directory for the CA and the peers' data.
    pub scratch: &'a Path,
    /// Where the peers' logs go.
    pub logs: &'a Path,
}

fn setup(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Setup(format!("{what}: {e}"))
}

/// Makes the CA and the peers' identities under `scratch`: `ca/`, and
/// `peer-N/` for each.
pub(crate) fn identities(scratch: &Path, peers: u32) -> Result<(), LabError> {
    let ca = ClusterCa::generate("plexus lab").map_err(|e| setup("making the lab's CA", e))?;
    ca.save(&scratch.join("ca"))
        .map_err(|e| setup("saving the lab's CA", e))?;
    for peer in 1..=peers {
        let identity = Identity::generate().map_err(|e| setup("making a key", e))?;
        let identity = ca
            .issue(identity, &format!("peer-{peer}"))
            .map_err(|e| setup("issuing a certificate", e))?;
        identity
            .save(&peer_dir(scratch, peer))
            .map_err(|e| setup("saving an identity", e))?;
    }
    Ok(())
}

fn peer_dir(scratch: &Path, peer: u32) -> PathBuf {
    scratch.join(format!("peer-{peer}"))
}

/// Starts peer `peer`: this same program, `lab-peer`, its output to
/// `logs/peer-N.log`.
pub(crate) fn spawn(launch: &Launch<'_>, peer: u32) -> Result<PeerProcess, LabError> {
    let exe = std::env::current_exe().map_err(|e| setup("finding this program", e))?;
    let log_path = launch.logs.join(format!("peer-{peer}.log"));
    let log = File::create(&log_path).map_err(|e| setup(&log_path.display().to_string(), e))?;
    let err_log = log
        .try_clone()
        .map_err(|e| setup(&log_path.display().to_string(), e))?;
    let budgets: Vec<String> = launch.budgets.iter().map(u64::to_string).collect();
    let mut command = Command::new(exe);
    command
        .arg("lab-peer")
        .args(["--experiment", launch.experiment])
        .args(["--peer", &peer.to_string()])
        .args(["--budgets", &budgets.join(",")])
        .args(["--interval-ms", &launch.interval_ms.to_string()])
        .args(["--seed", &launch.seed.to_string()])
        .arg("--dir")
        .arg(peer_dir(launch.scratch, peer))
        .arg("--ca")
        .arg(launch.scratch.join("ca"))
        .env(CONTROL_ENV, launch.control.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    let mut child = command
        .spawn()
        .map_err(|e| setup(&format!("starting peer {peer}"), e))?;
    let lifeline = child.stdin.take();
    Ok(PeerProcess {
        peer,
        child,
        lifeline,
        exited: None,
    })
}

/// Each peer's seeds: peer 1 has none, every other links to up to two
/// distinct peers numbered below it, drawn from `rng`. The graph is
/// connected, with no hub.
pub(crate) fn seeds(peers: u32, rng: &mut impl rand::Rng) -> Vec<Vec<u32>> {
    (1..=peers)
        .map(|peer| {
            let mut picks = Vec::new();
            if peer > 1 {
                let first = rng.random_range(1..peer);
                picks.push(first);
                if peer > 2 {
                    let second = rng.random_range(1..peer - 1);
                    picks.push(if second >= first { second + 1 } else { second });
                }
            }
            picks
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn seeds_connect_every_peer_without_a_hub() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let seeds = seeds(64, &mut rng);
        assert!(seeds[0].is_empty());
        // Union-find over the links: one component.
        let mut parent: Vec<usize> = (0..=64).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                i = parent[i];
            }
            i
        }
        for (i, picks) in seeds.iter().enumerate() {
            let peer = i as u32 + 1;
            assert!(picks.len() <= 2 && picks.iter().all(|p| *p < peer && *p >= 1));
            if picks.len() == 2 {
                assert_ne!(picks[0], picks[1]);
            }
            for p in picks {
                let (a, b) = (
                    root(&mut parent, peer as usize),
                    root(&mut parent, *p as usize),
                );
                parent[a] = b;
            }
        }
        let r = root(&mut parent, 1);
        assert!((1..=64).all(|p| root(&mut parent, p) == r));
        let mut degree = vec![0usize; 65];
        for (i, picks) in seeds.iter().enumerate() {
            degree[i + 1] += picks.len();
            picks.iter().for_each(|p| degree[*p as usize] += 1);
        }
        assert!(*degree.iter().max().unwrap() < 32, "no hub: {degree:?}");
    }
}
