use keel_macros::cached;

#[cached(cache_name = "api_cache", ttl = "300s")]
async fn call(param: String) -> String {
    param
}

fn main() {}
