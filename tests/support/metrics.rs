//! Reading the operator's `/metrics` page (OpenMetrics text).
#![allow(dead_code)]

use std::collections::BTreeMap;

/// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Every sample of `name`: its labels and value.
pub fn samples(metrics: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inner) => {
                    let (labels, value) = inner.rsplit_once('}')?;
                    (parse_labels(labels), value)
                }
                None if rest.starts_with(' ') => (BTreeMap::new(), rest),
                None => return None,
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// The values of the samples of `name` whose labels include all of `with`.
pub fn values(metrics: &str, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
    samples(metrics, name)
        .into_iter()
        .filter(|(labels, _)| {
            with.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| value)
        .collect()
}

/// The sum of the samples of `name` whose labels include all of `with`.
pub fn sum(metrics: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    values(metrics, name, with).into_iter().sum()
}

/// `a="x",b="y"` (values without escaped quotes, as the operator's are).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        labels.insert(key.trim_start_matches(',').to_string(), value.to_string());
        rest = after;
    }
    labels
}
