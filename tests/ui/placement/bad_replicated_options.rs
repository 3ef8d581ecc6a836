use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub croaks: u32,
}

#[replicated(viz = pub, tag = "x")]
impl Frog {
    #[shout]
    pub fn croak(&mut self) {
        self.croaks += 1;
    }
}

fn main() {}
