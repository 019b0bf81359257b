//! The Prometheus text format (version 0.0.4): `# HELP` and `# TYPE` on
//! every family, histograms with cumulative `le` buckets.

use std::collections::HashSet;
use std::sync::Arc;

use metrics::Unit;

use crate::histogram::HistogramSnapshot;
use crate::performance::OperationSnapshot;
use crate::registry::{Kind, MetricsRegistry, SCALE, escape_into, render_labels};

/// Bucket bounds of latency histograms, seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Bucket bounds of other histograms: powers of ten from 1 to 10⁹.
const DECADE_BUCKETS: [f64; 10] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The content type of the text [`DataMonitoringService::render_prometheus`](crate::DataMonitoringService::render_prometheus) returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Built-in families rendered next to the registry's.
pub(crate) struct Extra<'a> {
    pub(crate) operations: &'a [OperationSnapshot],
    pub(crate) errors_by_type: &'a [(String, u64)],
}

struct Writer {
    out: String,
    emitted: HashSet<String>,
    cumulative: Vec<u64>,
}

impl Writer {
    /// Starts a family; `false` if a family of that name was written
    /// already (a name used with two kinds), whose series are then skipped.
    fn family(&mut self, name: &str, kind: Kind, help: &str) -> bool {
        if !self.emitted.insert(name.to_owned()) {
            return false;
        }
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
        true
    }

    fn sample_u64(&mut self, name: &str, suffix: &str, labels: &str, v: u64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.out.push_str(labels);
        self.out.push(' ');
        self.out.push_str(itoa::Buffer::new().format(v));
        self.out.push('\n');
    }

    fn sample_f64(&mut self, name: &str, suffix: &str, labels: &str, v: f64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.out.push_str(labels);
        self.out.push(' ');
        push_f64(&mut self.out, v);
        self.out.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &HistogramSnapshot, bounds: &[f64]) {
        let scaled: Vec<u64> = bounds.iter().map(|b| (b * SCALE) as u64).collect();
        let mut cumulative = std::mem::take(&mut self.cumulative);
        h.cumulative(&scaled, &mut cumulative);
        let open = if labels.is_empty() {
            String::from("{le=\"")
        } else {
            format!("{},le=\"", &labels[..labels.len() - 1])
        };
        for (b, c) in bounds.iter().zip(&cumulative) {
            self.out.push_str(name);
            self.out.push_str("_bucket");
            self.out.push_str(&open);
            push_f64(&mut self.out, *b);
            self.out.push_str("\"} ");
            self.out.push_str(itoa::Buffer::new().format(*c));
            self.out.push('\n');
        }
        self.out.push_str(name);
        self.out.push_str("_bucket");
        self.out.push_str(&open);
        self.out.push_str("+Inf\"} ");
        self.out.push_str(itoa::Buffer::new().format(h.count));
        self.out.push('\n');
        self.sample_f64(name, "_sum", labels, h.sum as f64 / SCALE);
        self.sample_u64(name, "_count", labels, h.count);
        self.cumulative = cumulative;
    }
}

/// Writes a float as Prometheus reads it.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// Renders every series of `registry` and the built-in families.
pub(crate) fn render(registry: &MetricsRegistry, extra: Option<Extra<'_>>) -> String {
    let descriptions = registry.descriptions();
    let help_of = |name: &str| -> (String, bool) {
        let base = name.strip_suffix("_total").unwrap_or(name);
        match descriptions.get(name).or_else(|| descriptions.get(base)) {
            Some(d) => (d.help.to_string(), matches!(d.unit, Some(Unit::Seconds))),
            None => (format!("Keel metric {name}."), false),
        }
    };
    let mut counters = registry.counters();
    let mut gauges = registry.gauges();
    let mut histograms = registry.histograms();
    let series = counters.len() + gauges.len() + histograms.len();
    let mut w = Writer {
        out: String::with_capacity(64 * series + 4096),
        emitted: HashSet::new(),
        cumulative: Vec::new(),
    };

    counters.sort_unstable_by(|a, b| (&a.id.name, &a.id.labels).cmp(&(&b.id.name, &b.id.labels)));
    let mut current: Option<(Arc<str>, bool)> = None;
    for c in &counters {
        let name = &*c.id.name;
        if current.as_ref().is_none_or(|(n, _)| &**n != name) {
            let exposed = counter_name(name);
            let (help, _) = help_of(name);
            let ok = w.family(&exposed, Kind::Counter, &help);
            current = Some((Arc::from(name), ok));
        }
        if let Some((_, true)) = current {
            let exposed = counter_name(name);
            w.sample_u64(&exposed, "", &c.id.labels, c.value());
        }
    }
    gauges.sort_unstable_by(|a, b| (&a.id.name, &a.id.labels).cmp(&(&b.id.name, &b.id.labels)));
    current = None;
    for g in &gauges {
        let name = &*g.id.name;
        if current.as_ref().is_none_or(|(n, _)| &**n != name) {
            let (help, _) = help_of(name);
            let ok = w.family(name, Kind::Gauge, &help);
            current = Some((Arc::from(name), ok));
        }
        if let Some((_, true)) = current {
            w.sample_f64(name, "", &g.id.labels, g.value());
        }
    }
    histograms.sort_unstable_by(|a, b| (&a.id.name, &a.id.labels).cmp(&(&b.id.name, &b.id.labels)));
    current = None;
    let mut bounds: &[f64] = &LATENCY_BUCKETS;
    for h in &histograms {
        let name = &*h.id.name;
        if current.as_ref().is_none_or(|(n, _)| &**n != name) {
            let (help, seconds) = help_of(name);
            bounds = if seconds || name.ends_with("_seconds") {
                &LATENCY_BUCKETS
            } else {
                &DECADE_BUCKETS
            };
            let ok = w.family(name, Kind::Histogram, &help);
            current = Some((Arc::from(name), ok));
        }
        if let Some((_, true)) = current {
            w.histogram(name, &h.id.labels, &h.hist.snapshot(), bounds);
        }
    }

    if let Some(extra) = extra {
        render_extra(&mut w, extra);
    }
    if w.family(
        "keel_monitor_series",
        Kind::Gauge,
        "Metric series held by the monitoring registry.",
    ) {
        w.sample_u64("keel_monitor_series", "", "", registry.series() as u64);
    }
    if w.family(
        "keel_monitor_series_dropped_total",
        Kind::Counter,
        "Series refused because the registry held max_series.",
    ) {
        w.sample_u64(
            "keel_monitor_series_dropped_total",
            "",
            "",
            registry.dropped_series(),
        );
    }
    w.out
}

fn render_extra(w: &mut Writer, extra: Extra<'_>) {
    let ops = extra.operations;
    let label = |name: &str| {
        let mut s = String::from("{operation=\"");
        escape_into(&mut s, name);
        s.push_str("\"}");
        s
    };
    if w.family(
        "keel_operation_calls_total",
        Kind::Counter,
        "Calls of each measured operation.",
    ) {
        for op in ops {
            w.sample_u64("keel_operation_calls_total", "", &label(&op.name), op.calls);
        }
    }
    if w.family(
        "keel_operation_errors_total",
        Kind::Counter,
        "Failed calls of each measured operation.",
    ) {
        for op in ops {
            w.sample_u64(
                "keel_operation_errors_total",
                "",
                &label(&op.name),
                op.errors,
            );
        }
    }
    if w.family(
        "keel_operation_duration_seconds",
        Kind::Histogram,
        "Latency of the sampled calls of each measured operation.",
    ) {
        for op in ops {
            w.histogram(
                "keel_operation_duration_seconds",
                &label(&op.name),
                &op.latency,
                &LATENCY_BUCKETS,
            );
        }
    }
    if w.family(
        "keel_errors_total",
        Kind::Counter,
        "Errors recorded, by type (types past max_error_types as other).",
    ) {
        for (ty, n) in extra.errors_by_type {
            let labels = render_labels([("type", ty.as_str())].into_iter());
            w.sample_u64("keel_errors_total", "", &labels, *n);
        }
    }
}

/// Counters are exposed with a `_total` suffix.
fn counter_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.ends_with("_total") {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("{name}_total"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_help_and_type_and_histograms_their_buckets() {
        let registry = MetricsRegistry::new(100, None);
        registry.describe("requests_total", None, "Requests served.");
        registry
            .counter("requests_total", &[("route", "/a")])
            .increment(3);
        registry.counter("jobs", &[]).increment(1);
        registry.gauge("depth", &[]).set(1.5);
        let h = registry.histogram("wait_seconds", &[("pool", "db")]);
        h.record(0.002);
        h.record(0.2);
        let text = render(&registry, None);
        assert!(text.contains("# HELP requests_total Requests served.\n# TYPE requests_total counter\nrequests_total{route=\"/a\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE depth gauge\ndepth 1.5\n"), "{text}");
        assert!(
            text.contains("wait_seconds_bucket{pool=\"db\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wait_seconds_bucket{pool=\"db\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("wait_seconds_count{pool=\"db\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE jobs_total counter\njobs_total 1\n"),
            "{text}"
        );
    }
}
