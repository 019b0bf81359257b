use keel_macros::monitored;

#[monitored]
struct Service;

#[monitored(name = "answer")]
const fn answer() -> u8 {
    42
}

fn main() {}
