//! Your own lab: a program with its own experiments, run the way
//! `plexus lab` runs the built-in ones.
//!
//! ```text
//! cargo run --example lab -- lab guestbook --peers 6      # watch the page it prints
//! cargo run --example lab -- lab --list
//! ```
//!
//! The experiment: every peer signs one shared guestbook `messages` times
//! (`--messages`, an expression of `peer`); a peer is done once its copy
//! holds every signature. The lab starts the peers as processes of this
//! same program (the `lab-peer` command), so the experiment is registered
//! once, in `main`, for both sides.

use std::collections::BTreeMap;
use std::process::ExitCode;

use plexus::lab::{ExperimentResult, Experiments, LabContext};
use plexus::{replicated, Leaf, Replicated};
use serde::{Deserialize, Serialize};

/// Signatures by peer.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "example.Guestbook")]
pub struct Guestbook {
    /// How often each peer signed.
    pub signed: BTreeMap<u32, u64>,
}

#[replicated]
impl Guestbook {
    /// Sign once more.
    #[shout]
    pub fn sign(&mut self, peer: u32) {
        *self.signed.entry(peer).or_default() += 1;
    }

    /// Signatures in all.
    pub fn total(&self) -> u64 {
        self.signed.values().sum()
    }
}

async fn guestbook(ctx: LabContext) -> ExperimentResult {
    let book: Leaf<Guestbook> = ctx.object("guests", Guestbook::default).await?;
    for _ in 0..ctx.messages() {
        ctx.pace().await;
        book.shout_sign(ctx.peer()).await?;
    }
    let goal = ctx.total_messages();
    loop {
        let now = book.read(Guestbook::total);
        ctx.report_target("signatures", now, goal);
        if now >= goal {
            break;
        }
        book.wait_until(|b| b.total() != now).await;
    }
    ctx.wait_for_experiment_end().await;
    Ok(())
}

fn main() -> ExitCode {
    plexus::lab::main(Experiments::new().add(
        "guestbook",
        "every peer signs one shared guestbook; done when each copy has every signature",
        guestbook,
    ))
}
