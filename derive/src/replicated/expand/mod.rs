//! Generating the items of a `#[replicated]` block, one file per item:
//! the op enum ([`op`]), the observer trait and the `Replicated` impl
//! ([`observer`]), the leaf extension trait ([`leaf`]).
//!
//! Only the valid shouts are generated. A shout in error is left out (its
//! error is reported), so one mistake does not bury the rest of the crate
//! under follow-up errors about missing variants and methods.

mod leaf;
mod observer;
mod op;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Type, VisRestricted, Visibility};

use super::parse::{Block, Shout};

/// What the generators share: the names of the generated items and the
/// shouts to generate.
pub(crate) struct Gen<'a> {
    /// The replicated type, as written in the impl header.
    pub(crate) ty: &'a Type,
    /// The replicated type's name (`Frog`).
    pub(crate) name: &'a Ident,
    /// `FrogOp`.
    pub(crate) op: Ident,
    /// `FrogObserver`.
    pub(crate) observer: Ident,
    /// `FrogLeafExt`.
    pub(crate) leaf_ext: Ident,
    /// The visibility of every generated item.
    pub(crate) vis: Visibility,
    /// The valid shouts, in declaration order.
    pub(crate) shouts: Vec<&'a Shout>,
}

/// Everything `#[replicated]` adds next to `block`; nothing if the block
/// itself is unusable.
pub(crate) fn items(block: &Block) -> TokenStream {
    let Some(name) = block.name.as_ref().filter(|_| block.expandable) else {
        return TokenStream::new();
    };
    let gen = Gen {
        ty: &block.self_ty,
        name,
        op: format_ident!("{}Op", name),
        observer: format_ident!("{}Observer", name),
        leaf_ext: format_ident!("{}LeafExt", name),
        vis: block
            .vis
            .clone()
            .unwrap_or_else(|| most_visible(&block.shouts)),
        shouts: block.shouts.iter().filter(|shout| shout.valid).collect(),
    };
    let op = op::items(&gen);
    let observer = observer::items(&gen);
    let leaf = leaf::items(&gen);
    let assertions = argument_assertions(&gen);
    // The assertions come first: when an argument cannot travel, their
    // errors (at the argument's type) are the first the user reads.
    quote! {
        #assertions
        #op
        #observer
        #leaf
    }
}

/// The visibility of the most visible shout: `pub` > `pub(crate)` > other
/// restrictions > private. Two different restrictions (`pub(super)` and
/// `pub(in crate::a)`) give `pub(crate)`, which covers both.
fn most_visible(shouts: &[Shout]) -> Visibility {
    fn rank(vis: &Visibility) -> u8 {
        match vis {
            Visibility::Public(_) => 3,
            Visibility::Restricted(VisRestricted { path, .. }) if path.is_ident("crate") => 2,
            Visibility::Restricted(VisRestricted { path, .. }) if path.is_ident("self") => 0,
            Visibility::Restricted(_) => 1,
            Visibility::Inherited => 0,
        }
    }
    let same = |a: &Visibility, b: &Visibility| quote!(#a).to_string() == quote!(#b).to_string();
    let mut best = Visibility::Inherited;
    for shout in shouts {
        let (current, candidate) = (rank(&best), rank(&shout.vis));
        if candidate > current {
            best = shout.vis.clone();
        } else if candidate == 1 && current == 1 && !same(&best, &shout.vis) {
            best = syn::parse_quote!(pub(crate));
        }
    }
    best
}

/// One assertion per argument that its type can travel: serde-able, owned,
/// clonable, thread-safe. Each is spanned at the argument's type, so a type
/// that cannot travel is reported where it is written.
fn argument_assertions(gen: &Gen<'_>) -> TokenStream {
    let assertions = gen.shouts.iter().flat_map(|shout| &shout.args).map(|arg| {
        let ty = &arg.ty;
        quote_spanned! {ty.span()=>
            let _ = assert_shout_argument::<#ty>;
        }
    });
    quote! {
        const _: () = {
            fn assert_shout_argument<T>()
            where
                T: ::plexus::__private::serde::Serialize
                    + ::plexus::__private::serde::de::DeserializeOwned
                    + ::core::clone::Clone
                    + ::core::marker::Send
                    + ::core::marker::Sync
                    + 'static,
            {
            }
            #(#assertions)*
        };
    }
}

/// `#[doc = ..]` attributes, one per line of `text`.
pub(crate) fn doc(text: &str) -> TokenStream {
    text.lines()
        .map(|line| {
            let line = if line.is_empty() {
                String::new()
            } else {
                format!(" {line}")
            };
            quote! { #[doc = #line] }
        })
        .collect()
}

/// The shout method's own doc comments, after a blank line (or nothing).
pub(crate) fn method_docs(shout: &Shout) -> TokenStream {
    if shout.docs.is_empty() {
        return TokenStream::new();
    }
    let docs: &[Attribute] = &shout.docs;
    quote! {
        #[doc = ""]
        #(#docs)*
    }
}

/// `__arg0, __arg1, ..`: the names the generated `match` arms bind the
/// arguments of an op to (never a user's name, so never a clash with the
/// generated functions' own parameters).
pub(crate) fn bindings(shout: &Shout) -> Vec<Ident> {
    (0..shout.args.len())
        .map(|index| Ident::new(&format!("__arg{index}"), Span::call_site()))
        .collect()
}

/// `Croak(..)` or `Reset`: how the op is written in `Debug` and docs.
pub(crate) fn shape(shout: &Shout) -> String {
    if shout.args.is_empty() {
        shout.variant.to_string()
    } else {
        format!("{}(..)", shout.variant)
    }
}

/// `Frog::croak`: the shout method, for docs.
pub(crate) fn method_path(gen: &Gen<'_>, shout: &Shout) -> String {
    use syn::ext::IdentExt;
    format!("{}::{}", gen.name, shout.method.unraw())
}
