//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_log::{StructuredLogEntry, list_rotated};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// 2026-11-21T10:00:00Z.
pub fn ten_o_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_255_200)
}

/// Every line of log `stem` in `dir`: rotated files oldest first
/// (gunzipped), then the active file.
pub fn read_all_lines(dir: &Path, stem: &str) -> Vec<String> {
    let mut text = String::new();
    for path in list_rotated(dir, stem).expect("list rotated files") {
        let bytes = std::fs::read(&path).expect("read rotated file");
        if path.extension().is_some_and(|e| e == "gz") {
            let mut decoder = flate2::read::MultiGzDecoder::new(bytes.as_slice());
            decoder.read_to_string(&mut text).expect("gunzip");
        } else {
            text.push_str(std::str::from_utf8(&bytes).expect("utf-8"));
        }
    }
    if let Ok(active) = std::fs::read_to_string(dir.join(format!("{stem}.log"))) {
        text.push_str(&active);
    }
    text.lines().map(str::to_owned).collect()
}

pub fn parse(line: &str) -> StructuredLogEntry {
    StructuredLogEntry::parse(line).unwrap_or_else(|e| panic!("invalid line {line:?}: {e}"))
}

/// File names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One event as a capturing layer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub thread: String,
    pub level: tracing::Level,
    pub target: String,
    pub fields: Vec<(String, String)>,
}

impl Seen {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A layer that records every event (thread, level, target, fields).
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Capture {
    pub fn events(&self) -> Vec<Seen> {
        self.seen.lock().expect("capture lock").clone()
    }
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let seen = Seen {
            thread: std::thread::current().name().unwrap_or("").to_owned(),
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
        };
        self.seen.lock().expect("capture lock").push(seen);
    }
}
