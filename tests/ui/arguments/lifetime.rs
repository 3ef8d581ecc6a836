use std::borrow::Cow;

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
    pub fn croak(&mut self, by: Cow<'_, str>) {
        self.last = by.into_owned();
    }

    #[shout]
    pub fn wave(&mut self, with: impl Into<String>) {
        self.last = with.into();
    }
}

fn main() {}
