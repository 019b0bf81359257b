//! The `#[cached(...)]` attribute arguments: parsing and value checks.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Error, Expr, ExprLit, Lit, LitStr, Path, Token};

use super::key::Template;

/// The arguments of one `#[cached(...)]` attribute, checked.
pub(crate) struct Args {
    /// Name of the cache (`cache = "..."`, default `"default"`).
    pub(crate) cache: LitStr,
    /// `ttl = "..."` in whole milliseconds; `None` leaves the cache's own TTL.
    pub(crate) ttl: Option<u64>,
    /// How the key is built.
    pub(crate) key: KeySource,
    /// Path of the runtime crate (`crate = "..."`, default `::keel_cache`).
    pub(crate) krate: Path,
}

/// Where a call's cache key comes from.
pub(crate) enum KeySource {
    /// `{prefix}:{arg1:?}:{arg2:?}...` over every argument; `None` means the
    /// function's name is the prefix.
    AllArguments { prefix: Option<String> },
    /// A `key = "..."` template naming some of the arguments.
    Template(Template),
}

const KEYS: &str = "`cache`, `ttl`, `prefix`, `key` or `crate`";

impl Args {
    /// Parses the attribute's tokens, reporting every bad value at once.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut raw = Raw::default();
        let mut errors: Option<Error> = None;
        let parser = syn::meta::parser(|meta| raw.argument(meta, &mut errors));
        parser.parse2(tokens)?;
        let args = raw.finish(&mut errors);
        match errors {
            Some(error) => Err(error),
            None => Ok(args),
        }
    }
}

/// Arguments as written, before defaults are applied.
#[derive(Default)]
struct Raw {
    cache: Option<LitStr>,
    ttl: Option<Option<u64>>,
    prefix: Option<LitStr>,
    key: Option<Option<Template>>,
    krate: Option<Path>,
}

impl Raw {
    /// Reads one `name = "value"` pair. Syntax errors stop parsing (the
    /// rest of the attribute cannot be read); bad values are collected into
    /// `errors` so the user sees them all at once.
    fn argument(
        &mut self,
        meta: ParseNestedMeta<'_>,
        errors: &mut Option<Error>,
    ) -> syn::Result<()> {
        // `crate` is a keyword, but syn reads it as a one-segment path too.
        let name = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let slot_taken = match name.as_str() {
            "cache" => self.cache.is_some(),
            "ttl" => self.ttl.is_some(),
            "prefix" => self.prefix.is_some(),
            "key" => self.key.is_some(),
            "crate" => self.krate.is_some(),
            _ => {
                let hint = if name == "cache_name" {
                    " (the cache's name is `cache`)"
                } else {
                    ""
                };
                return Err(meta.error(format!(
                    "unknown `#[cached]` argument `{}`; expected {KEYS}{hint}",
                    path_text(&meta.path)
                )));
            }
        };
        if !meta.input.peek(Token![=]) {
            return Err(meta.error(format!("expected `{name} = \"...\"`")));
        }
        let lit = value_string(&meta, &name)?;
        if slot_taken {
            push(
                errors,
                Error::new_spanned(&meta.path, format!("duplicate `{name}` argument")),
            );
            return Ok(());
        }
        match name.as_str() {
            "cache" => {
                if lit.value().is_empty() {
                    push(
                        errors,
                        Error::new(lit.span(), "`cache` must name a cache, not be empty"),
                    );
                }
                self.cache = Some(lit);
            }
            "ttl" => match ttl_millis(&lit) {
                Ok(ms) => self.ttl = Some(Some(ms)),
                Err(error) => {
                    self.ttl = Some(None);
                    push(errors, error);
                }
            },
            "prefix" => {
                if lit.value().is_empty() {
                    push(errors, Error::new(lit.span(), "`prefix` must not be empty"));
                }
                self.prefix = Some(lit);
            }
            "key" => match Template::parse(&lit) {
                Ok(template) => self.key = Some(Some(template)),
                Err(error) => {
                    self.key = Some(None);
                    push(errors, error);
                }
            },
            _ => match lit.parse::<Path>() {
                Ok(path) => self.krate = Some(path),
                Err(_) => push(
                    errors,
                    Error::new(
                        lit.span(),
                        format!(
                            "`crate` must be a path such as \"keel::cache\", not {:?}",
                            lit.value()
                        ),
                    ),
                ),
            },
        }
        Ok(())
    }

    fn finish(self, errors: &mut Option<Error>) -> Args {
        let key = match (self.key, self.prefix) {
            (Some(_), Some(prefix)) => {
                push(
                    errors,
                    Error::new(
                        prefix.span(),
                        "`prefix` cannot be combined with `key`: the template is the whole key",
                    ),
                );
                KeySource::AllArguments { prefix: None }
            }
            (Some(Some(template)), None) => KeySource::Template(template),
            // A template that did not parse has been reported already.
            (Some(None), None) => KeySource::AllArguments { prefix: None },
            (None, prefix) => KeySource::AllArguments {
                prefix: prefix.map(|lit| lit.value()),
            },
        };
        Args {
            cache: self
                .cache
                .unwrap_or_else(|| LitStr::new("default", proc_macro2::Span::call_site())),
            ttl: self.ttl.flatten(),
            key,
            krate: self
                .krate
                .unwrap_or_else(|| syn::parse_quote!(::keel_cache)),
        }
    }
}

/// Parses the `= "..."` after an argument name, with an error that shows
/// the expected form (and the seeds' `ttl = 300` spelled as a duration).
fn value_string(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<LitStr> {
    let value: Expr = meta.value()?.parse()?;
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if name == "ttl" => Err(Error::new(
            int.span(),
            format!(
                "`ttl` takes a duration string with a unit, such as `ttl = \"{}s\"`",
                int.base10_digits()
            ),
        )),
        other => Err(Error::new_spanned(
            other,
            format!("`{name}` takes a string literal, as in `{name} = \"...\"`"),
        )),
    }
}

/// Parses a `ttl` string as a humantime duration in whole milliseconds.
pub(crate) fn ttl_millis(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let invalid = |why: String| Error::new(lit.span(), format!("invalid `ttl` {text:?}: {why}"));
    let duration = humantime::parse_duration(&text).map_err(|error| {
        invalid(format!(
            "{error}; write a duration such as \"300ms\", \"5s\", \"1h\" or \"1h 30m\""
        ))
    })?;
    if duration.is_zero() {
        return Err(invalid(
            "it must be longer than zero; leave `ttl` out to use the cache's own TTL".to_owned(),
        ));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(invalid(
            "caches expire in whole milliseconds; round it to \"ms\"".to_owned(),
        ));
    }
    u64::try_from(duration.as_millis())
        .map_err(|_| invalid("it is too long to express in milliseconds".to_owned()))
}

fn path_text(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Adds `error` to the collected errors.
pub(crate) fn push(errors: &mut Option<Error>, error: Error) {
    match errors {
        Some(existing) => existing.combine(error),
        None => *errors = Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> syn::Result<Args> {
        Args::parse(tokens)
    }

    fn message(tokens: TokenStream) -> String {
        match parse(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn empty_attribute_uses_defaults() {
        let args = parse(TokenStream::new()).unwrap();
        assert_eq!(args.cache.value(), "default");
        assert_eq!(args.ttl, None);
        assert!(matches!(args.key, KeySource::AllArguments { prefix: None }));
        let krate = args.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(::keel_cache).to_string());
    }

    #[test]
    fn reads_every_argument() {
        let args = parse(quote!(
            cache = "api_cache",
            ttl = "300s",
            prefix = "user",
            crate = "keel::cache"
        ))
        .unwrap();
        assert_eq!(args.cache.value(), "api_cache");
        assert_eq!(args.ttl, Some(300_000));
        assert!(matches!(args.key, KeySource::AllArguments { prefix: Some(ref p) } if p == "user"));
        let krate = args.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(keel::cache).to_string());
    }

    #[test]
    fn key_template_is_kept() {
        let args = parse(quote!(cache = "users", key = "user:{user_id}")).unwrap();
        match args.key {
            KeySource::Template(template) => assert_eq!(template.names(), ["user_id"]),
            KeySource::AllArguments { .. } => panic!("expected a template"),
        }
    }

    #[test]
    fn ttl_accepts_humantime_strings() {
        let ms = |s: &str| ttl_millis(&LitStr::new(s, proc_macro2::Span::call_site()));
        assert_eq!(ms("300ms").unwrap(), 300);
        assert_eq!(ms("5s").unwrap(), 5_000);
        assert_eq!(ms("1h").unwrap(), 3_600_000);
        assert_eq!(ms("1h 30m").unwrap(), 5_400_000);
        assert_eq!(ms("2days").unwrap(), 172_800_000);
    }

    #[test]
    fn ttl_rejects_bad_zero_and_sub_millisecond_values() {
        let err = |s: &str| {
            ttl_millis(&LitStr::new(s, proc_macro2::Span::call_site()))
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("5x").starts_with("invalid `ttl` \"5x\": "),
            "{}",
            err("5x")
        );
        assert!(err("").starts_with("invalid `ttl` \"\": "));
        assert!(err("0s").contains("longer than zero"));
        assert!(err("1500us").contains("whole milliseconds"));
    }

    #[test]
    fn integer_ttl_suggests_a_unit() {
        assert_eq!(
            message(quote!(ttl = 300)),
            "`ttl` takes a duration string with a unit, such as `ttl = \"300s\"`"
        );
    }

    #[test]
    fn unknown_and_valueless_arguments_are_errors() {
        assert_eq!(
            message(quote!(cache_name = "x")),
            "unknown `#[cached]` argument `cache_name`; expected `cache`, `ttl`, `prefix`, \
             `key` or `crate` (the cache's name is `cache`)"
        );
        assert_eq!(
            message(quote!(keel::ttl = "5s")),
            "unknown `#[cached]` argument `keel::ttl`; expected `cache`, `ttl`, `prefix`, \
             `key` or `crate`"
        );
        assert_eq!(message(quote!(ttl)), "expected `ttl = \"...\"`");
        assert_eq!(
            message(quote!(cache = users)),
            "`cache` takes a string literal, as in `cache = \"...\"`"
        );
    }

    #[test]
    fn all_bad_values_are_reported_together() {
        assert_eq!(
            message(quote!(cache = "a", ttl = "soon", cache = "b", prefix = "")),
            "invalid `ttl` \"soon\": expected number at 0; write a duration such as \"300ms\", \"5s\", \"1h\" or \"1h 30m\"\n\
             duplicate `cache` argument\n\
             `prefix` must not be empty"
        );
    }

    #[test]
    fn prefix_and_key_exclude_each_other() {
        assert_eq!(
            message(quote!(prefix = "user", key = "user:{id}")),
            "`prefix` cannot be combined with `key`: the template is the whole key"
        );
    }

    #[test]
    fn crate_must_be_a_path() {
        assert_eq!(
            message(quote!(crate = "keel cache")),
            "`crate` must be a path such as \"keel::cache\", not \"keel cache\""
        );
    }
}
