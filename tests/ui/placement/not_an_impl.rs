use plexus::replicated;

#[replicated]
pub struct Frog {
    pub croaks: u32,
}

#[replicated]
pub fn croak() {}

fn main() {}
