//! `#[cached]`: checks the attribute and the function, then rewrites the
//! body into a call to the runtime's `__private::cached*` functions.

mod args;
mod key;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

use crate::with_errors;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Error, FnArg, GenericParam, Item, ItemFn, Pat, ReturnType, Signature, Type, TypeImplTrait,
};

use args::{Args, KeySource, push};

/// Expands `#[cached(attr)] item`. On any error the function is emitted
/// unchanged next to the errors, so the only messages the user sees are
/// the macro's own.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => function,
        Ok(other) => {
            let error = Error::new_spanned(
                other,
                "`#[cached]` applies to `async fn` items, not to this item",
            );
            return with_errors(error, item);
        }
        Err(error) => return with_errors(error, item),
    };
    let (args, signature) = match (Args::parse(attr), check_signature(&function.sig)) {
        (Ok(args), Ok(signature)) => (args, signature),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            return with_errors(error, item);
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => return with_errors(error, item),
    };
    match key_expr(&args, &function.sig.ident, &signature.args) {
        Ok(key) => generate(function, &args, &signature, key),
        Err(error) => with_errors(error, item),
    }
}

/// What the expansion needs to know about a signature that passed the
/// checks.
struct CheckedSignature {
    /// The argument names, in order.
    args: Vec<Ident>,
    /// Which runtime function fits the return type.
    returns: Returns,
    /// Span of the return type, for errors about its bounds.
    return_span: Span,
}

/// How the return value is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returns {
    /// `Result<T, E>` (or an alias spelled `...::Result<..>`): `Ok` only.
    Result,
    /// `Option<T>`: `None` only with negative caching on.
    Option,
    /// Any other type: every value.
    Value,
}

impl Returns {
    fn runtime_fn(self) -> &'static str {
        match self {
            Returns::Result => "cached_result",
            Returns::Option => "cached_option",
            Returns::Value => "cached",
        }
    }
}

/// Rejects what `#[cached]` cannot support, reporting every problem.
fn check_signature(sig: &Signature) -> syn::Result<CheckedSignature> {
    let mut errors = None;
    if sig.asyncness.is_none() {
        push(
            &mut errors,
            Error::new(
                sig.fn_token.span,
                "`#[cached]` needs an `async fn`: the cache is read and filled asynchronously",
            ),
        );
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            push(
                &mut errors,
                Error::new_spanned(
                    param,
                    "`#[cached]` does not support generic functions: the cached value needs one concrete type",
                ),
            );
        }
    }
    if let Some(clause) = &sig.generics.where_clause {
        push(
            &mut errors,
            Error::new_spanned(clause, "`#[cached]` does not support `where` clauses"),
        );
    }
    let mut args = Vec::with_capacity(sig.inputs.len());
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => push(
                &mut errors,
                Error::new_spanned(
                    receiver,
                    "`#[cached]` does not support methods with a `self` receiver; \
                     cache a free function that takes the values the key needs",
                ),
            ),
            FnArg::Typed(arg) => {
                for impl_trait in impl_traits(&arg.ty) {
                    push(
                        &mut errors,
                        Error::new_spanned(
                            impl_trait,
                            "`#[cached]` does not support `impl Trait` arguments; use a concrete type",
                        ),
                    );
                }
                match &*arg.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                        args.push(pat.ident.clone());
                    }
                    pat => push(
                        &mut errors,
                        Error::new_spanned(
                            pat,
                            "`#[cached]` needs a plain name for each argument, not a pattern; \
                             destructure it inside the body",
                        ),
                    ),
                }
            }
        }
    }
    let (returns, return_span) = match &sig.output {
        ReturnType::Default => {
            push(
                &mut errors,
                Error::new(
                    sig.paren_token.span.close(),
                    "`#[cached]` needs a return value to cache; this function returns `()`",
                ),
            );
            (Returns::Value, Span::call_site())
        }
        ReturnType::Type(_, ty) => {
            if matches!(strip(ty), Type::Tuple(tuple) if tuple.elems.is_empty()) {
                push(
                    &mut errors,
                    Error::new_spanned(ty, "`#[cached]` needs a return value to cache, not `()`"),
                );
            }
            for impl_trait in impl_traits(ty) {
                push(
                    &mut errors,
                    Error::new_spanned(
                        impl_trait,
                        "`#[cached]` needs a concrete return type, not `impl Trait`",
                    ),
                );
            }
            (classify(ty), ty.span())
        }
    };
    match errors {
        Some(error) => Err(error),
        None => Ok(CheckedSignature {
            args,
            returns,
            return_span,
        }),
    }
}

/// Classifies a return type by the last segment of its path.
fn classify(ty: &Type) -> Returns {
    let Type::Path(path) = strip(ty) else {
        return Returns::Value;
    };
    if path.qself.is_some() {
        return Returns::Value;
    }
    match path.path.segments.last() {
        Some(segment) if segment.ident == "Result" => Returns::Result,
        Some(segment) if segment.ident == "Option" => Returns::Option,
        _ => Returns::Value,
    }
}

/// Looks through parentheses and invisible groups.
fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Paren(inner) => strip(&inner.elem),
        Type::Group(inner) => strip(&inner.elem),
        other => other,
    }
}

/// Every `impl Trait` inside `ty`.
fn impl_traits(ty: &Type) -> Vec<&TypeImplTrait> {
    #[derive(Default)]
    struct Finder<'ast>(Vec<&'ast TypeImplTrait>);
    impl<'ast> Visit<'ast> for Finder<'ast> {
        fn visit_type_impl_trait(&mut self, node: &'ast TypeImplTrait) {
            self.0.push(node);
        }
    }
    let mut finder = Finder::default();
    finder.visit_type(ty);
    finder.0
}

fn key_expr(args: &Args, function: &Ident, arg_names: &[Ident]) -> syn::Result<TokenStream> {
    match &args.key {
        KeySource::AllArguments { prefix } => {
            let prefix = prefix.clone().unwrap_or_else(|| function.to_string());
            Ok(key::all_arguments_expr(&prefix, arg_names))
        }
        KeySource::Template(template) => template.expr(function, arg_names),
    }
}

/// The rewritten function: same attributes, visibility and signature; the
/// body computes the key (before anything is moved), then hands the
/// original body, as an `async move` block, to the runtime.
fn generate(
    function: ItemFn,
    args: &Args,
    signature: &CheckedSignature,
    key: TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let krate = &args.krate;
    let cache = &args.cache;
    let ttl = match args.ttl {
        Some(ms) => quote!(::core::option::Option::Some(
            #krate::__private::Duration::from_millis(#ms)
        )),
        None => quote!(::core::option::Option::None),
    };
    let key_var = Ident::new("__keel_cache_key", Span::mixed_site());
    // The call is spanned at the return type, so a value type missing
    // `Clone` or `Serialize` is reported there rather than at the attribute.
    let span = signature.return_span;
    let runtime_fn = Ident::new(signature.returns.runtime_fn(), span);
    let krate_at_return: TokenStream = krate
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect();
    let call = quote_spanned! {span=>
        #krate_at_return::__private::#runtime_fn(#cache, #key_var, #ttl, async move #block).await
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            let #key_var: ::std::string::String = #key;
            #call
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn sig(function: ItemFn) -> Signature {
        function.sig
    }

    fn errors(sig: &Signature) -> Vec<String> {
        match check_signature(sig) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn return_types_pick_the_runtime_function() {
        let returns = |ty: Type| classify(&ty);
        assert_eq!(
            returns(parse_quote!(Result<User, DbError>)),
            Returns::Result
        );
        assert_eq!(
            returns(parse_quote!(std::io::Result<Vec<u8>>)),
            Returns::Result
        );
        assert_eq!(returns(parse_quote!(Option<User>)), Returns::Option);
        assert_eq!(
            returns(parse_quote!(::core::option::Option<u8>)),
            Returns::Option
        );
        assert_eq!(returns(parse_quote!(Vec<Option<u8>>)), Returns::Value);
        assert_eq!(returns(parse_quote!((u8, Option<u8>))), Returns::Value);
        assert_eq!(returns(parse_quote!(Response)), Returns::Value);
    }

    #[test]
    fn plain_async_fn_passes_with_its_argument_names() {
        let sig = sig(parse_quote!(
            async fn load(mut user_id: u64, db: &Db) -> Option<User> {}
        ));
        let checked = check_signature(&sig).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = checked.args.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["user_id", "db"]);
        assert_eq!(checked.returns, Returns::Option);
    }

    #[test]
    fn explicit_lifetimes_are_allowed() {
        let sig = sig(parse_quote!(
            async fn load<'a>(db: &'a Db) -> u64 {}
        ));
        assert!(errors(&sig).is_empty());
    }

    #[test]
    fn every_unsupported_part_is_reported() {
        let sig = sig(parse_quote!(
            fn load<T: Clone>(&self, (a, b): (u8, u8), f: impl Fn())
            where
                T: Send,
            {
            }
        ));
        assert_eq!(
            errors(&sig),
            [
                "`#[cached]` needs an `async fn`: the cache is read and filled asynchronously",
                "`#[cached]` does not support generic functions: the cached value needs one concrete type",
                "`#[cached]` does not support `where` clauses",
                "`#[cached]` does not support methods with a `self` receiver; \
                 cache a free function that takes the values the key needs",
                "`#[cached]` needs a plain name for each argument, not a pattern; \
                 destructure it inside the body",
                "`#[cached]` does not support `impl Trait` arguments; use a concrete type",
                "`#[cached]` needs a return value to cache; this function returns `()`",
            ]
        );
    }

    #[test]
    fn unit_and_impl_trait_returns_are_rejected() {
        let unit = sig(parse_quote!(
            async fn f() -> () {}
        ));
        assert_eq!(
            errors(&unit),
            ["`#[cached]` needs a return value to cache, not `()`"]
        );
        let opaque = sig(parse_quote!(
            async fn f() -> Box<impl Clone> {}
        ));
        assert_eq!(
            errors(&opaque),
            ["`#[cached]` needs a concrete return type, not `impl Trait`"]
        );
    }

    #[test]
    fn expansion_computes_the_key_then_awaits_the_runtime() {
        let out = expand(
            quote!(cache = "users", ttl = "5s", crate = "rt"),
            quote!(
                pub async fn get(id: u64) -> Result<u64, E> {
                    Ok(id)
                }
            ),
        );
        let expected = quote! {
            pub async fn get(id: u64) -> Result<u64, E> {
                let __keel_cache_key: ::std::string::String = ::std::format!("get:{:?}", id);
                rt::__private::cached_result(
                    "users",
                    __keel_cache_key,
                    ::core::option::Option::Some(rt::__private::Duration::from_millis(5000u64)),
                    async move { Ok(id) }
                ).await
            }
        };
        assert_eq!(out.to_string(), expected.to_string());
    }

    #[test]
    fn failed_expansion_keeps_the_function() {
        let item = quote!(
            fn get(id: u64) -> u64 {
                id
            }
        );
        let out = expand(quote!(ttl = "soon"), item.clone()).to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("invalid `ttl`"), "{out}");
        assert!(out.contains("needs an `async fn`"), "{out}");
        assert!(out.ends_with(&item.to_string()), "{out}");
    }
}
