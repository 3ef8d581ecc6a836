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
    pub unsafe fn croak(&mut self) {
        self.croaks += 1;
    }
}

fn main() {}
