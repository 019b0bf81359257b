//! Declares the `keel_loom` cfg so `--cfg keel_loom` builds pass `unexpected_cfgs`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(keel_loom)");
}
