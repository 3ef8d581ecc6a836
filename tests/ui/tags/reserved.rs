use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub stable: bool,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn on_stable(&mut self) {
        self.stable = true;
    }
}

fn main() {}
