use keel_macros::cached;

#[cached(ttl = "5s")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
