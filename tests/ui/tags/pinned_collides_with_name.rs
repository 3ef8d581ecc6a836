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
    pub fn jump(&mut self, dx: i32) {
        self.x += dx;
    }

    // Was `jump` before a rename: the pinned tag now clashes.
    #[shout(tag = "jump")]
    pub fn leap(&mut self, dx: i32) {
        self.x += 2 * dx;
    }

    #[shout(tag = "hop")]
    pub fn skip(&mut self) {}

    #[shout]
    pub fn hop(&mut self) {}
}

fn main() {}
