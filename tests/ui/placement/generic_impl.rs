use std::marker::PhantomData;

use plexus::replicated;

pub struct Bag<T> {
    pub count: u32,
    marker: PhantomData<T>,
}

#[replicated]
impl<T> Bag<T> {
    #[shout]
    pub fn add(&mut self) {
        self.count += 1;
    }
}

pub struct Box2<T>(T);

#[replicated]
impl Box2<u8> {
    #[shout]
    pub fn add(&mut self) {
        self.0 += 1;
    }
}

fn main() {}
