use plexus::Replicated;
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
pub struct Frog {
    pub croaks: u32,
}

fn main() {}
