use keel_macros::cached;

#[cached(cache = "a", cache = "b")]
async fn twice(id: u64) -> u64 {
    id
}

#[cached(ttl)]
async fn valueless(id: u64) -> u64 {
    id
}

#[cached(cache = users)]
async fn not_a_string(id: u64) -> u64 {
    id
}

#[cached(prefix = "user", key = "user:{id}")]
async fn prefix_and_key(id: u64) -> u64 {
    id
}

fn main() {}
