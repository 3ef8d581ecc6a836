//! What the lab and its peer processes say to each other: one JSON object a
//! line over a loopback TCP connection the lab listens on.
//!
//! The peer's standard input is not used for messages: it is a lifeline.
//! The lab holds its write end; when the lab exits, however it exits, the
//! pipe closes and the peer stops. That is what keeps orphans away.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The environment variable a peer process finds the lab's control
/// address in.
pub(crate) const CONTROL_ENV: &str = "PLEXUS_LAB_CONTROL";

/// The longest line either side accepts; a longer one ends the connection.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// From a peer to the lab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToLab {
    /// The first line: who this is, where it listens.
    Hello {
        peer: u32,
        id: String,
        addr: SocketAddr,
    },
    /// A target's progress.
    Target {
        name: String,
        current: u64,
        goal: u64,
    },
    /// The peer's periodic measurements.
    Stats(PeerStats),
    /// The experiment's code called `wait_for_experiment_end`: this peer's
    /// part is over (it is done once its targets are met too).
    Waiting,
    /// The experiment's code returned: `error` is its error, if any.
    Finished { error: Option<String> },
    /// The last line: the node is shut down; what the process used.
    Bye {
        cpu_ms: Option<u64>,
        max_rss_kib: Option<u64>,
    },
}

/// A peer's measurements, sent a few times a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PeerStats {
    /// Ops the node has seen (its own and its peers').
    pub ops: u64,
    /// Traffic per link, by the peer's node id (hex).
    pub links: Vec<LinkStats>,
    /// Peers this node's failure detector suspects now.
    pub suspected: Vec<String>,
    /// Peers it declared down (and not back since).
    pub down: Vec<String>,
}

/// One link's traffic, as the sending side counts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkStats {
    pub peer: String,
    pub sent_messages: u64,
    pub sent_bytes: u64,
}

/// From the lab to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToPeer {
    /// Every peer said hello: here is who is where; link to `seeds` and
    /// run the experiment.
    Start {
        roster: Vec<RosterEntry>,
        seeds: Vec<SocketAddr>,
    },
    /// Every peer reached its targets (or the run timed out): the
    /// experiment is over.
    End,
}

/// One peer of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// Its number, from 1.
    pub peer: u32,
    /// Its node id, in hex.
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One line of JSON, with its newline.
pub(crate) fn line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    let mut out = serde_json::to_vec(msg).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_round_trip() {
        let msgs = [
            ToLab::Hello {
                peer: 3,
                id: "ab".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            },
            ToLab::Target {
                name: "x".into(),
                current: 1,
                goal: 2,
            },
            ToLab::Waiting,
            ToLab::Finished { error: None },
        ];
        for msg in msgs {
            let line = line(&msg);
            assert_eq!(line.last(), Some(&b'\n'));
            let back: ToLab = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
            assert_eq!(back, msg);
        }
    }

    proptest! {
        /// No line, however mangled, makes the lab's side panic.
        #[test]
        fn any_line_is_safe(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            crate::lab::fuzzing::control_line(&line);
        }

        /// Nor does a well-formed message with any values in it.
        #[test]
        fn any_stats_are_safe(ops in any::<u64>(), sent in any::<u64>(), bytes in any::<u64>()) {
            let msg = ToLab::Stats(PeerStats {
                ops,
                links: vec![LinkStats { peer: "01".into(), sent_messages: sent, sent_bytes: bytes }],
                suspected: vec!["01".into()],
                down: vec!["zz".into()],
            });
            let line = line(&msg);
            crate::lab::fuzzing::control_line(&line[..line.len() - 1]);
        }
    }
}
