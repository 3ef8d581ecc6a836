use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub x: i32,
}

#[replicated]
impl Frog {
    #[shout(tag = "jmp")]
    pub fn jump(&mut self, dx: i32) {
        self.x += dx;
    }

    #[shout(tag = "jmp")]
    pub fn leap(&mut self, dx: i32) {
        self.x += 2 * dx;
    }
}

fn main() {}
