//! Collecting measurements and printing them as a table or JSON lines.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::{Deserialize, Serialize};

/// One measurement, in the JSON contract's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) suite: String,
    pub(crate) case: String,
    #[serde(rename = "impl")]
    pub(crate) implementation: String,
    pub(crate) metric: String,
    pub(crate) value: f64,
}

/// Where suites put their numbers.
#[derive(Debug)]
pub(crate) struct Report {
    json: bool,
    /// Notes are printed at once as `{"note": ...}` lines (a child process
    /// of `suites::child`).
    notes_as_json: bool,
    suite: String,
    rows: Vec<Row>,
    /// Notes wait here until the table is printed above them.
    notes: std::sync::Mutex<Vec<String>>,
}

impl Report {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            notes_as_json: false,
            suite: String::new(),
            rows: Vec::new(),
            notes: std::sync::Mutex::default(),
        }
    }

    /// A child process's report: rows and notes as JSON lines.
    pub(crate) fn child() -> Self {
        Self {
            notes_as_json: true,
            ..Self::new(true)
        }
    }

    pub(crate) fn begin(&mut self, suite: &str) {
        self.suite = suite.to_owned();
        self.rows.clear();
        if !self.json {
            println!("## {suite}\n");
        }
    }

    /// Records one measurement; in JSON mode it is printed at once.
    pub(crate) fn record(&mut self, case: &str, implementation: &str, metric: &str, value: f64) {
        let row = Row {
            suite: self.suite.clone(),
            case: case.to_owned(),
            implementation: implementation.to_owned(),
            metric: metric.to_owned(),
            value,
        };
        if self.json {
            if let Ok(line) = serde_json::to_string(&row) {
                println!("{line}");
            }
        } else {
            eprint!(".");
            let _ = std::io::stderr().flush();
        }
        self.rows.push(row);
    }

    /// A free-form note under the table (ignored in JSON mode).
    pub(crate) fn note(&self, text: &str) {
        if self.notes_as_json {
            if let Ok(line) = serde_json::to_string(&serde_json::json!({ "note": text })) {
                println!("{line}");
            }
        } else if !self.json
            && let Ok(mut notes) = self.notes.lock()
        {
            notes.push(text.to_owned());
        }
    }

    /// The value recorded for (case, impl, metric), if any.
    pub(crate) fn get(&self, case: &str, implementation: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.case == case && r.implementation == implementation && r.metric == metric)
            .map(|r| r.value)
    }

    /// Prints the suite's table, then its notes.
    pub(crate) fn end(&mut self) {
        self.print_table();
        let notes = self.notes.get_mut().map(std::mem::take).unwrap_or_default();
        for note in notes {
            println!("{note}");
        }
    }

    /// Prints the table: a row per (case, metric), a column per impl.
    fn print_table(&mut self) {
        if self.json || self.rows.is_empty() {
            return;
        }
        eprintln!();
        let mut impls: Vec<String> = Vec::new();
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut cells: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for row in &self.rows {
            if !impls.contains(&row.implementation) {
                impls.push(row.implementation.clone());
            }
            let key = (row.case.clone(), row.metric.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
            cells.insert(
                (
                    row.case.clone(),
                    row.metric.clone(),
                    row.implementation.clone(),
                ),
                row.value,
            );
        }
        let mut header = String::from("| case | metric |");
        let mut rule = String::from("|---|---|");
        for name in &impls {
            header.push_str(&format!(" {name} |"));
            rule.push_str("---:|");
        }
        println!("{header}\n{rule}");
        for (case, metric) in &keys {
            let mut line = format!("| {case} | {metric} |");
            for name in &impls {
                match cells.get(&(case.clone(), metric.clone(), name.clone())) {
                    Some(v) => line.push_str(&format!(" {} |", format_value(metric, *v))),
                    None => line.push_str(" – |"),
                }
            }
            println!("{line}");
        }
        println!();
    }
}

fn format_value(metric: &str, value: f64) -> String {
    if metric == "hit_ratio" {
        format!("{:.2}%", value * 100.0)
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}
