//! Registers the operator's metrics under the `runnerpool` prefix and keeps
//! their names and types, which the registry does not tell: the series
//! names the `/metrics` page can hold (what dashboards and alerts may
//! query) come from here.

use std::collections::BTreeSet;

use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

/// The prefix of every metric name.
pub const PREFIX: &str = "runnerpool";

pub struct Registrar {
    pub registry: Registry,
    names: Vec<(String, MetricType)>,
}

impl Registrar {
    pub fn new() -> Self {
        Registrar {
            registry: Registry::with_prefix(PREFIX),
            names: Vec::new(),
        }
    }

    pub fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M) {
        self.names.push((format!("{PREFIX}_{name}"), M::TYPE));
        self.registry.register(name, help, metric);
    }

    /// Every series name on the wire: a counter `x` is `x_total`, a
    /// histogram `x_bucket`, `x_sum` and `x_count`.
    pub fn series_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, kind) in &self.names {
            let suffixes: &[&str] = match kind {
                MetricType::Counter => &["_total"],
                MetricType::Histogram => &["_bucket", "_sum", "_count"],
                MetricType::Info => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        names
    }
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar::new()
    }
}
