use std::rc::Rc;

use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub last: String,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn croak(&mut self, by: Rc<str>) {
        self.last = by.to_string();
    }
}

fn main() {}
