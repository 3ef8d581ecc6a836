//! `#[shout]` on its own.
//!
//! Inside a `#[replicated]` impl block the `#[shout]` markers are consumed by
//! `#[replicated]`, which runs first (outer attributes expand before the
//! items they contain). So this macro only ever runs on a misplaced
//! `#[shout]`: it re-emits the item unchanged and reports the mistake.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{FnArg, ImplItemFn, Item};

/// Expands a misplaced `#[shout]`: the item, plus an error at its head.
pub(crate) fn expand(_args: TokenStream, item: TokenStream) -> TokenStream {
    let (head, is_method) = item_head(&item);
    let message = if is_method {
        "#[shout] only works on a method inside a #[replicated] impl block: \
         add `#[replicated]` to the impl block"
    } else {
        "#[shout] only works on a method inside a #[replicated] impl block"
    };
    let error = syn::Error::new_spanned(head, message).into_compile_error();
    quote! { #item #error }
}

/// The tokens to point at (a function's signature, an item's keyword and
/// name), and whether the item is a method with a `self` receiver.
pub(crate) fn item_head(item: &TokenStream) -> (TokenStream, bool) {
    if let Ok(function) = syn::parse2::<ImplItemFn>(item.clone()) {
        let is_method = matches!(function.sig.inputs.first(), Some(FnArg::Receiver(_)));
        return (function.sig.into_token_stream(), is_method);
    }
    let head = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(item)) => {
            let (keyword, name) = (item.struct_token, item.ident);
            quote! { #keyword #name }
        }
        Ok(Item::Enum(item)) => {
            let (keyword, name) = (item.enum_token, item.ident);
            quote! { #keyword #name }
        }
        Ok(Item::Impl(item)) => {
            let (keyword, ty) = (item.impl_token, item.self_ty);
            quote! { #keyword #ty }
        }
        _ => item.clone(),
    };
    (head, false)
}
