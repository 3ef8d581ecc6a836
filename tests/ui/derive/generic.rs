use plexus::Replicated;
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Bag")]
pub struct Bag<T> {
    pub items: Vec<T>,
}

fn main() {}
