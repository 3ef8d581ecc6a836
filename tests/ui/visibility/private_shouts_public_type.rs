// The generated items take the visibility of the most visible shout: here
// private, while `Frog` is public. `#[replicated(vis = pub)]` is the fix.
use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    croaks: u32,
}

#[replicated]
impl Frog {
    #[shout]
    fn croak(&mut self) {
        self.croaks += 1;
    }
}

fn main() {}
