//! `#[replicated]` on an inherent impl block: parse, check, expand.
//!
//! * [`parse`] reads the block into a model and strips the `#[shout]`
//!   markers from it;
//! * [`check`] reports every shout that cannot be replicated;
//! * [`mod@expand`] generates the op enum, the observer trait, the `Replicated`
//!   impl and the leaf extension trait from the valid shouts.
//!
//! The impl block itself is always emitted (without the markers), with the
//! errors beside it.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Item, ItemImpl};

use crate::ctxt::Ctxt;
use crate::shout::item_head;

/// Expands `#[replicated(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let options = parse::options(&mut cx, args);
    let mut impl_block: ItemImpl = match syn::parse2(item.clone()) {
        Ok(impl_block) => impl_block,
        Err(_) => return not_an_impl(cx, item),
    };
    let mut block = parse::block(&mut cx, &mut impl_block, options);
    check::block(&mut cx, &mut block);
    let generated = expand::items(&block);
    let errors = cx.into_compile_errors();
    quote! {
        #impl_block
        #generated
        #errors
    }
}

/// `#[replicated]` on something other than an impl block: the item as it
/// is, plus the error.
fn not_an_impl(mut cx: Ctxt, item: TokenStream) -> TokenStream {
    let (head, _) = item_head(&item);
    let message = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(_) | Item::Enum(_)) => {
            "#[replicated] goes on the type's impl block (`#[replicated] impl Frog { .. }`); \
             the type itself takes `#[derive(Replicated)]`"
        }
        _ => "#[replicated] goes on the inherent impl block of a type: `#[replicated] impl Frog { .. }`",
    };
    cx.error_spanned_by(head, message);
    let errors = cx.into_compile_errors();
    quote! {
        #item
        #errors
    }
}
