//! The `RunnerGroup` custom resource: an organization's or an enterprise's
//! runner group on GitHub, kept as declared (settings and access list) by the
//! operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::github::{ConnectionReference, GitHubSpec, SecretReference};

/// An organization or enterprise runner group managed declaratively: created
/// when missing (or adopted with `adopt: true`), its settings and access list
/// put back when changed by hand, and deleted with this object once no runner
/// is in it (unless `deletionPolicy: Retain`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "actions.runnerpool.dev",
    version = "v1alpha1",
    kind = "RunnerGroup",
    namespaced,
    shortname = "rg",
    category = "runnerpool-operator",
    status = "RunnerGroupStatus",
    derive = "PartialEq",
    doc = "An organization's or enterprise's runner group on GitHub, managed declaratively.",
    printcolumn(name = "Group", type_ = "string", json_path = ".status.groupName"),
    printcolumn(name = "Id", type_ = "integer", json_path = ".status.groupId"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Runners", type_ = "integer", json_path = ".status.runners"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.name) || self.metadata.name.lowerAscii() != 'default'").message("a RunnerGroup named 'default' would manage GitHub's Default group, which cannot be managed: set spec.name to another group name")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.selectedRepositories) || size(self.selectedRepositories) == 0 || (has(self.visibility) && self.visibility == 'selected')").message("selectedRepositories applies only with visibility: selected"))]
#[x_kube(validation = Rule::new("!has(self.selectedOrganizations) || size(self.selectedOrganizations) == 0 || (has(self.visibility) && self.visibility == 'selected')").message("selectedOrganizations applies only with visibility: selected"))]
#[x_kube(validation = Rule::new("!has(self.visibility) || self.visibility != 'selected' || has(self.selectedRepositories) || has(self.selectedOrganizations)").message("visibility: selected needs selectedRepositories (an organization's group) or selectedOrganizations (an enterprise's group); an empty list lets none use the group"))]
#[x_kube(validation = Rule::new("!has(self.selectedWorkflows) || size(self.selectedWorkflows) == 0 || (has(self.restrictedToWorkflows) && self.restrictedToWorkflows)").message("selectedWorkflows applies only with restrictedToWorkflows: true"))]
#[x_kube(validation = Rule::new("!has(self.selectedRepositories) || has(self.github.organization)").message("selectedRepositories applies only to an organization's group (spec.github.organization): an enterprise's group lists selectedOrganizations"))]
#[x_kube(validation = Rule::new("!has(self.selectedRepositories) || !has(self.github.organization) || self.selectedRepositories.all(r, r.lowerAscii().startsWith(self.github.organization.lowerAscii() + '/'))").message("selectedRepositories must be repositories of spec.github.organization, written owner/name"))]
#[x_kube(validation = Rule::new("!has(self.selectedOrganizations) || has(self.github.enterprise)").message("selectedOrganizations applies only to an enterprise's group (spec.github.enterprise): an organization's group lists selectedRepositories"))]
#[x_kube(validation = Rule::new("!has(self.github.enterprise) || !has(self.visibility) || self.visibility != 'private'").message("visibility: private applies only to an organization's group: an enterprise's group is all or selected"))]
pub struct RunnerGroupSpec {
    /// The organization or enterprise that owns the group and the Secret
    /// with credentials allowed to manage its runner groups (organization:
    /// `admin:org`, or a GitHub App with the organization permission
    /// "Self-hosted runners": write; enterprise: a classic token with
    /// `manage_runners:enterprise`, GitHub accepts no App there).
    pub github: GroupGitHubSpec,

    /// The group's name on GitHub; defaults to metadata.name. Renaming it
    /// renames the group the operator created or adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.lowerAscii() != 'default'").message("the Default runner group is GitHub's own and cannot be managed"))]
    #[x_kube(validation = Rule::new("self.trim() == self").message("name must not start or end with spaces"))]
    pub name: Option<String>,

    /// Which repositories may use the group: `all`, `selected` (those in
    /// selectedRepositories) or `private` (private repositories). Default `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,

    /// The repositories that may use the group, as `owner/name` of the
    /// organization's repositories; only with visibility `selected`.
    /// Repositories added or removed here (or by hand on GitHub) are added or
    /// removed through GitHub's repository-access endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 1000),
        inner(
            length(min = 3, max = 201),
            regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub selected_repositories: Option<Vec<String>>,

    /// The organizations (logins) of the enterprise that may use an
    /// enterprise's group; only with visibility `selected`. The whole list is
    /// set in one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 1000),
        inner(
            length(min = 1, max = 100),
            regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub selected_organizations: Option<Vec<String>>,

    /// Whether public repositories may use the group. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allows_public_repositories: Option<bool>,

    /// Whether only the workflows in selectedWorkflows may use the group.
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_to_workflows: Option<bool>,

    /// Workflow references allowed to use the group, such as
    /// `acme/app/.github/workflows/ci.yml@refs/heads/main`; only with
    /// restrictedToWorkflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 1024)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(w, w.contains('/') && w.contains('@'))").message("selectedWorkflows entries are workflow references such as acme/app/.github/workflows/ci.yml@refs/heads/main"))]
    pub selected_workflows: Option<Vec<String>>,

    /// Manage a group of this name that already exists on GitHub (it is then
    /// deleted with this object, like one the operator created, unless
    /// deletionPolicy is Retain). Without it, an existing group is left alone
    /// and the status says it exists. A group an enterprise shares with the
    /// organization is never adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,

    /// What deleting this object does to the group on GitHub: `Delete`
    /// (default; once no runner is in it) or `Retain` (the group stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What deleting a RunnerGroup does to its group on GitHub.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    /// The group is deleted once no runner is in it.
    #[default]
    Delete,
    /// The group stays on GitHub.
    Retain,
}

/// Which repositories (organization) or organizations (enterprise) may use a
/// runner group; `private` is for organizations only.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    All,
    Selected,
    Private,
}

/// The organization or enterprise of a RunnerGroup and how to reach it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.organization) != has(self.enterprise)").message("set exactly one of organization or enterprise"))]
#[x_kube(validation = Rule::new("(has(self.organization) ? self.organization : '') == (has(oldSelf.organization) ? oldSelf.organization : '')").message("organization cannot change: the group belongs to it. Create a new RunnerGroup for another organization (and delete this one)"))]
#[x_kube(validation = Rule::new("(has(self.enterprise) ? self.enterprise : '') == (has(oldSelf.enterprise) ? oldSelf.enterprise : '')").message("enterprise cannot change: the group belongs to it. Create a new RunnerGroup for another enterprise (and delete this one)"))]
#[x_kube(validation = Rule::new("(has(self.apiUrl) ? self.apiUrl : 'https://api.github.com') == (has(oldSelf.apiUrl) ? oldSelf.apiUrl : 'https://api.github.com')").message("apiUrl cannot change: the group lives on that GitHub. Create a new RunnerGroup for another GitHub host (and delete this one)"))]
#[x_kube(validation = Rule::new("has(self.credentialsSecret) != has(self.connectionRef)").message("set exactly one of credentialsSecret (a Secret in this namespace) or connectionRef (a GitHubConnection holding the credentials outside it)"))]
#[x_kube(validation = Rule::new("!has(self.connectionRef) || !has(self.caBundle)").message("caBundle comes from the GitHubConnection when connectionRef is set: set it there"))]
pub struct GroupGitHubSpec {
    /// Organization login: an organization's group. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub organization: Option<String>,

    /// Enterprise slug: an enterprise's group (a classic token only, GitHub's
    /// rule). Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub enterprise: Option<String>,

    /// The REST API base: `https://api.github.com` (default) or
    /// `https://HOST/api/v3` for GitHub Enterprise Server. Plain `http` is
    /// accepted only for loopback hosts. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(localhost|127\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')").message("apiUrl must start with https:// (plain http:// is allowed only for a loopback host: localhost, 127.x.x.x or [::1])"))]
    pub api_url: Option<String>,

    /// PEM bundle of extra certificate authorities to trust for apiUrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub ca_bundle: Option<String>,

    /// The Secret in this namespace with the credentials: key `token`, or
    /// keys `appId`, `installationId` and `privateKey`. Exactly one of
    /// credentialsSecret and connectionRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,

    /// A GitHubConnection (cluster-scoped) that allows this namespace, whose
    /// credentials the operator reads from its connections namespace.
    /// apiUrl must be the connection's; its caBundle is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<ConnectionReference>,
}

impl GroupGitHubSpec {
    /// As a pool's `spec.github`, so connecting works the same way (and
    /// refuses GitHub App credentials for an enterprise).
    pub fn as_github_spec(&self) -> GitHubSpec {
        GitHubSpec {
            organization: self.organization.clone(),
            enterprise: self.enterprise.clone(),
            api_url: self.api_url.clone(),
            ca_bundle: self.ca_bundle.clone(),
            credentials_secret: self.credentials_secret.clone(),
            connection_ref: self.connection_ref.clone(),
            ..GitHubSpec::default()
        }
    }
}

/// What the operator observed of the group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The id of the group on GitHub, set once the operator created or
    /// adopted it: only a group with an id here is ever deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
    /// The group's name on GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// The name of a group the operator is about to create, recorded before
    /// the create call: a group of this name found while no id is recorded
    /// is the operator's own (its answer or the status write was lost), and
    /// is taken over instead of being reported as AlreadyExists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<String>,
    /// Runners in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runners: Option<i32>,
    /// `Ready` (the group exists and matches the spec) and `Degraded` (with a
    /// reason: AlreadyExists, Inherited, RepositoryNotFound,
    /// OrganizationNotFound, CredentialsInvalid, InvalidSpec,
    /// GitHubUnavailable, RateLimited, Rejected, WaitingForRunners).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl RunnerGroup {
    /// The group's name on GitHub.
    pub fn group_name(&self) -> &str {
        self.spec
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_is_namespaced_with_short_name_status_and_columns() {
        let crd = RunnerGroup::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["rg".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Group", "Id", "Ready", "Runners", "Age"]);
    }
}
