use keel_macros::cached;

#[cached(ttl = "5 fortnights")]
async fn unknown_unit(id: u64) -> u64 {
    id
}

#[cached(ttl = "0s")]
async fn zero(id: u64) -> u64 {
    id
}

#[cached(ttl = "1500us")]
async fn sub_millisecond(id: u64) -> u64 {
    id
}

#[cached(ttl = 300)]
async fn integer(id: u64) -> u64 {
    id
}

fn main() {}
