//! `StructuredFormatter`: the tracing layer that writes one JSON object per line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::clock::{Clock, SystemClock};
use crate::json::{self, Escaper, TimestampOffset};
use crate::level::{LogCategory, LogLevel};
use crate::writer::NonBlocking;

/// Where [`StructuredFormatter`] sends finished lines.
///
/// Implemented by [`NonBlocking`] (queue, shed, route) and by `Mutex<W>`
/// for any `std::io::Write` (a synchronous writer, e.g. stdout or a
/// `Vec<u8>` in tests).
pub trait LineWriter: Send + Sync + 'static {
    /// Takes one complete line (ending in `\n`).
    fn write_line(&self, level: Level, category: LogCategory, line: &[u8]);
}

impl LineWriter for NonBlocking {
    fn write_line(&self, level: Level, category: LogCategory, line: &[u8]) {
        NonBlocking::write_line(self, level, category, line);
    }
}

impl<W: std::io::Write + Send + 'static> LineWriter for Mutex<W> {
    fn write_line(&self, _level: Level, _category: LogCategory, line: &[u8]) {
        let mut out = self.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(line);
    }
}

/// A `tracing-subscriber` layer writing each event as one JSON line:
///
/// ```json
/// {"timestamp":"2026-11-21T10:00:00.000000Z","level":"INFO","category":"system",
///  "logger":"my_app::orders","message":"order placed","order_id":42,
///  "spans":[{"name":"request","trace_id":"4bf92f"}],"span_id":1,"trace_id":"4bf92f"}
/// ```
///
/// (one line in the file). Keys:
/// - `timestamp`: RFC 3339 with microseconds, UTC (`Z`) or the configured offset.
/// - `level`: `TRACE`, `DEBUG`, `INFO`, `WARNING`, `ERROR`, or `CRITICAL`
///   for an ERROR event with `critical = true`.
/// - `category`: the event's `category` field (see [`LogCategory`]),
///   `system` when absent; an unknown name is kept as `category_unknown`.
/// - `logger`: the event's `logger` field if it has one (set by
///   [`EnhancedLogger`](crate::EnhancedLogger)), else its target.
/// - every other field of the event, by name (`message` and `trace_id`
///   included); a field named like a key the formatter writes itself
///   (`timestamp`, `level`, `logger`, `spans`, `span_id`, `extra`,
///   `category_unknown`) is written as `field.<name>`, and so is a span
///   field called `name`.
///   The `keel.extra` field of [`EnhancedLogger`](crate::EnhancedLogger) is
///   written as the JSON value `extra`.
/// - `spans`: the event's spans, root first, each with its `name` and fields.
/// - `span_id`: the innermost span's tracing id; `trace_id`: the nearest
///   `trace_id` field of a span, when the event does not carry its own.
///
/// Every line is valid JSON whatever the values hold: strings are escaped
/// (control characters as `\u00XX`), non-finite floats are strings, and
/// output is always UTF-8 (tracing hands over `&str`, and byte fields are
/// written through their `Debug` form).
///
/// Each thread formats into its own reused buffer: an event costs no
/// allocation beyond what its `Debug` values make.
#[derive(Debug)]
pub struct StructuredFormatter<W = NonBlocking> {
    writer: W,
    clock: Arc<dyn Clock>,
    offset: TimestampOffset,
}

impl<W: LineWriter> StructuredFormatter<W> {
    /// A formatter writing to `writer`, timestamps in UTC from the system clock.
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            clock: Arc::new(SystemClock),
            offset: TimestampOffset::UTC,
        }
    }

    /// Writes timestamps at `offset` instead of UTC.
    pub fn with_offset(mut self, offset: TimestampOffset) -> Self {
        self.offset = offset;
        self
    }

    /// Reads timestamps from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Formats `event` into `buf` and returns its level and category.
    fn format<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        buf: &mut Vec<u8>,
    ) -> (Level, LogCategory)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let fields = meta.fields();
        let mut special = Special::default();
        let has_special = fields.field("category").is_some()
            || fields.field("critical").is_some()
            || fields.field("logger").is_some();
        if has_special {
            event.record(&mut special);
        }
        let level = LogLevel::from_tracing(*meta.level(), special.critical);
        let category = special.category.unwrap_or_default();

        buf.extend_from_slice(b"{\"timestamp\":\"");
        json::write_timestamp(buf, self.clock.now(), self.offset);
        buf.extend_from_slice(b"\",\"level\":\"");
        buf.extend_from_slice(level.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"category\":\"");
        buf.extend_from_slice(category.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"logger\":");
        json::write_str(buf, special.logger.as_deref().unwrap_or(meta.target()));
        if let Some(unknown) = &special.unknown_category {
            buf.extend_from_slice(b",\"category_unknown\":");
            json::write_str(buf, unknown);
        }
        let mut visitor = FieldWriter {
            buf,
            role: Role::Event,
            trace_id: None,
        };
        event.record(&mut visitor);
        let event_has_trace = fields.field("trace_id").is_some();

        if let Some(scope) = ctx.event_scope(event) {
            let mut leaf = None;
            let mut trace_id: Option<String> = None;
            buf.extend_from_slice(b",\"spans\":[");
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"{\"name\":");
                json::write_str(buf, span.name());
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    buf.extend_from_slice(fields.json.as_bytes());
                    if fields.trace_id.is_some() {
                        trace_id.clone_from(&fields.trace_id);
                    }
                }
                buf.push(b'}');
                leaf = Some(span.id());
            }
            buf.push(b']');
            if let Some(id) = leaf {
                buf.extend_from_slice(b",\"span_id\":");
                json::write_u64(buf, id.into_u64());
            }
            if let (Some(trace_id), false) = (trace_id, event_has_trace) {
                buf.extend_from_slice(b",\"trace_id\":");
                json::write_str(buf, &trace_id);
            }
        }
        buf.extend_from_slice(b"}\n");
        (*meta.level(), category)
    }
}

/// Per-thread buffers above this size are released after use.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl<S, W> Layer<S> for StructuredFormatter<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: LineWriter,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        fields.record(|v| attrs.record(v));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<SpanFields>() {
            fields.record(|v| values.record(v));
        } else {
            let mut fields = SpanFields::default();
            fields.record(|v| values.record(v));
            ext.insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |buf: &mut Vec<u8>| {
            buf.clear();
            let (level, category) = self.format(event, &ctx, buf);
            self.writer.write_line(level, category, buf);
        };
        let reused = BUF.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                write(&mut buf);
                if buf.capacity() > MAX_KEPT_BUFFER {
                    // One huge event should not pin its memory to the thread.
                    *buf = Vec::with_capacity(512);
                }
                true
            }
            Err(_) => false,
        });
        // Re-entered (an event logged while formatting one) or thread-local
        // storage is gone: use a buffer of its own.
        if !matches!(reused, Ok(true)) {
            write(&mut Vec::with_capacity(512));
        }
    }
}

/// A span's fields, pre-rendered as `,"k":v` pairs.
#[derive(Debug, Default)]
struct SpanFields {
    json: String,
    trace_id: Option<String>,
}

impl SpanFields {
    fn record(&mut self, record: impl FnOnce(&mut FieldWriter<'_>)) {
        let mut buf = std::mem::take(&mut self.json).into_bytes();
        let mut visitor = FieldWriter {
            buf: &mut buf,
            role: Role::Span,
            trace_id: None,
        };
        record(&mut visitor);
        if let Some(trace_id) = visitor.trace_id.take() {
            self.trace_id = Some(trace_id);
        }
        // Only escaped `&str` data and ASCII were written.
        self.json = String::from_utf8(buf).unwrap_or_default();
    }
}

/// The category an event names in its `category` field (`system` when it
/// has none or names an unknown one), as [`StructuredFormatter`] routes it.
pub(crate) fn event_category(event: &Event<'_>) -> LogCategory {
    if event.metadata().fields().field("category").is_none() {
        return LogCategory::System;
    }
    let mut special = Special::default();
    event.record(&mut special);
    special.category.unwrap_or_default()
}

/// The fields that shape the top-level keys, read before writing them.
#[derive(Debug, Default)]
struct Special {
    category: Option<LogCategory>,
    unknown_category: Option<String>,
    critical: bool,
    logger: Option<String>,
}

impl Special {
    fn set_category(&mut self, value: &str) {
        match LogCategory::from_str(value) {
            Ok(category) => self.category = Some(category),
            Err(_) => self.unknown_category = Some(value.to_owned()),
        }
    }
}

impl Visit for Special {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "category" => self.set_category(value),
            "logger" => self.logger = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "critical" {
            self.critical = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "category" => self.set_category(&format!("{value:?}")),
            "logger" => self.logger = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Event,
    Span,
}

/// Writes fields as `,"name":value` straight into the line buffer.
struct FieldWriter<'a> {
    buf: &'a mut Vec<u8>,
    role: Role,
    trace_id: Option<String>,
}

/// Names the formatter writes itself at the top level.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "logger",
    "spans",
    "span_id",
    "category_unknown",
    "extra",
];

impl FieldWriter<'_> {
    /// Writes `,"name":` and returns `false` if the field is not written at all.
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.role == Role::Event {
            match name {
                "category" | "critical" | "logger" | "keel.extra" => return false,
                _ => {}
            }
        }
        self.buf.extend_from_slice(b",\"");
        let clashes = match self.role {
            Role::Event => RESERVED.contains(&name),
            Role::Span => name == "name",
        };
        if clashes {
            self.buf.extend_from_slice(b"field.");
        }
        json::write_escaped(self.buf, name);
        self.buf.extend_from_slice(b"\":");
        true
    }

    fn capture_trace_id(&mut self, field: &Field, value: impl FnOnce() -> String) {
        if self.role == Role::Span && field.name() == "trace_id" {
            self.trace_id = Some(value());
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.role == Role::Event && field.name() == "keel.extra" {
            // Written by `EnhancedLogger` with serde_json; checked anyway so
            // a hand-made `keel.extra` field cannot break the line.
            if !value.is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(value).is_ok() {
                self.buf.extend_from_slice(b",\"extra\":");
                self.buf.extend_from_slice(value.as_bytes());
            }
            return;
        }
        self.capture_trace_id(field, || value.to_owned());
        if self.key(field) {
            json::write_str(self.buf, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.capture_trace_id(field, || value.to_string());
        if self.key(field) {
            json::write_i64(self.buf, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.capture_trace_id(field, || value.to_string());
        if self.key(field) {
            json::write_u64(self.buf, value);
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.key(field) {
            self.buf
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.key(field) {
            self.buf
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            json::write_f64(self.buf, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.buf
                .extend_from_slice(if value { b"true" } else { b"false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            self.buf.push(b'"');
            let _ = write!(Escaper(self.buf), "{value}");
            self.buf.push(b'"');
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.capture_trace_id(field, || format!("{value:?}"));
        if self.key(field) {
            self.buf.push(b'"');
            let _ = write!(Escaper(self.buf), "{value:?}");
            self.buf.push(b'"');
        }
    }
}
