use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub x: i32,
}

#[replicated]
impl Frog {
    #[shout(comutative)]
    pub fn bump(&mut self) {}

    #[shout(order = "owner")]
    pub fn own(&mut self) {}

    #[shout(commutative = true)]
    pub fn add(&mut self) {}

    #[shout(tag = "")]
    pub fn empty(&mut self) {}

    #[shout(tag = "two words")]
    pub fn spaced(&mut self) {}

    #[shout(tag = jump)]
    pub fn bare(&mut self) {}

    #[shout(tag = "a", tag = "b")]
    pub fn twice(&mut self) {}

    #[shout = "x"]
    pub fn assigned(&mut self) {}

    #[shout]
    #[shout(commutative)]
    pub fn marked_twice(&mut self) {}
}

fn main() {}
