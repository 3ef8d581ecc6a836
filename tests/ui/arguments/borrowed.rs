use plexus::{replicated, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub last: String,
    pub bytes: Vec<u8>,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn croak(&mut self, by: &str) {
        self.last = by.to_owned();
    }

    #[shout]
    pub fn eat(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    #[shout]
    pub fn copy(&mut self, other: &mut Frog) {
        other.last = self.last.clone();
    }

    #[shout]
    pub fn hop(&mut self, words: Vec<&'static str>) {
        self.last = words.concat();
    }
}

fn main() {}
