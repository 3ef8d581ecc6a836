// The frog of the design document, with every kind of shout.
use plexus::{replicated, Delivery, Leaf, Operation, Replicated, TypeTag};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    pub croaks: u32,
    pub last: Option<String>,
    pub x: i32,
    pub y: i32,
}

#[replicated]
impl Frog {
    /// The frog croaks.
    #[shout]
    pub fn croak(&mut self, by: String) {
        self.croaks += 1;
        self.last = Some(by);
    }

    #[shout(commutative)]
    pub fn bump(&mut self, n: u32) {
        self.croaks += n;
    }

    #[shout(tag = "jmp")]
    pub fn jump(&mut self, x: i32, y: i32) {
        self.x += x;
        self.y += y;
    }

    #[shout]
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    #[shout]
    pub fn r#move(&mut self, r#type: u8) {
        self.x += i32::from(r#type);
    }

    pub fn summary(&self) -> String {
        format!("{} croaks", self.croaks)
    }
}

struct Printer;

impl FrogObserver for Printer {
    fn croak(&mut self, frog: &Frog, by: &String, delivery: &Delivery) {
        println!("{by} croaked ({}) in {}", frog.summary(), delivery.op);
    }

    fn r#move(&mut self, _: &Frog, r#type: &u8, _: &Delivery) {
        println!("moved by {type}", type = r#type);
    }
}

#[allow(dead_code)]
async fn shout_all(kermit: &Leaf<Frog>) -> Result<(), plexus::ShoutError> {
    kermit.shout_croak("amy".into()).await?;
    kermit.shout_bump(2).await?;
    kermit.shout_jump(1, -1).await?;
    kermit.shout_reset().await?;
    kermit.shout_move(3).await?;
    kermit.observe(Printer);
    Ok(())
}

fn main() {
    assert_eq!(Frog::TYPE_TAG, "demo.Frog");
    assert_eq!(FrogOp::TAGS, ["croak", "bump", "jmp", "reset", "move"]);
    let mut frog = Frog::default();
    frog.apply(&FrogOp::Move(2));
    assert_eq!(frog.x, 2);
}
