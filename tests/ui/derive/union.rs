use plexus::Replicated;

#[derive(Replicated, Clone, Copy)]
#[plexus(tag = "demo.Bits")]
pub union Bits {
    pub int: u32,
    pub float: f32,
}

fn main() {}
