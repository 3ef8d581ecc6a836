// Every mistake is reported in one pass, and the valid shout (`croak`) is
// still generated: `FrogOp::Croak` and `shout_croak` resolve.
use plexus::{replicated, Leaf, Replicated};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub croaks: u32,
}

#[replicated]
impl Frog {
    #[shout]
    pub fn croak(&mut self, by: String) {
        let _ = by;
        self.croaks += 1;
    }

    #[shout(tag = "croak")]
    pub async fn look(&self, at: &str) -> bool {
        at.is_empty()
    }

    #[shout(comutative)]
    pub fn on_stable<T>(&mut self) {}
}

pub fn use_it(leaf: &Leaf<Frog>) {
    use plexus::Operation;
    let _ = FrogOp::Croak(String::new()).tag();
    let _ = FrogLeafExt::shout_croak(leaf, "amy".to_owned());
}

fn main() {}
