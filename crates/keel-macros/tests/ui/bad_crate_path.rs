use keel_macros::cached;

#[cached(crate = "keel cache")]
async fn load(id: u64) -> u64 {
    id
}

fn main() {}
