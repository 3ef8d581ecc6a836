//! `#[derive(Replicated)]`: the wire type tag.
//!
//! Reads `#[plexus(tag = "...")]` and implements `plexus::TypeTag`. Structs
//! and enums are accepted (the tag does not care about the shape); generic
//! types and unions are not.

use proc_macro2::TokenStream;
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::{Data, DeriveInput, Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::ctxt::Ctxt;
use crate::names::{did_you_mean, tag_problem};

/// The keys `#[plexus(..)]` accepts.
const KEYS: &[&str] = &["tag"];

/// Expands `#[derive(Replicated)]` on `input`.
pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::new();
    let tag = parse_tag(&mut cx, input);
    check_shape(&mut cx, input);

    let name = &input.ident;
    if !cx.has_errors() {
        let tag = tag.expect("a type without errors has a tag");
        return quote! {
            #[automatically_derived]
            impl ::plexus::TypeTag for #name {
                const TYPE_TAG: &'static str = #tag;
            }
        };
    }

    // A placeholder impl keeps the rest of the crate (the `#[replicated]`
    // impl, uses of the type) free of follow-up errors while this is fixed.
    // It never runs: the crate does not compile.
    let placeholder = input.generics.params.is_empty().then(|| {
        quote! {
            #[automatically_derived]
            impl ::plexus::TypeTag for #name {
                const TYPE_TAG: &'static str = "";
            }
        }
    });
    let errors = cx.into_compile_errors();
    quote! { #errors #placeholder }
}

/// The tag from `#[plexus(tag = "...")]`, if given and valid.
fn parse_tag(cx: &mut Ctxt, input: &DeriveInput) -> Option<LitStr> {
    let mut tag: Option<LitStr> = None;
    let mut saw_tag = false;
    let errors_before = cx.error_count();
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("plexus"))
    {
        if !matches!(attr.meta, Meta::List(_)) {
            cx.error_spanned_by(attr, "expected `#[plexus(tag = \"...\")]`");
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("tag") {
                let value: Expr = meta.value()?.parse()?;
                if saw_tag {
                    cx.error_spanned_by(&meta.path, "duplicate `tag`: give the type one tag");
                    return Ok(());
                }
                saw_tag = true;
                tag = tag_literal(cx, &value);
            } else {
                unknown_key(cx, &meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    // A malformed `#[plexus]` was reported already: no need to add that the
    // tag is missing.
    if !saw_tag && cx.error_count() == errors_before {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "`{name}` has no wire type tag: add `#[plexus(tag = \"...\")]` below the derive, \
                 e.g. `#[plexus(tag = \"my_app.{name}\")]`; the tag names the type on the \
                 wire, so it must stay the same when the type is renamed",
                name = input.ident
            ),
        );
    }
    tag
}

/// The tag literal of `tag = <value>`, reporting a value that is not a
/// usable tag.
fn tag_literal(cx: &mut Ctxt, value: &Expr) -> Option<LitStr> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        cx.error_spanned_by(
            value,
            "the type tag must be a string literal: `tag = \"demo.Frog\"`",
        );
        return None;
    };
    match tag_problem(&lit.value()) {
        Some(problem) => {
            cx.error_spanned_by(lit, format!("the type tag {problem}"));
            None
        }
        None => Some(lit.clone()),
    }
}

/// Reports a key other than `tag` and skips its value, so the keys after it
/// are still read.
fn unknown_key(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let key = crate::names::pretty(&meta.path);
    let hint = match did_you_mean(&key, KEYS) {
        Some(candidate) => format!(" (did you mean `{candidate}`?)"),
        None => String::new(),
    };
    cx.error_spanned_by(
        &meta.path,
        format!("unknown key `{key}` in #[plexus(..)]: the only key is `tag = \"...\"`{hint}"),
    );
    skip_value(meta)
}

/// Consumes whatever follows a key that is being rejected (`= value`,
/// `(..)`), up to the next `,`, so the keys after it are still read.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// Reports the shapes the derive does not support.
fn check_shape(cx: &mut Ctxt, input: &DeriveInput) {
    if let Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "#[derive(Replicated)] does not support unions: the state of a replicated type \
             is serialized for late joiners; use a struct or an enum",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(Replicated)] does not support generic types yet: each concrete type \
             needs its own wire type tag",
        );
    }
}
