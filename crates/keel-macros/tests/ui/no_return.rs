use keel_macros::cached;

#[cached]
async fn refresh(id: u64) {
    let _ = id;
}

#[cached]
async fn touch(id: u64) -> () {
    let _ = id;
}

fn main() {}
