use keel_macros::cached;

#[cached]
struct Settings {
    theme: String,
}

fn main() {}
