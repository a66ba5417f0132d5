//! Where runners register and with which credentials: [`GitHubSpec`] and the
//! [`SecretReference`] or [`ConnectionReference`] (a `GitHubConnection`) it
//! names, shared by `RunnerPool` and `RunnerGroup` (a group's organization
//! and credentials are read as a `GitHubSpec`).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where the runners register.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.enterprise), has(self.organization), has(self.repository)].filter(x, x).size() == 1").message("set exactly one of enterprise, organization or repository"))]
#[x_kube(validation = Rule::new("(has(self.enterprise) ? self.enterprise : '') == (has(oldSelf.enterprise) ? oldSelf.enterprise : '') && (has(self.organization) ? self.organization : '') == (has(oldSelf.organization) ? oldSelf.organization : '') && (has(self.repository) ? self.repository : '') == (has(oldSelf.repository) ? oldSelf.repository : '')").message("enterprise, organization and repository cannot change on a live pool: its runners are registered there. Create a new RunnerPool for the new scope (and delete this one)"))]
#[x_kube(validation = Rule::new("(has(self.apiUrl) ? self.apiUrl : 'https://api.github.com') == (has(oldSelf.apiUrl) ? oldSelf.apiUrl : 'https://api.github.com')").message("apiUrl cannot change on a live pool: its runners are registered on that GitHub. Create a new RunnerPool for another GitHub host (and delete this one)"))]
#[x_kube(validation = Rule::new("has(self.credentialsSecret) != has(self.connectionRef)").message("set exactly one of credentialsSecret (a Secret in this namespace) or connectionRef (a GitHubConnection holding the credentials outside it)"))]
#[x_kube(validation = Rule::new("!has(self.connectionRef) || !has(self.caBundle)").message("caBundle comes from the GitHubConnection when connectionRef is set: set it there"))]
pub struct GitHubSpec {
    /// Enterprise slug: runners are registered at enterprise level. Needs a
    /// classic token with `manage_runners:enterprise` (GitHub's rule).
    /// Cannot change once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub enterprise: Option<String>,

    /// Organization login: runners are registered at organization level.
    /// Cannot change once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub organization: Option<String>,

    /// Repository as `owner/name`: runners are registered for that repository
    /// (no runner groups there). Cannot change once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 201),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
    )]
    pub repository: Option<String>,

    /// The REST API base: `https://api.github.com` (default) or
    /// `https://HOST/api/v3` for GitHub Enterprise Server. Plain `http` is
    /// accepted only for loopback hosts (localhost, 127.x.x.x, [::1]).
    /// Cannot change once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(localhost|127\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')").message("apiUrl must start with https:// (plain http:// is allowed only for a loopback host: localhost, 127.x.x.x or [::1])"))]
    pub api_url: Option<String>,

    /// PEM bundle of extra certificate authorities to trust for apiUrl
    /// (GitHub Enterprise Server with a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub ca_bundle: Option<String>,

    /// The Secret in the pool's namespace that holds the credentials: either
    /// key `token` (a personal access token), or keys `appId`,
    /// `installationId` and `privateKey` (a GitHub App installation). Not
    /// with `containerMode: kubernetes`, whose jobs may read the namespace's
    /// Secrets: use connectionRef there. Exactly one of credentialsSecret
    /// and connectionRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,

    /// A GitHubConnection (cluster-scoped) that allows this namespace: the
    /// credentials stay in the operator's connections namespace, out of the
    /// runners' reach. apiUrl must be the connection's; its caBundle is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<ConnectionReference>,
}

/// A Secret in the pool's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// A GitHubConnection, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReference {
    /// Name of the GitHubConnection.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}
