// Paths, enums as state, patterns, `Self` arguments, explicit visibility.
#![deny(warnings, missing_docs)]
//! A crate with a public replicated type whose shouts are private.

mod pond {
    use plexus::{replicated, Replicated};
    use serde::{Deserialize, Serialize};

    /// A light: an enum as replicated state.
    #[derive(Replicated, Clone, Copy, Default, PartialEq, Debug, Serialize, Deserialize)]
    #[plexus(tag = "demo.Light")]
    pub enum Light {
        /// On.
        On,
        /// Off.
        #[default]
        Off,
    }

    #[replicated(vis = pub)]
    impl crate::pond::Light {
        #[plexus::shout]
        fn toggle(&mut self) {
            *self = match self {
                Light::On => Light::Off,
                Light::Off => Light::On,
            };
        }

        #[shout]
        fn set(&mut self, (on, _why): (bool, String)) {
            *self = if on { Light::On } else { Light::Off };
        }

        #[shout]
        fn copy_from(&mut self, other: Self, others: Vec<Self>) {
            *self = others.last().copied().unwrap_or(other);
        }
    }

    /// A counter whose shouts are visible in the crate only.
    #[derive(Replicated, Clone, Default, Serialize, Deserialize)]
    #[plexus(tag = "demo.Counter")]
    pub(crate) struct Counter {
        pub(crate) n: u64,
    }

    #[replicated]
    impl Counter {
        #[shout(commutative)]
        pub(crate) fn add(&mut self, n: u64) {
            self.n += n;
        }

        #[shout]
        pub(super) fn clear(&mut self) {
            self.n = 0;
        }
    }
}

pub use pond::{Light, LightLeafExt, LightObserver, LightOp};

fn main() {
    use plexus::{Operation, Replicated};

    let mut light = Light::default();
    light.apply(&LightOp::Toggle);
    light.apply(&LightOp::Set((false, "night".to_owned())));
    light.apply(&LightOp::CopyFrom(Light::On, vec![]));
    assert_eq!(light, Light::On);
    assert_eq!(LightOp::TAGS, ["toggle", "set", "copy_from"]);

    let mut counter = pond::Counter::default();
    counter.apply(&pond::CounterOp::Add(2));
    assert!(pond::CounterOp::Add(2).is_commutative());
    counter.apply(&pond::CounterOp::Clear);
    assert_eq!(counter.n, 0);
}
