//! [`MonitoringConfig`]: the `[monitoring]` section of the configuration file.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_core::InvalidField;
use serde::{Deserialize, Serialize};

/// The `[monitoring]` section.
///
/// ```toml
/// [monitoring]
/// enabled = true               # false: no background task (reports, alerts, process figures)
/// sample_rate = 1.0            # share of calls whose latency is measured (counts stay exact)
/// report_interval = "60s"      # reports, process CPU and memory, rate windows
/// max_series = 10000           # distinct metric series kept; more are counted as dropped
/// series_idle_timeout = "10m"  # a series not updated for this long is forgotten
/// max_operations = 1000        # distinct measured operations; more share `other`
/// max_error_types = 100        # distinct error types; more share `other`
/// recent_errors = 50           # the last errors kept with their time and message
/// health_timeout = "2s"        # one health check waits at most this
/// health_cache = "1s"          # health results are reused for this long
/// alert_interval = "5s"        # how often alert rules are evaluated
///
/// [[monitoring.alerts]]
/// name = "slow-queries"
/// metric = "keel_operation_duration_seconds"
/// labels = { operation = "db.query" }
/// quantile = 0.99              # histograms: which quantile (default: the mean)
/// above = 0.25                 # or `below = ...`
/// for = "30s"                  # held this long before the alert is raised
/// severity = "warning"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// Whether [`start`](crate::DataMonitoringService::start) runs the
    /// background task (reports, alert evaluation, process figures).
    /// Measuring, counting and exposition work either way.
    pub enabled: bool,
    /// Share (0 < rate ≤ 1) of measured calls whose latency is recorded.
    pub sample_rate: f64,
    /// Interval of reports, process figures and per-interval rates.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// Most metric series (name + labels) kept at once.
    pub max_series: usize,
    /// A series not updated for this long is removed (`None`: never).
    #[serde(with = "humantime_serde")]
    pub series_idle_timeout: Option<Duration>,
    /// Most distinct operation names measured; the rest count as `other`.
    pub max_operations: usize,
    /// Most distinct error types counted; the rest count as `other`.
    pub max_error_types: usize,
    /// How many recent errors are kept with their time and message.
    pub recent_errors: usize,
    /// How long one health check may take before it counts as unhealthy.
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    /// How long a health result is reused before the checks run again.
    #[serde(with = "humantime_serde")]
    pub health_cache: Duration,
    /// How often alert rules are evaluated.
    #[serde(with = "humantime_serde")]
    pub alert_interval: Duration,
    /// Threshold rules.
    pub alerts: Vec<AlertRule>,
    /// An `http://` URL each raised and resolved alert is POSTed to as
    /// JSON (by the `keel` binary, through an HTTP pool, retried in the
    /// background). `None`: alerts go to subscribers and the log only.
    pub alert_webhook: Option<String>,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sample_rate: 1.0,
            report_interval: Duration::from_secs(60),
            max_series: 10_000,
            series_idle_timeout: Some(Duration::from_secs(600)),
            max_operations: 1000,
            max_error_types: 100,
            recent_errors: 50,
            health_timeout: Duration::from_secs(2),
            health_cache: Duration::from_secs(1),
            alert_interval: Duration::from_secs(5),
            alerts: Vec::new(),
            alert_webhook: None,
        }
    }
}

/// One alert rule: a metric compared with a threshold, held for a duration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertRule {
    /// The alert's name, unique among the rules.
    pub name: String,
    /// The metric's name, as exposed on `/metrics`.
    pub metric: String,
    /// Labels a series must carry to be considered (the highest value of
    /// the matching series is compared).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// For histograms: the quantile compared (absent: the mean).
    #[serde(default)]
    pub quantile: Option<f64>,
    /// Fires while the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Fires while the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// How long the condition must hold before the alert is raised.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
    /// Free text carried by the alert (`warning`, `critical`, ...).
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_severity() -> String {
    "warning".to_owned()
}

impl AlertRule {
    /// A rule firing while `metric` is above `threshold`, held for `hold`.
    pub fn above(name: &str, metric: &str, threshold: f64, hold: Duration) -> Self {
        Self {
            name: name.to_owned(),
            metric: metric.to_owned(),
            labels: BTreeMap::new(),
            quantile: None,
            above: Some(threshold),
            below: None,
            hold: Some(hold),
            severity: default_severity(),
        }
    }

    /// A rule firing while `metric` is below `threshold`, held for `hold`.
    pub fn below(name: &str, metric: &str, threshold: f64, hold: Duration) -> Self {
        Self {
            above: None,
            below: Some(threshold),
            ..Self::above(name, metric, threshold, hold)
        }
    }

    /// Restricts the rule to series carrying `key = value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Compares a histogram's `q` quantile instead of its mean.
    pub fn quantile(mut self, q: f64) -> Self {
        self.quantile = Some(q);
        self
    }
}

impl MonitoringConfig {
    /// Checks across fields; every problem's field path starts with
    /// `monitoring.`.
    pub fn validate(&self) -> Result<(), Vec<InvalidField>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, reason: &str| {
            problems.push(InvalidField::new(format!("monitoring.{field}"), reason));
        };
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            problem("sample_rate", "must be above 0 and at most 1");
        }
        for (field, value) in [
            ("report_interval", self.report_interval),
            ("health_timeout", self.health_timeout),
            ("alert_interval", self.alert_interval),
        ] {
            if value.is_zero() {
                problem(field, "must be longer than 0s");
            }
        }
        if self.series_idle_timeout == Some(Duration::ZERO) {
            problem(
                "series_idle_timeout",
                "must be longer than 0s (leave it out to keep idle series)",
            );
        }
        for (field, value) in [
            ("max_series", self.max_series),
            ("max_operations", self.max_operations),
            ("max_error_types", self.max_error_types),
        ] {
            if value == 0 {
                problem(field, "must be at least 1");
            }
        }
        if let Some(url) = &self.alert_webhook
            && !(url.starts_with("http://") && url.len() > "http://".len())
        {
            problem(
                "alert_webhook",
                &format!("{url:?} must be an http:// URL (this build has no TLS)"),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.alerts.iter().enumerate() {
            let at = |field: &str| format!("alerts[{i}].{field}");
            if !seen.insert(rule.name.as_str()) {
                problem(&at("name"), &format!("{:?} names two rules", rule.name));
            }
            if rule.metric.is_empty() {
                problem(&at("metric"), "must name a metric");
            }
            match (rule.above, rule.below) {
                (None, None) => problem(&at("above"), "set `above` or `below`"),
                (Some(_), Some(_)) => problem(&at("below"), "set `above` or `below`, not both"),
                _ => {}
            }
            if let Some(q) = rule.quantile
                && !(0.0..=1.0).contains(&q)
            {
                problem(&at("quantile"), "must be between 0 and 1");
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(MonitoringConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_cross_field_problem_is_reported() {
        let config = MonitoringConfig {
            sample_rate: 0.0,
            max_series: 0,
            alerts: vec![
                AlertRule::above("a", "m", 1.0, Duration::ZERO),
                AlertRule {
                    above: None,
                    ..AlertRule::above("a", "m", 1.0, Duration::ZERO)
                },
            ],
            ..MonitoringConfig::default()
        };
        let fields: Vec<String> = config
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "monitoring.sample_rate",
                "monitoring.max_series",
                "monitoring.alerts[1].name",
                "monitoring.alerts[1].above"
            ]
        );
    }
}
