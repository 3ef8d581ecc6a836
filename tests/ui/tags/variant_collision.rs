use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub x: i32,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn jump_high(&mut self) {}

    #[shout(tag = "jump_high_2")]
    #[allow(non_snake_case)]
    pub fn jumpHigh(&mut self) {}
}

fn main() {}
