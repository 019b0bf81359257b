//! Compile errors of `#[cached]`: each file under `tests/ui/` is a
//! signature or attribute the macro must reject, with the message it must
//! print next to it (`.stderr`). They come from the macro itself, so no
//! cache runtime is needed. Regenerate with `TRYBUILD=overwrite` and review.

#[test]
fn unsupported_signatures_and_arguments_fail_to_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
