use plexus::shout;

pub struct Frog {
    pub croaks: u32,
}

impl Frog {
    #[shout]
    pub fn croak(&mut self) {
        self.croaks += 1;
    }
}

#[shout]
pub fn croak(frog: &mut Frog) {
    frog.croaks += 1;
}

fn main() {}
