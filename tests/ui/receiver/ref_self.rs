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
    pub fn croak(&self, by: String) {
        println!("{by} {}", self.croaks);
    }
}

fn main() {}
