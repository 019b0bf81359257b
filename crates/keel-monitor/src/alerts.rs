//! Alerts: threshold rules held for a duration, raising and resolving
//! [`Alert`] events to every subscriber.

use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::AlertRule;

/// Whether an [`Alert`] event raises or resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition has held for the rule's duration.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// An alert event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Alert {
    /// The rule's name.
    pub name: String,
    /// Raised or resolved.
    pub state: AlertState,
    /// The rule's severity.
    pub severity: String,
    /// The metric compared.
    pub metric: String,
    /// Its value when the event was made (`None`: the metric is gone).
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// When (RFC 3339).
    pub at: String,
}

/// A subscriber's end of the alert events. Events sent while a
/// subscriber lags more than 256 behind are skipped for it.
#[derive(Debug)]
pub struct AlertSubscription {
    rx: broadcast::Receiver<Alert>,
}

impl AlertSubscription {
    /// The next event; `None` once the service is gone.
    pub async fn recv(&mut self) -> Option<Alert> {
        loop {
            match self.rx.recv().await {
                Ok(alert) => return Some(alert),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Alert> {
        loop {
            match self.rx.try_recv() {
                Ok(alert) => return Some(alert),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The events as a `Stream`.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Alert> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            sub.recv().await.map(|alert| (alert, sub))
        })
    }
}

#[derive(Debug)]
struct RuleState {
    rule: AlertRule,
    /// When the condition started to hold (tokio's clock).
    since: Option<Instant>,
    firing: bool,
}

/// The rules and their state.
#[derive(Debug)]
pub(crate) struct AlertEngine {
    rules: Vec<RuleState>,
    tx: broadcast::Sender<Alert>,
}

impl AlertEngine {
    pub(crate) fn new(rules: Vec<AlertRule>) -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    rule,
                    since: None,
                    firing: false,
                })
                .collect(),
            tx,
        }
    }

    pub(crate) fn subscribe(&self) -> AlertSubscription {
        AlertSubscription {
            rx: self.tx.subscribe(),
        }
    }

    pub(crate) fn add(&mut self, rule: AlertRule) {
        self.rules.retain(|r| r.rule.name != rule.name);
        self.rules.push(RuleState {
            rule,
            since: None,
            firing: false,
        });
    }

    /// The rules firing now.
    pub(crate) fn firing(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.firing)
            .map(|r| r.rule.name.clone())
            .collect()
    }

    /// Compares every rule's metric (from `value_of`) with its threshold
    /// at `now`; sends an event for every rule that starts or stops
    /// firing, and returns them.
    pub(crate) fn evaluate(
        &mut self,
        now: Instant,
        mut value_of: impl FnMut(&AlertRule) -> Option<f64>,
    ) -> Vec<Alert> {
        let mut events = Vec::new();
        for r in &mut self.rules {
            let value = value_of(&r.rule);
            let (threshold, holds) = match (r.rule.above, r.rule.below) {
                (Some(t), _) => (t, value.is_some_and(|v| v > t)),
                (None, Some(t)) => (t, value.is_some_and(|v| v < t)),
                (None, None) => continue,
            };
            if holds {
                let since = *r.since.get_or_insert(now);
                let hold = r.rule.hold.unwrap_or_default();
                if !r.firing && now.duration_since(since) >= hold {
                    r.firing = true;
                    events.push(event(&r.rule, AlertState::Firing, value, threshold));
                }
            } else {
                r.since = None;
                if r.firing {
                    r.firing = false;
                    events.push(event(&r.rule, AlertState::Resolved, value, threshold));
                }
            }
        }
        for e in &events {
            match e.state {
                AlertState::Firing => tracing::warn!(
                    target: "keel_monitor",
                    category = "performance",
                    alert = %e.name,
                    severity = %e.severity,
                    metric = %e.metric,
                    value = e.value,
                    threshold = e.threshold,
                    "alert raised"
                ),
                AlertState::Resolved => tracing::info!(
                    target: "keel_monitor",
                    category = "performance",
                    alert = %e.name,
                    metric = %e.metric,
                    "alert resolved"
                ),
            }
            // No subscriber is not an error.
            let _ = self.tx.send(e.clone());
        }
        events
    }
}

fn event(rule: &AlertRule, state: AlertState, value: Option<f64>, threshold: f64) -> Alert {
    Alert {
        name: rule.name.clone(),
        state,
        severity: rule.severity.clone(),
        metric: rule.metric.clone(),
        value,
        threshold,
        at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    }
}
