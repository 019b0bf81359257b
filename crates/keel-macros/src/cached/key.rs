//! Cache keys: the default key over every argument and `key = "..."`
//! templates.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use syn::{Error, LitStr};

/// A parsed `key = "..."` template: the literal (handed to `format!`
/// unchanged, so errors point at it) and the distinct argument names its
/// placeholders use, in order of first use.
pub(crate) struct Template {
    lit: LitStr,
    names: Vec<String>,
}

impl Template {
    /// Checks the template's syntax: `{name}` or `{name:spec}` placeholders
    /// whose name is an identifier, `{{` and `}}` for literal braces.
    pub(crate) fn parse(lit: &LitStr) -> syn::Result<Template> {
        let text = lit.value();
        let error = |message: String| Error::new(lit.span(), message);
        if text.is_empty() {
            return Err(error("`key` must not be empty".to_owned()));
        }
        let mut names = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                }
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inner.push(c),
                            None => {
                                return Err(error(format!(
                                    "unclosed `{{{inner}` in key template; write `{{{{` for a literal brace"
                                )));
                            }
                        }
                    }
                    let name = inner.split(':').next().unwrap_or_default();
                    if name.is_empty() {
                        return Err(error(format!(
                            "placeholder `{{{inner}}}` in key template must name an argument, as in `{{user_id}}`"
                        )));
                    }
                    if syn::parse_str::<Ident>(name).is_err() {
                        return Err(error(format!(
                            "placeholder `{{{inner}}}` in key template must name an argument, not `{name}`"
                        )));
                    }
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_owned());
                    }
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                }
                '}' => {
                    return Err(error(
                        "unmatched `}` in key template; write `}}` for a literal brace".to_owned(),
                    ));
                }
                _ => {}
            }
        }
        Ok(Template {
            lit: lit.clone(),
            names,
        })
    }

    /// The argument names the template uses.
    #[cfg(test)]
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The expression building the key: `format!(template, name = name, ..)`
    /// with each name bound to the function's argument of that name. Fails
    /// on the first placeholder that is not an argument of `function`.
    pub(crate) fn expr(&self, function: &Ident, args: &[Ident]) -> syn::Result<TokenStream> {
        let mut bindings = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let Some(arg) = args.iter().find(|arg| *arg == name) else {
                let listed = if args.is_empty() {
                    format!("`{function}` has no arguments")
                } else {
                    let list: Vec<String> = args.iter().map(|a| format!("`{a}`")).collect();
                    format!("the arguments of `{function}` are {}", list.join(", "))
                };
                return Err(Error::new(
                    self.lit.span(),
                    format!("key template uses `{{{name}}}`, which is not an argument; {listed}"),
                ));
            };
            let label = Ident::new(name, self.lit.span());
            bindings.push(quote!(#label = #arg));
        }
        let lit = &self.lit;
        Ok(quote!(::std::format!(#lit #(, #bindings)*)))
    }
}

/// The default key: `{prefix}:{arg1:?}:{arg2:?}...`, or the prefix alone
/// when the function takes no arguments.
pub(crate) fn all_arguments_expr(prefix: &str, args: &[Ident]) -> TokenStream {
    if args.is_empty() {
        return quote!(::std::string::String::from(#prefix));
    }
    let mut format = prefix.replace('{', "{{").replace('}', "}}");
    for _ in args {
        format.push_str(":{:?}");
    }
    let format = LitStr::new(&format, Span::call_site());
    quote!(::std::format!(#format #(, #args)*))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(text: &str) -> LitStr {
        LitStr::new(text, Span::call_site())
    }

    fn idents(names: &[&str]) -> Vec<Ident> {
        names
            .iter()
            .map(|n| Ident::new(n, Span::call_site()))
            .collect()
    }

    fn parse_err(text: &str) -> String {
        match Template::parse(&lit(text)) {
            Ok(_) => panic!("{text:?} should not parse"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn placeholders_are_collected_once_in_order() {
        let template = Template::parse(&lit("user:{user_id}:{region:?}:{user_id}")).unwrap();
        assert_eq!(template.names(), ["user_id", "region"]);
    }

    #[test]
    fn escaped_braces_are_not_placeholders() {
        let template = Template::parse(&lit("{{literal}}:{id}")).unwrap();
        assert_eq!(template.names(), ["id"]);
        let constant = Template::parse(&lit("all-users")).unwrap();
        assert!(constant.names().is_empty());
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert_eq!(
            parse_err("user:{id"),
            "unclosed `{id` in key template; write `{{` for a literal brace"
        );
        assert_eq!(
            parse_err("user:id}"),
            "unmatched `}` in key template; write `}}` for a literal brace"
        );
        assert_eq!(
            parse_err("user:{}"),
            "placeholder `{}` in key template must name an argument, as in `{user_id}`"
        );
        assert_eq!(
            parse_err("user:{0}"),
            "placeholder `{0}` in key template must name an argument, not `0`"
        );
        assert_eq!(parse_err(""), "`key` must not be empty");
    }

    #[test]
    fn template_expression_binds_named_arguments_only() {
        let template = Template::parse(&lit("user:{user_id}")).unwrap();
        let function = Ident::new("load", Span::call_site());
        let expr = template
            .expr(&function, &idents(&["user_id", "db"]))
            .unwrap();
        assert_eq!(
            expr.to_string(),
            quote!(::std::format!("user:{user_id}", user_id = user_id)).to_string()
        );
    }

    #[test]
    fn template_naming_a_non_argument_lists_the_arguments() {
        let template = Template::parse(&lit("user:{usr_id}")).unwrap();
        let function = Ident::new("load", Span::call_site());
        let message = template
            .expr(&function, &idents(&["user_id", "db"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "key template uses `{usr_id}`, which is not an argument; \
             the arguments of `load` are `user_id`, `db`"
        );
        let message = template.expr(&function, &[]).unwrap_err().to_string();
        assert!(message.ends_with("`load` has no arguments"), "{message}");
    }

    #[test]
    fn default_key_formats_every_argument_with_debug() {
        let expr = all_arguments_expr("user", &idents(&["id", "name"]));
        assert_eq!(
            expr.to_string(),
            quote!(::std::format!("user:{:?}:{:?}", id, name)).to_string()
        );
    }

    #[test]
    fn default_key_escapes_braces_in_the_prefix() {
        let expr = all_arguments_expr("a{b}", &idents(&["id"]));
        assert_eq!(
            expr.to_string(),
            quote!(::std::format!("a{{b}}:{:?}", id)).to_string()
        );
    }

    #[test]
    fn default_key_without_arguments_is_the_prefix() {
        let expr = all_arguments_expr("config", &[]);
        assert_eq!(
            expr.to_string(),
            quote!(::std::string::String::from("config")).to_string()
        );
    }
}
