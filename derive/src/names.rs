//! Naming rules shared by the macros: wire tags, variant names, fresh
//! identifiers, and the small helpers that make error messages read well.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::Ident;

/// What is wrong with a wire tag (a type tag or an op tag), if anything.
///
/// Tags travel in every frame and show up in logs and in the lab, so they
/// are plain tokens: not empty, no whitespace, no control characters.
pub(crate) fn tag_problem(tag: &str) -> Option<String> {
    if tag.is_empty() {
        return Some("cannot be empty".to_owned());
    }
    if let Some(c) = tag.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "`{}` cannot contain whitespace or control characters (found {c:?})",
            tag.escape_debug()
        ));
    }
    None
}

/// The op variant for a method: its name in UpperCamelCase (`jump_high` ->
/// `JumpHigh`, `r#move` -> `Move`), spanned at the method name.
///
/// A name that would not be a usable variant (`Self`, or starting with a
/// digit like `_1`) gets an `Op` prefix.
pub(crate) fn variant_name(method: &Ident) -> Ident {
    let name = method.unraw().to_string();
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|part| !part.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() || out == "Self" || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Op");
    }
    Ident::new(&out, method.span())
}

/// `base`, or `base` followed by as many `_` as needed to differ from every
/// name in `taken`.
pub(crate) fn fresh(base: &str, taken: &[String], span: Span) -> Ident {
    let mut name = base.to_owned();
    while taken.contains(&name) {
        name.push('_');
    }
    Ident::new(&name, span)
}

/// The candidate closest to `input`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(input, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over chars, counting a swap of two neighbours as one edit
/// (optimal string alignment), so `tga` is one edit from `tag`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Tokens rendered the way a person writes them (`Vec<&str>`, not
/// `Vec < & str >`), for error messages.
pub(crate) fn pretty<T: ToTokens>(tokens: &T) -> String {
    let mut out = String::new();
    render(tokens.to_token_stream(), &mut out);
    out
}

fn render(tokens: TokenStream, out: &mut String) {
    let mut previous_joint = false;
    for tree in tokens {
        match &tree {
            TokenTree::Punct(punct) => {
                let c = punct.as_char();
                let after_word = out
                    .trim_end()
                    .ends_with(|c: char| c.is_alphanumeric() || c == '_');
                let tight_before =
                    matches!(c, ',' | ';' | '>' | ':' | '.' | '?') || (c == '<' && after_word);
                let is_path_colon = c == ':' && (previous_joint || out.ends_with(':'));
                if (tight_before || is_path_colon) && out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
                previous_joint = punct.spacing() == proc_macro2::Spacing::Joint;
                let tight_after = matches!(c, '&' | '<' | '\'' | '!' | '#' | '.')
                    || (c == ':' && previous_joint)
                    || (c == ':' && is_path_colon);
                if !tight_after && !previous_joint {
                    out.push(' ');
                }
            }
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    proc_macro2::Delimiter::Parenthesis => ("(", ")"),
                    proc_macro2::Delimiter::Bracket => ("[", "]"),
                    proc_macro2::Delimiter::Brace => ("{ ", " }"),
                    proc_macro2::Delimiter::None => ("", ""),
                };
                out.push_str(open);
                let mut inner = String::new();
                render(group.stream(), &mut inner);
                out.push_str(inner.trim_end());
                out.push_str(close);
                out.push(' ');
                previous_joint = false;
            }
            other => {
                out.push_str(&other.to_string());
                out.push(' ');
                previous_joint = false;
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
}

/// Every token of `tokens`, moved to `span` (keeps error messages pointing
/// at the user's tokens when a type is substituted, e.g. `Self` -> `Frog`).
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_upper_camel_case() {
        let name = |s: &str| variant_name(&syn::parse_str::<Ident>(s).unwrap()).to_string();
        assert_eq!(name("croak"), "Croak");
        assert_eq!(name("jump_high"), "JumpHigh");
        assert_eq!(name("r#move"), "Move");
        assert_eq!(name("_private_thing"), "PrivateThing");
        assert_eq!(name("self_"), "OpSelf");
        assert_eq!(name("_1"), "Op1");
    }

    #[test]
    fn tags_are_plain_tokens() {
        assert_eq!(tag_problem("demo.Frog"), None);
        assert!(tag_problem("").is_some());
        assert!(tag_problem("demo Frog").is_some());
        assert!(tag_problem("demo\u{7}").is_some());
    }

    #[test]
    fn typos_are_recognised() {
        assert_eq!(
            did_you_mean("comutative", &["commutative", "tag"]),
            Some("commutative")
        );
        assert_eq!(did_you_mean("tga", &["commutative", "tag"]), Some("tag"));
        assert_eq!(did_you_mean("order", &["commutative", "tag"]), None);
    }

    #[test]
    fn types_print_like_source() {
        let ty = |s: &str| pretty(&syn::parse_str::<syn::Type>(s).unwrap());
        assert_eq!(ty("&str"), "&str");
        assert_eq!(ty("Vec<&'a str>"), "Vec<&'a str>");
        assert_eq!(
            ty("std::collections::HashMap<String, u8>"),
            "std::collections::HashMap<String, u8>"
        );
        assert_eq!(ty("&mut [u8]"), "&mut [u8]");
        assert_eq!(ty("(u8, u8)"), "(u8, u8)");
    }
}
