use keel_macros::cached;

struct Repo;

impl Repo {
    #[cached(cache = "users")]
    async fn load(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
