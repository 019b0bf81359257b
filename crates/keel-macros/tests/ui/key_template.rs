use keel_macros::cached;

struct Db;

#[cached(cache = "users", key = "user:{usr_id}")]
async fn unknown_placeholder(user_id: u64, db: &Db) -> u64 {
    let _ = db;
    user_id
}

#[cached(key = "user:{user_id")]
async fn unclosed(user_id: u64) -> u64 {
    user_id
}

#[cached(key = "user:{}")]
async fn positional(user_id: u64) -> u64 {
    user_id
}

fn main() {}
