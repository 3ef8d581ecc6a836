use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub croaks: u32,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn croak(&mut self) -> u32 {
        self.croaks += 1;
        self.croaks
    }

    // `-> ()` is fine.
    #[shout]
    pub fn hush(&mut self) -> () {
        self.croaks = 0;
    }
}

fn main() {}
