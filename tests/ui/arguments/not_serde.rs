use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct Pebble;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub pebbles: u32,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn swallow(&mut self, count: u32, pebble: Pebble) {
        let _ = pebble;
        self.pebbles += count;
    }
}

fn main() {}
