use keel_macros::cached;

#[cached]
async fn load<T: Clone>(value: T) -> T {
    value
}

#[cached]
async fn count<const N: usize>() -> usize {
    N
}

fn main() {}
