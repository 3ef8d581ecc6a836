//! The error collector.
//!
//! Every check reports into a [`Ctxt`] instead of returning at the first
//! problem, each error carrying the span of the offending tokens, so one
//! expansion shows every mistake at once (serde's `internals/ctxt.rs`).

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// Collects the errors of one macro expansion.
///
/// Errors are filed in groups (one per item: the block itself, then each
/// method) and emitted group by group, so they read in source order even
/// though the checks run in several passes.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<(usize, syn::Error)>,
    group: usize,
}

impl Ctxt {
    /// An empty collector.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Files the errors reported from now on under `group`.
    pub(crate) fn set_group(&mut self, group: usize) {
        self.group = group;
    }

    /// Reports `message` at `tokens` (from their first to their last token).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Reports `message` at `span`.
    pub(crate) fn error_at<M: Display>(&mut self, span: Span, message: M) {
        self.push(syn::Error::new(span, message));
    }

    /// Reports an error produced by a syn parser.
    pub(crate) fn syn_error(&mut self, error: syn::Error) {
        self.push(error);
    }

    fn push(&mut self, error: syn::Error) {
        self.errors.push((self.group, error));
    }

    /// How many errors were reported so far.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Whether any error was reported.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// One `compile_error!` per reported error, group by group, or nothing.
    pub(crate) fn into_compile_errors(mut self) -> TokenStream {
        self.errors.sort_by_key(|(group, _)| *group);
        self.errors
            .into_iter()
            .map(|(_, error)| error.into_compile_error())
            .collect()
    }
}
