//! Reading a `#[replicated]` impl block into a [`Block`]: the type, its
//! shouts, their options and arguments.
//!
//! This is syntax only, and it strips the `#[shout]` markers from the impl
//! block as it reads them. What is allowed is decided in `check`.

use proc_macro2::{Group, Spacing, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{
    Attribute, Expr, ExprLit, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Lit, LitStr, Meta, Pat,
    PathArguments, Signature, Token, Type, Visibility,
};

use crate::ctxt::Ctxt;
use crate::names::{did_you_mean, fresh, pretty, respan, tag_problem, variant_name};
use crate::tag::skip_value;

/// The options of `#[replicated(..)]`.
pub(crate) struct Options {
    /// `vis = ...`: the visibility of the generated items.
    vis: Option<Visibility>,
}

/// A `#[replicated]` impl block.
pub(crate) struct Block {
    /// The type the block is for, as written (`Frog`, `crate::Frog`).
    pub(crate) self_ty: Type,
    /// The type's name (`Frog`), if the self type is a plain type name.
    pub(crate) name: Option<Ident>,
    /// Whether the block is an inherent, non-generic impl of a named type:
    /// only then is anything generated.
    pub(crate) expandable: bool,
    /// `#[replicated(vis = ..)]`, if given.
    pub(crate) vis: Option<Visibility>,
    /// The `#[shout]` methods, in declaration order.
    pub(crate) shouts: Vec<Shout>,
}

/// One `#[shout]` method.
pub(crate) struct Shout {
    /// The method name as written (may be raw: `r#move`).
    pub(crate) method: Ident,
    /// The op variant (`Croak`), spanned at the method name.
    pub(crate) variant: Ident,
    /// The wire tag: the pinned one, or the method name.
    pub(crate) tag: String,
    /// The `tag = "..."` literal, if the tag is pinned.
    pub(crate) pinned: Option<LitStr>,
    /// `#[shout(commutative)]`.
    pub(crate) commutative: bool,
    /// The method's visibility.
    pub(crate) vis: Visibility,
    /// The method's signature, for the checks.
    pub(crate) sig: Signature,
    /// The arguments after the receiver.
    pub(crate) args: Vec<Arg>,
    /// The method's doc comments.
    pub(crate) docs: Vec<Attribute>,
    /// The method's `#[cfg(..)]` attributes (an error).
    pub(crate) cfgs: Vec<Attribute>,
    /// The error group of the method (its place in the block), so errors
    /// read in source order.
    pub(crate) group: usize,
    /// Whether the `#[shout(..)]` options were read without error (so the
    /// tag is the intended one).
    pub(crate) marker_ok: bool,
    /// Whether nothing is wrong with this shout: only valid shouts are
    /// generated.
    pub(crate) valid: bool,
}

/// An argument of a shout.
pub(crate) struct Arg {
    /// Its name: the parameter's identifier, or a fresh `argN` for a pattern.
    pub(crate) name: Ident,
    /// Its type, with `Self` replaced by the replicated type.
    pub(crate) ty: Type,
}

/// The keys `#[replicated(..)]` accepts.
const OPTIONS: &[&str] = &["vis"];

/// The keys `#[shout(..)]` accepts.
const SHOUT_OPTIONS: &[&str] = &["commutative", "tag"];

/// Reads the arguments of `#[replicated(..)]`.
pub(crate) fn options(cx: &mut Ctxt, args: TokenStream) -> Options {
    let mut vis = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("vis") {
            let value: Visibility = meta.value()?.parse()?;
            if matches!(value, Visibility::Inherited) {
                return Err(meta.error("expected a visibility: `vis = pub` or `vis = pub(crate)`"));
            }
            if vis.is_some() {
                cx.error_spanned_by(&meta.path, "duplicate `vis`");
            }
            vis = Some(value);
        } else {
            let key = pretty(&meta.path);
            let hint = hint(&key, OPTIONS);
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown #[replicated] option `{key}`: the only option is `vis = ...` \
                     (the visibility of the generated items){hint}"
                ),
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        cx.syn_error(error);
    }
    Options { vis }
}

/// Reads `item`, removing the `#[shout]` markers from it.
pub(crate) fn block(cx: &mut Ctxt, item: &mut ItemImpl, options: Options) -> Block {
    let mut expandable = true;
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            format!(
                "#[replicated] goes on the inherent impl block of the type \
                 (`impl {} {{ .. }}`), not on an impl of a trait",
                pretty(&item.self_ty)
            ),
        );
        expandable = false;
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(&item.generics, GENERIC);
        expandable = false;
    } else if let Some(clause) = &item.generics.where_clause {
        cx.error_spanned_by(clause, GENERIC);
        expandable = false;
    }
    let name = type_name(cx, &item.self_ty, expandable);
    expandable &= name.is_some();

    let self_ty = (*item.self_ty).clone();
    let mut shouts = Vec::new();
    for (index, impl_item) in item.items.iter_mut().enumerate() {
        cx.set_group(index + 1);
        let (attrs, what) = match impl_item {
            ImplItem::Fn(method) => {
                if let Some(shout) = shout(cx, method, &self_ty, index + 1) {
                    shouts.push(shout);
                }
                continue;
            }
            ImplItem::Const(item) => (&mut item.attrs, "an associated const"),
            ImplItem::Type(item) => (&mut item.attrs, "an associated type"),
            ImplItem::Macro(item) => (&mut item.attrs, "a macro call"),
            _ => continue,
        };
        for marker in take_markers(attrs) {
            cx.error_spanned_by(marker, format!("#[shout] goes on a method, not on {what}"));
        }
    }
    Block {
        self_ty,
        name,
        expandable,
        vis: options.vis,
        shouts,
    }
}

const GENERIC: &str = "#[replicated] does not support generic impl blocks yet: \
                       a replicated type has one concrete op type and one wire type tag";

/// The name of the replicated type (`Frog` in `impl crate::Frog`).
/// Generic arguments are reported unless the impl's generics already were.
fn type_name(cx: &mut Ctxt, ty: &Type, report_generic: bool) -> Option<Ident> {
    if let Type::Path(path) = ty {
        if path.qself.is_none() {
            let last = path.path.segments.last()?;
            if !matches!(last.arguments, PathArguments::None) {
                if report_generic {
                    cx.error_spanned_by(&last.arguments, GENERIC);
                }
                return None;
            }
            return Some(last.ident.clone());
        }
    }
    cx.error_spanned_by(
        ty,
        "#[replicated] goes on the impl block of a named type: `impl Frog { .. }`",
    );
    None
}

/// Whether `attr` is a `#[shout]` marker (`shout` or `plexus::shout`).
fn is_marker(attr: &Attribute) -> bool {
    let segments: Vec<_> = attr
        .path()
        .segments
        .iter()
        .map(|segment| &segment.ident)
        .collect();
    match segments.as_slice() {
        [shout] => *shout == "shout",
        [plexus, shout] => *plexus == "plexus" && *shout == "shout",
        _ => false,
    }
}

/// Removes the `#[shout]` markers from `attrs` and returns them.
fn take_markers(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (markers, rest) = std::mem::take(attrs).into_iter().partition(is_marker);
    *attrs = rest;
    markers
}

/// Reads one method, if it is marked `#[shout]`.
fn shout(cx: &mut Ctxt, method: &mut ImplItemFn, self_ty: &Type, group: usize) -> Option<Shout> {
    let markers = take_markers(&mut method.attrs);
    let marker = markers.first()?;
    let errors_before = cx.error_count();
    for duplicate in &markers[1..] {
        cx.error_spanned_by(duplicate, "duplicate #[shout] on one method");
    }
    let (commutative, pinned) = marker_options(cx, marker);
    let marker_ok = cx.error_count() == errors_before;

    let ident = method.sig.ident.clone();
    let tag = pinned
        .as_ref()
        .map_or_else(|| ident.unraw().to_string(), LitStr::value);
    Some(Shout {
        variant: variant_name(&ident),
        method: ident,
        tag,
        pinned,
        commutative,
        vis: method.vis.clone(),
        args: arguments(&method.sig, self_ty),
        sig: method.sig.clone(),
        cfgs: method
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .cloned()
            .collect(),
        docs: method
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .cloned()
            .collect(),
        group,
        marker_ok,
        valid: marker_ok,
    })
}

/// Reads `#[shout]`, `#[shout(commutative)]`, `#[shout(tag = "...")]`.
fn marker_options(cx: &mut Ctxt, marker: &Attribute) -> (bool, Option<LitStr>) {
    let mut commutative = false;
    let mut tag = None;
    let mut saw_tag = false;
    match &marker.meta {
        Meta::Path(_) => {}
        Meta::List(_) => {
            let result = marker.parse_nested_meta(|meta| {
                if meta.path.is_ident("commutative") {
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`commutative` takes no value: write `#[shout(commutative)]`",
                        );
                        return skip_value(&meta);
                    }
                    if commutative {
                        cx.error_spanned_by(&meta.path, "duplicate `commutative`");
                    }
                    commutative = true;
                } else if meta.path.is_ident("tag") {
                    let value: Expr = meta.value()?.parse()?;
                    if saw_tag {
                        cx.error_spanned_by(&meta.path, "duplicate `tag`: a shout has one op tag");
                        return Ok(());
                    }
                    saw_tag = true;
                    tag = op_tag(cx, &value);
                } else {
                    unknown_option(cx, &meta)?;
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
        Meta::NameValue(_) => cx.error_spanned_by(
            marker,
            "expected `#[shout]`, `#[shout(commutative)]` or `#[shout(tag = \"...\")]`",
        ),
    }
    (commutative, tag)
}

/// The literal of `tag = "..."`, if it is a usable op tag.
fn op_tag(cx: &mut Ctxt, value: &Expr) -> Option<LitStr> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        cx.error_spanned_by(
            value,
            "the op tag must be a string literal: `tag = \"croak\"`",
        );
        return None;
    };
    if let Some(problem) = tag_problem(&lit.value()) {
        cx.error_spanned_by(lit, format!("the op tag {problem}"));
        return None;
    }
    Some(lit.clone())
}

/// Reports an unknown `#[shout(..)]` option and skips its value.
fn unknown_option(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let key = pretty(&meta.path);
    let hint = hint(&key, SHOUT_OPTIONS);
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown #[shout] option `{key}`: the options are `commutative` and \
             `tag = \"...\"`{hint}"
        ),
    );
    skip_value(meta)
}

/// ` (did you mean `x`?)` when `key` looks like a typo of a candidate.
fn hint(key: &str, candidates: &[&str]) -> String {
    did_you_mean(key, candidates)
        .map(|candidate| format!(" (did you mean `{candidate}`?)"))
        .unwrap_or_default()
}

/// The arguments after the receiver, named and with `Self` replaced.
fn arguments(sig: &Signature, self_ty: &Type) -> Vec<Arg> {
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let taken: Vec<String> = typed
        .iter()
        .filter_map(|typed| pat_ident(&typed.pat))
        .map(|ident| ident.unraw().to_string())
        .collect();
    typed
        .iter()
        .enumerate()
        .map(|(index, typed)| {
            let name = pat_ident(&typed.pat).cloned().unwrap_or_else(|| {
                fresh(
                    &format!("arg{index}"),
                    &taken,
                    proc_macro2::Span::call_site(),
                )
            });
            let ty = replace_self(typed.ty.to_token_stream(), self_ty);
            let ty = syn::parse2(ty).unwrap_or_else(|_| (*typed.ty).clone());
            Arg { name, ty }
        })
        .collect()
}

/// The identifier a parameter pattern binds, if it is one (`by`, `mut by`).
fn pat_ident(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(pat) => Some(&pat.ident),
        _ => None,
    }
}

/// `tokens` with every `Self` replaced by `self_ty` (as `<Frog>` before a
/// `::`), spanned at the `Self` it replaces.
///
/// The types of the arguments move into the op enum, the observer trait and
/// the leaf extension trait, where `Self` would mean something else.
fn replace_self(tokens: TokenStream, self_ty: &Type) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = TokenStream::new();
    for (index, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(ident) if ident == "Self" => {
                let before_path = matches!(
                    trees.get(index + 1),
                    Some(TokenTree::Punct(punct))
                        if punct.as_char() == ':' && punct.spacing() == Spacing::Joint
                );
                let ty = if before_path {
                    quote! { <#self_ty> }
                } else {
                    quote! { #self_ty }
                };
                out.extend(respan(ty, ident.span()));
            }
            TokenTree::Group(group) => {
                let mut replaced =
                    Group::new(group.delimiter(), replace_self(group.stream(), self_ty));
                replaced.set_span(group.span());
                out.extend([TokenTree::Group(replaced)]);
            }
            other => out.extend([other.clone()]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_replaced_in_argument_types() {
        let frog: Type = syn::parse_quote!(crate::Frog);
        let replaced = |s: &str| {
            let ty: Type = syn::parse2(replace_self(syn::parse_str(s).unwrap(), &frog)).unwrap();
            pretty(&ty)
        };
        assert_eq!(replaced("Self"), "crate::Frog");
        assert_eq!(replaced("Vec<Self>"), "Vec<crate::Frog>");
        assert_eq!(replaced("[u8; Self::N]"), "[u8; <crate::Frog>::N]");
        assert_eq!(replaced("Option<Box<Self>>"), "Option<Box<crate::Frog>>");
    }

    #[test]
    fn markers_are_recognised() {
        let attr = |tokens: TokenStream| -> Attribute { syn::parse_quote!(#[#tokens]) };
        assert!(is_marker(&attr(quote!(shout))));
        assert!(is_marker(&attr(quote!(shout(commutative)))));
        assert!(is_marker(&attr(quote!(plexus::shout))));
        assert!(!is_marker(&attr(quote!(doc = "shout"))));
        assert!(!is_marker(&attr(quote!(other::shout))));
    }

    #[test]
    fn pattern_arguments_get_fresh_names() {
        let sig: Signature = syn::parse_quote!(fn f(&mut self, (a, b): (u8, u8), arg0: u8, _: u8));
        let args = arguments(&sig, &syn::parse_quote!(Frog));
        let names: Vec<_> = args.iter().map(|arg| arg.name.to_string()).collect();
        assert_eq!(names, ["arg0_", "arg0", "arg2"]);
    }
}
