//! The macros behind [Plexus](https://docs.rs/plexus) replicated types.
//!
//! **Depend on `plexus`, not on this crate.** `plexus` re-exports the three
//! macros below, and the code they generate names items of `plexus` by their
//! absolute path (`::plexus::Replicated`, `::plexus::Leaf`, ...).
//!
//! ```ignore
//! use plexus::{replicated, Replicated};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Replicated, Clone, Default, Serialize, Deserialize)]
//! #[plexus(tag = "demo.Frog")]
//! pub struct Frog { pub croaks: u32, pub last: Option<String> }
//!
//! #[replicated]
//! impl Frog {
//!     #[shout]
//!     pub fn croak(&mut self, by: String) { self.croaks += 1; self.last = Some(by); }
//!
//!     #[shout(commutative)]
//!     pub fn bump(&mut self, n: u32) { self.croaks += n; }
//!
//!     #[shout(tag = "jmp")]
//!     pub fn jump(&mut self, x: i32, y: i32) { let _ = (x, y); }
//!
//!     pub fn summary(&self) -> String { format!("{} croaks", self.croaks) }
//! }
//! ```
//!
//! # What is generated
//!
//! `#[derive(Replicated)]` implements `plexus::TypeTag` from the
//! `#[plexus(tag = "...")]` attribute: the name of the type on the wire. It
//! works on structs and enums that are not generic.
//!
//! `#[replicated]` on the type's inherent `impl` block keeps the block as it
//! is (minus the `#[shout]` markers) and adds, for a type `Frog`:
//!
//! * `FrogOp`: an enum with one variant per `#[shout]` method, named after the
//!   method in UpperCamelCase, holding its arguments (`Croak(String)`,
//!   `Jump(i32, i32)`, `Reset`). It is `Clone`, `Debug` and serde-serializable;
//!   each variant is encoded under its **wire tag**: the method name, or the
//!   tag pinned with `#[shout(tag = "...")]` so that renaming the method does
//!   not change the wire. It implements `plexus::Operation`.
//! * `FrogObserver`: a trait with one default no-op method per shout, taking
//!   the state and the shout's arguments by reference plus the
//!   `plexus::Delivery`, and an `on_stable` hook. Each peer implements it
//!   with its own local reaction.
//! * `impl plexus::Replicated for Frog`: `apply` calls the shout method,
//!   `notify` calls the observer method of the same name.
//! * `FrogLeafExt`, implemented for `plexus::Leaf<Frog>`: one
//!   `shout_<method>(..)` per shout, and `observe(observer)`.
//!
//! The generated items take the visibility of the most visible `#[shout]`
//! method, or the one given with `#[replicated(vis = pub)]`. A type more
//! visible than all its shouts (a `pub` type whose shouts are private) needs
//! the option: its public `Replicated` impl cannot name a private `FrogOp`
//! (rustc's E0446).
//!
//! `#[shout]` marks a method of a `#[replicated]` impl block:
//! `#[shout]`, `#[shout(commutative)]` (the op commutes with every op of the
//! type, so replicas apply it on arrival) and `#[shout(tag = "...")]`. Used
//! anywhere else it is a compile error.
//!
//! # Diagnostics
//!
//! Every misuse is a compile error pointing at the offending tokens, and all
//! of them are reported at once. The annotated item is always emitted again,
//! so the rest of the crate (and the IDE) keeps working while it is fixed.

mod ctxt;
mod names;
mod replicated;
mod shout;
mod tag;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `plexus::TypeTag` from `#[plexus(tag = "...")]`.
///
/// The tag names the type on the wire: every peer must use the same tag for
/// the same type, and it must not change when the type is renamed.
///
/// ```ignore
/// #[derive(Replicated, Clone, Default, Serialize, Deserialize)]
/// #[plexus(tag = "demo.Frog")]
/// pub struct Frog { pub croaks: u32 }
/// ```
#[proc_macro_derive(Replicated, attributes(plexus))]
pub fn derive_replicated(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    tag::expand(&input).into()
}

/// Generates the op enum, the observer trait, the `plexus::Replicated` impl
/// and the leaf extension trait from the `#[shout]` methods of an inherent
/// `impl` block.
///
/// Options: `#[replicated(vis = pub)]` sets the visibility of the generated
/// items (by default, that of the most visible `#[shout]` method).
#[proc_macro_attribute]
pub fn replicated(args: TokenStream, item: TokenStream) -> TokenStream {
    replicated::expand(args.into(), item.into()).into()
}

/// Marks a method of a `#[replicated]` impl block as a shout: a call that
/// runs on every replica.
///
/// `#[replicated]` consumes these markers; this macro only runs when a
/// `#[shout]` is used elsewhere, and reports that as an error.
#[proc_macro_attribute]
pub fn shout(args: TokenStream, item: TokenStream) -> TokenStream {
    shout::expand(args.into(), item.into()).into()
}
