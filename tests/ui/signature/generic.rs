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
    pub fn croak<S: ToString>(&mut self, by: S) {
        self.last = by.to_string();
    }

    #[shout]
    pub fn hop(&mut self, to: String)
    where
        String: Clone,
    {
        self.last = to;
    }
}

fn main() {}
