//! What a `#[shout]` may be, and why.
//!
//! A shout is shipped to every peer as an op and run there by the replica,
//! later, in the global op order, and again after a rollback. Everything
//! below follows from that: it changes the state (`&mut self`), its
//! arguments are owned and serde-able, it is synchronous and returns nothing,
//! and its wire tag is unique within the type.
//!
//! Whether an argument type is serde-able is only known to the type checker:
//! `expand` emits an assertion per argument for that.

use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{FnArg, Lifetime, ReturnType, Signature, Type, TypeReference};

use super::parse::{Block, Shout};
use crate::ctxt::Ctxt;
use crate::names::pretty;

/// The observer method name the generated observer trait keeps for itself.
const RESERVED: &str = "on_stable";

/// Checks every shout of `block`, marking the ones in error as not valid.
pub(crate) fn block(cx: &mut Ctxt, block: &mut Block) {
    // First, as the tags are in the `#[shout]` line, above the signature.
    tag_collisions(cx, &mut block.shouts);
    for shout in &mut block.shouts {
        cx.set_group(shout.group);
        let errors_before = cx.error_count();
        for cfg in &shout.cfgs {
            cx.error_spanned_by(
                cfg,
                "a #[shout] method cannot be conditionally compiled: every peer must agree on \
                 the ops of a type, whatever its features",
            );
        }
        // In the order of the signature: `async unsafe fn name<T>(&mut self,
        // args) -> R where ..`.
        qualifiers(cx, &shout.sig);
        if shout.method.unraw() == RESERVED {
            cx.error_spanned_by(
                &shout.method,
                format!(
                    "`{RESERVED}` is reserved: the generated observer trait calls its \
                     `{RESERVED}` method when an op becomes stable; rename this method \
                     (#[shout(tag = \"{RESERVED}\")] keeps its wire tag)"
                ),
            );
        }
        generics(cx, &shout.sig);
        receiver(cx, &shout.sig);
        arguments(cx, &shout.sig);
        output(cx, &shout.sig);
        if cx.error_count() > errors_before {
            shout.valid = false;
        }
    }
    variant_collisions(cx, &mut block.shouts);
}

/// A shout takes `&mut self`.
fn receiver(cx: &mut Ctxt, sig: &Signature) {
    const MUT_SELF: &str = "a #[shout] method must take `&mut self`";
    let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
        cx.error_at(
            sig.paren_token.span.join(),
            format!(
                "{MUT_SELF}: `{}` has no receiver, so there is no replicated state for it \
                 to change",
                sig.ident
            ),
        );
        return;
    };
    match &*receiver.ty {
        Type::Reference(reference) if is_self(&reference.elem) => {
            if reference.mutability.is_none() {
                cx.error_spanned_by(
                    receiver,
                    format!("{MUT_SELF}: it changes the replicated state"),
                );
            }
        }
        ty if is_self(ty) => cx.error_spanned_by(
            receiver,
            format!("{MUT_SELF}, not `self` by value: every replica changes its own copy in place"),
        ),
        ty => cx.error_spanned_by(
            receiver,
            format!(
                "{MUT_SELF}, not `self: {}`: every replica changes its own copy in place",
                pretty(ty)
            ),
        ),
    }
}

fn is_self(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
}

/// A shout is not `async` or `unsafe`.
fn qualifiers(cx: &mut Ctxt, sig: &Signature) {
    if let Some(asyncness) = sig.asyncness {
        cx.error_spanned_by(
            asyncness,
            "a #[shout] method cannot be `async`: every replica applies ops one after the \
             other, in op order, and runs them again after a rollback; start async work \
             from an observer instead",
        );
    }
    if let Some(unsafety) = sig.unsafety {
        cx.error_spanned_by(
            unsafety,
            "a #[shout] method cannot be `unsafe`: replicas call it for ops from every peer, \
             with no caller to uphold its safety contract",
        );
    }
}

/// A shout is not generic (nor has a `where` clause).
fn generics(cx: &mut Ctxt, sig: &Signature) {
    const GENERIC: &str = "a #[shout] method cannot be generic: every peer decodes its \
                           arguments into one concrete op type";
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, GENERIC);
    } else if let Some(clause) = &sig.generics.where_clause {
        cx.error_spanned_by(clause, GENERIC);
    }
}

/// A shout returns nothing.
fn output(cx: &mut Ctxt, sig: &Signature) {
    if let ReturnType::Type(_, ty) = &sig.output {
        if !matches!(&**ty, Type::Tuple(tuple) if tuple.elems.is_empty()) {
            cx.error_spanned_by(
                &sig.output,
                "a #[shout] method cannot return a value: it runs later on every replica \
                 (and again after a rollback), where nobody receives the result; remove the \
                 return type and read the state with a local method",
            );
        }
    }
}

/// Shout arguments are owned: they travel to every peer.
fn arguments(cx: &mut Ctxt, sig: &Signature) {
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input {
            let mut finder = Borrow::default();
            finder.visit_type(&typed.ty);
            match finder.found {
                Some(Found::Reference(reference)) => {
                    cx.error_spanned_by(&reference, reference_message(&reference));
                }
                Some(Found::Lifetime(lifetime)) => cx.error_spanned_by(
                    &lifetime,
                    format!(
                        "shout arguments travel to every peer: they cannot borrow \
                         (`{lifetime}`); take an owned type"
                    ),
                ),
                Some(Found::ImplTrait(ty)) => cx.error_spanned_by(
                    &ty,
                    "a #[shout] argument cannot be `impl Trait`: every peer decodes it into \
                     one concrete type",
                ),
                None => {}
            }
        }
    }
}

/// "take an owned type (`String` instead of `&str`)", with the best owned
/// type that can be named.
fn reference_message(reference: &TypeReference) -> String {
    let borrowed = pretty(reference);
    let owned = match &*reference.elem {
        Type::Path(path) if path.path.is_ident("str") => "String".to_owned(),
        Type::Slice(slice) => format!("Vec<{}>", pretty(&slice.elem)),
        Type::Path(path) if path.path.is_ident("Path") => "PathBuf".to_owned(),
        elem => pretty(elem),
    };
    format!("shout arguments travel to every peer: take an owned type (`{owned}` instead of `{borrowed}`)")
}

/// The first borrow (or `impl Trait`) in a type.
#[derive(Default)]
struct Borrow {
    found: Option<Found>,
}

enum Found {
    Reference(TypeReference),
    Lifetime(Lifetime),
    ImplTrait(Type),
}

impl<'ast> Visit<'ast> for Borrow {
    fn visit_type(&mut self, ty: &'ast Type) {
        if self.found.is_some() {
            return;
        }
        match ty {
            Type::Reference(reference) => self.found = Some(Found::Reference(reference.clone())),
            Type::ImplTrait(_) => self.found = Some(Found::ImplTrait(ty.clone())),
            _ => syn::visit::visit_type(self, ty),
        }
    }

    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        if self.found.is_none() && lifetime.ident != "static" {
            self.found = Some(Found::Lifetime(lifetime.clone()));
        }
    }
}

/// Two shouts of one type cannot share an op tag: the tag is how a peer
/// knows which method an op calls.
fn tag_collisions(cx: &mut Ctxt, shouts: &mut [Shout]) {
    for index in 0..shouts.len() {
        let (earlier, rest) = shouts.split_at_mut(index);
        let shout = &mut rest[0];
        if !shout.marker_ok {
            continue;
        }
        cx.set_group(shout.group);
        let Some(first) = earlier
            .iter()
            .find(|first| first.marker_ok && first.tag == shout.tag)
        else {
            continue;
        };
        let owner = if first.pinned.is_some() {
            format!("pinned by `{}`", first.method.unraw())
        } else {
            format!("the tag of `{}` (its method name)", first.method.unraw())
        };
        match &shout.pinned {
            Some(pinned) => cx.error_spanned_by(
                pinned,
                format!(
                    "two shouts share the op tag `{}`: it is already {owner}; \
                     pin a different tag",
                    shout.tag
                ),
            ),
            None => cx.error_spanned_by(
                &shout.method,
                format!(
                    "two shouts share the op tag `{}`: it is already {owner}; pin a \
                     different tag for this one with #[shout(tag = \"...\")]",
                    shout.tag
                ),
            ),
        }
        shout.valid = false;
    }
}

/// Two methods that differ only in underscores would get one variant.
fn variant_collisions(cx: &mut Ctxt, shouts: &mut [Shout]) {
    for index in 0..shouts.len() {
        let (earlier, rest) = shouts.split_at_mut(index);
        let shout = &mut rest[0];
        if let Some(first) = earlier.iter().find(|first| first.variant == shout.variant) {
            cx.set_group(shout.group);
            cx.error_spanned_by(
                &shout.method,
                format!(
                    "the op variant of `{}` would be `{}`, which `{}` already has: \
                     rename one of the two methods",
                    shout.method.unraw(),
                    shout.variant,
                    first.method.unraw()
                ),
            );
            shout.valid = false;
        }
    }
}
