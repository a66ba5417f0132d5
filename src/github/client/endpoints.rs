//! Endpoint templates: the bounded label under which requests are counted
//! (in each `RequestRecord`, the request counters and the metrics), one per
//! REST operation the client sends.

pub const LIST_RUNNERS: &str = "GET /{scope}/actions/runners";
pub const GET_RUNNER: &str = "GET /{scope}/actions/runners/{runner_id}";
pub const GENERATE_JITCONFIG: &str = "POST /{scope}/actions/runners/generate-jitconfig";
pub const CREATE_REGISTRATION_TOKEN: &str = "POST /{scope}/actions/runners/registration-token";
pub const DELETE_RUNNER: &str = "DELETE /{scope}/actions/runners/{runner_id}";
pub const SET_CUSTOM_LABELS: &str = "PUT /{scope}/actions/runners/{runner_id}/labels";
pub const LIST_RUNNER_GROUPS: &str = "GET /{scope}/actions/runner-groups";
pub const CREATE_RUNNER_GROUP: &str = "POST /{scope}/actions/runner-groups";
pub const RUNNER_GROUP: &str = "GET /{scope}/actions/runner-groups/{runner_group_id}";
pub const UPDATE_RUNNER_GROUP: &str = "PATCH /{scope}/actions/runner-groups/{runner_group_id}";
pub const DELETE_RUNNER_GROUP: &str = "DELETE /{scope}/actions/runner-groups/{runner_group_id}";
/// An organization group's repositories, an enterprise group's organizations.
pub const GROUP_ACCESS: &str = "GET /{scope}/actions/runner-groups/{runner_group_id}/{access}";
pub const SET_GROUP_ACCESS: &str = "PUT /{scope}/actions/runner-groups/{runner_group_id}/{access}";
pub const ADD_GROUP_REPOSITORY: &str =
    "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
pub const REMOVE_GROUP_REPOSITORY: &str =
    "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
pub const GROUP_RUNNERS: &str = "GET /{scope}/actions/runner-groups/{runner_group_id}/runners";
pub const SET_GROUP_RUNNERS: &str = "PUT /{scope}/actions/runner-groups/{runner_group_id}/runners";
pub const ADD_GROUP_RUNNER: &str =
    "PUT /{scope}/actions/runner-groups/{runner_group_id}/runners/{runner_id}";
pub const REMOVE_GROUP_RUNNER: &str =
    "DELETE /{scope}/actions/runner-groups/{runner_group_id}/runners/{runner_id}";
pub const GET_REPOSITORY: &str = "GET /repos/{owner}/{repo}";
pub const GET_ORGANIZATION: &str = "GET /orgs/{org}";
pub const RUNNER_DOWNLOADS: &str = "GET /{scope}/actions/runners/downloads";
pub const CREATE_INSTALLATION_TOKEN: &str =
    "POST /app/installations/{installation_id}/access_tokens";
pub const GET_WORKFLOW_JOB: &str = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}";
pub const LIST_ORG_HOOK_DELIVERIES: &str = "GET /orgs/{org}/hooks/{hook_id}/deliveries";
pub const GET_ORG_HOOK_DELIVERY: &str = "GET /orgs/{org}/hooks/{hook_id}/deliveries/{delivery_id}";
pub const LIST_REPO_HOOK_DELIVERIES: &str = "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries";
pub const GET_REPO_HOOK_DELIVERY: &str =
    "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}";
pub const LIST_APP_HOOK_DELIVERIES: &str = "GET /app/hook/deliveries";
pub const GET_APP_HOOK_DELIVERY: &str = "GET /app/hook/deliveries/{delivery_id}";

/// Whether `endpoint` is one of the App's own, sent with the App's JWT
/// rather than an installation token.
pub fn is_app_endpoint(endpoint: &str) -> bool {
    endpoint.starts_with("GET /app/hook/")
}
