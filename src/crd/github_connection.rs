//! The `GitHubConnection` custom resource (cluster-scoped): a GitHub host and
//! the credentials to use there, held in a Secret of one namespace the
//! operator is configured with (`--connections-namespace`), and the
//! namespaces whose RunnerPools and RunnerGroups may use them
//! (`spec.github.connectionRef`). The credentials then live outside the
//! namespaces where runner pods, which run untrusted jobs, live.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::github::SecretReference;

/// GitHub credentials kept out of the runners' namespaces. The Secret is
/// read from the operator's connections namespace, and only for pools and
/// groups of the namespaces this connection allows; its credentials are sent
/// only to this connection's apiUrl.
// rustfmt spreads the print columns over lines, where clippy takes their
// `type_` keys for one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "actions.runnerpool.dev",
    version = "v1alpha1",
    kind = "GitHubConnection",
    shortname = "ghc",
    category = "runnerpool-operator",
    derive = "PartialEq",
    doc = "GitHub credentials held in the operator's connections namespace, for the RunnerPools and RunnerGroups of the namespaces it allows.",
    printcolumn(name = "API", type_ = "string", json_path = ".spec.apiUrl"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".spec.credentialsSecret.name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaces) || has(self.namespaceSelector)").message("set namespaces and/or namespaceSelector: the namespaces whose RunnerPools and RunnerGroups may use this connection (namespaceSelector: {} allows every namespace)"))]
pub struct GitHubConnectionSpec {
    /// The REST API base the credentials are for: `https://api.github.com`
    /// (default) or `https://HOST/api/v3` for GitHub Enterprise Server.
    /// Plain `http` only for loopback hosts. A pool or group using this
    /// connection must have the same `spec.github.apiUrl`: the credentials
    /// are never sent anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(localhost|127\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')").message("apiUrl must start with https:// (plain http:// is allowed only for a loopback host: localhost, 127.x.x.x or [::1])"))]
    pub api_url: Option<String>,

    /// PEM bundle of extra certificate authorities to trust for apiUrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub ca_bundle: Option<String>,

    /// The Secret in the operator's connections namespace (its
    /// `--connections-namespace`, by default its own) holding key `token`,
    /// or keys `appId`, `installationId` and `privateKey`.
    pub credentials_secret: SecretReference,

    /// Namespaces whose RunnerPools and RunnerGroups may use this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub namespaces: Option<Vec<String>>,

    /// Namespaces, by their labels, whose RunnerPools and RunnerGroups may
    /// use this connection (in addition to `namespaces`); `{}` allows every
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

impl GitHubConnectionSpec {
    /// Whether `namespace`, with `labels` (`None` while not read), may use
    /// this connection; `None` when only its labels can tell.
    pub fn allows(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Option<bool> {
        if self.namespaces.iter().flatten().any(|n| n == namespace) {
            return Some(true);
        }
        let Some(selector) = &self.namespace_selector else {
            return Some(false);
        };
        labels.map(|labels| selects(selector, labels))
    }
}

/// Kubernetes' label selector semantics: every `matchLabels` pair and every
/// expression must hold; an empty selector selects everything. An unknown
/// operator selects nothing.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> GitHubConnectionSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespaces_are_allowed_by_name_or_by_labels() {
        let named = spec("{credentialsSecret: {name: gh}, namespaces: [ci, build]}");
        assert_eq!(named.allows("ci", None), Some(true));
        assert_eq!(
            named.allows("other", None),
            Some(false),
            "no selector: no need for labels"
        );

        let selected = spec(
            "{credentialsSecret: {name: gh}, namespaces: [ci], namespaceSelector: {matchLabels: {team: a}, matchExpressions: [{key: tier, operator: NotIn, values: [prod]}]}}",
        );
        assert_eq!(selected.allows("ci", None), Some(true));
        assert_eq!(selected.allows("x", None), None);
        assert_eq!(
            selected.allows("x", Some(&labels(&[("team", "a")]))),
            Some(true)
        );
        assert_eq!(
            selected.allows("x", Some(&labels(&[("team", "a"), ("tier", "prod")]))),
            Some(false)
        );
        assert_eq!(
            selected.allows("x", Some(&labels(&[("team", "b")]))),
            Some(false)
        );

        let everyone = spec("{credentialsSecret: {name: gh}, namespaceSelector: {}}");
        assert_eq!(everyone.allows("x", Some(&labels(&[]))), Some(true));
        let odd = spec(
            "{credentialsSecret: {name: gh}, namespaceSelector: {matchExpressions: [{key: a, operator: Sometimes}]}}",
        );
        assert_eq!(odd.allows("x", Some(&labels(&[("a", "1")]))), Some(false));
        let exists = spec(
            "{credentialsSecret: {name: gh}, namespaceSelector: {matchExpressions: [{key: a, operator: Exists}, {key: b, operator: DoesNotExist}, {key: c, operator: In, values: ['1']}]}}",
        );
        assert_eq!(
            exists.allows("x", Some(&labels(&[("a", ""), ("c", "1")]))),
            Some(true)
        );
        assert_eq!(
            exists.allows("x", Some(&labels(&[("a", ""), ("b", ""), ("c", "1")]))),
            Some(false)
        );
    }
}
