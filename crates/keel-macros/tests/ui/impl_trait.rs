use keel_macros::cached;

#[cached]
async fn render(value: impl std::fmt::Display) -> String {
    value.to_string()
}

#[cached]
async fn numbers() -> impl Clone {
    vec![1, 2, 3]
}

fn main() {}
