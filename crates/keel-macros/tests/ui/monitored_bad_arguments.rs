use keel_macros::monitored;

#[monitored(name = "", name = "again")]
fn work() {}

#[monitored(label = "x")]
fn other() {}

#[monitored(name = 5)]
fn third() {}

fn main() {}
