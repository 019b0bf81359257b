//! `#[monitored]`: checks the attribute and the function, then wraps the
//! body in a measurement by the runtime's `__private::Site`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

use crate::with_errors;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Error, Expr, ExprLit, Item, ItemFn, Lit, LitStr, Path, ReturnType, Type, TypeImplTrait};

/// Adds `error` to the collected errors.
fn push(errors: &mut Option<Error>, error: Error) {
    match errors {
        Some(existing) => existing.combine(error),
        None => *errors = Some(error),
    }
}

/// The arguments of one `#[monitored(...)]` attribute.
struct Args {
    /// The operation's name (`name = "..."`, default the function's name).
    name: Option<LitStr>,
    /// Path of the runtime crate (`crate = "..."`, default `::keel_monitor`).
    krate: Path,
}

const KEYS: &str = "`name` or `crate`";

impl Args {
    fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut name: Option<LitStr> = None;
        let mut krate: Option<Path> = None;
        let mut errors: Option<Error> = None;
        let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
            let arg = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let taken = match arg.as_str() {
                "name" => name.is_some(),
                "crate" => krate.is_some(),
                _ => {
                    return Err(meta.error(format!(
                        "unknown `#[monitored]` argument `{}`; expected {KEYS}",
                        meta.path.to_token_stream()
                    )));
                }
            };
            if !meta.input.peek(syn::Token![=]) {
                return Err(meta.error(format!("expected `{arg} = \"...\"`")));
            }
            let lit = match meta.value()?.parse::<Expr>()? {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) => lit,
                other => {
                    return Err(Error::new_spanned(
                        other,
                        format!("`{arg}` takes a string literal, as in `{arg} = \"...\"`"),
                    ));
                }
            };
            if taken {
                push(
                    &mut errors,
                    Error::new_spanned(&meta.path, format!("duplicate `{arg}` argument")),
                );
                return Ok(());
            }
            if arg == "name" {
                if lit.value().is_empty() {
                    push(
                        &mut errors,
                        Error::new(lit.span(), "`name` must not be empty"),
                    );
                }
                name = Some(lit);
            } else {
                match lit.parse::<Path>() {
                    Ok(path) => krate = Some(path),
                    Err(_) => push(
                        &mut errors,
                        Error::new(
                            lit.span(),
                            format!(
                                "`crate` must be a path such as \"keel::monitor\", not {:?}",
                                lit.value()
                            ),
                        ),
                    ),
                }
            }
            Ok(())
        });
        parser.parse2(tokens)?;
        match errors {
            Some(error) => Err(error),
            None => Ok(Args {
                name,
                krate: krate.unwrap_or_else(|| syn::parse_quote!(::keel_monitor)),
            }),
        }
    }
}

/// Expands `#[monitored(attr)] item`. On any error the function is emitted
/// unchanged next to the errors.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => function,
        Ok(other) => {
            let error = Error::new_spanned(
                other,
                "`#[monitored]` applies to functions (`fn` or `async fn`), not to this item",
            );
            return with_errors(error, item);
        }
        Err(error) => return with_errors(error, item),
    };
    let args = Args::parse(attr);
    let signature = match &function.sig.constness {
        Some(token) => Err(Error::new(
            token.span,
            "`#[monitored]` cannot measure a `const fn`: it runs at compile time",
        )),
        None => Ok(()),
    };
    match (args, signature) {
        (Ok(args), Ok(())) => generate(function, &args),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            with_errors(error, item)
        }
        (Err(error), Ok(())) | (Ok(_), Err(error)) => with_errors(error, item),
    }
}

/// Whether the return type is a `Result` whose error can be recorded: the
/// last path segment is `Result` and no `impl Trait` is inside (the value
/// must be named to be inspected).
fn returns_result(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let mut inner: &Type = ty;
    while let Type::Paren(p) = inner {
        inner = &p.elem;
    }
    let Type::Path(path) = inner else {
        return None;
    };
    if path.qself.is_some() || path.path.segments.last()?.ident != "Result" {
        return None;
    }
    #[derive(Default)]
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder::default();
    finder.visit_type(ty);
    (!finder.0).then_some(&**ty)
}

fn generate(function: ItemFn, args: &Args) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let krate = &args.krate;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&sig.ident.to_string(), sig.ident.span()));
    let site = syn::Ident::new("__KEEL_MONITORED_SITE", Span::mixed_site());
    let measure = syn::Ident::new("__keel_measure", Span::mixed_site());
    let result = syn::Ident::new("__keel_result", Span::mixed_site());
    let start = quote! {
        static #site: #krate::__private::Site = #krate::__private::Site::new(#name);
        let #measure = #site.start();
    };
    let body = match returns_result(&sig.output) {
        None => quote! {
            #start
            #block
        },
        Some(ty) => {
            // Spanned at the return type: an error type without `Display`
            // is reported there.
            let span = ty.span();
            let finish = quote_spanned! {span=>
                #krate::__private::finish(#measure, &#result);
            };
            let run = if sig.asyncness.is_some() {
                quote! { #krate::__private::typed::<#ty, _>(async move #block).await }
            } else {
                quote! { (move || -> #ty #block)() }
            };
            quote! {
                #start
                let #result: #ty = #run;
                #finish
                #result
            }
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_return_keeps_the_body_after_the_guard() {
        let out = expand(
            quote!(name = "db.query"),
            quote!(
                fn get(id: u64) -> u64 {
                    id
                }
            ),
        );
        let text = out.to_string();
        assert!(text.contains("Site :: new (\"db.query\")"), "{text}");
        assert!(!text.contains("finish"), "{text}");
    }

    #[test]
    fn a_result_is_inspected_and_returned() {
        let out = expand(
            quote!(),
            quote!(
                async fn get(id: u64) -> std::io::Result<u64> {
                    Ok(id)
                }
            ),
        )
        .to_string();
        assert!(out.contains("Site :: new (\"get\")"), "{out}");
        assert!(
            out.contains("__private :: typed :: < std :: io :: Result < u64 > , _ >"),
            "{out}"
        );
        assert!(out.contains("__private :: finish"), "{out}");
    }

    #[test]
    fn bad_arguments_and_const_fns_are_reported_together() {
        let out = expand(
            quote!(name = ""),
            quote!(
                const fn get() -> u8 {
                    1
                }
            ),
        )
        .to_string();
        assert!(out.contains("`name` must not be empty"), "{out}");
        assert!(out.contains("cannot measure a `const fn`"), "{out}");
    }
}
