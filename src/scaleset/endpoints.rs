//! Endpoint templates of the Actions service: the bounded labels its
//! requests are counted and logged under (the `endpoint` of each
//! [`RequestRecord`](crate::github::client::RequestRecord) the options'
//! observer gets), one per call. `{tenant}` is the URL the runner
//! registration hands out; the registration itself is on the REST API host.

pub const REGISTER: &str = "POST /actions/runner-registration";
pub const RUNNER_GROUPS: &str = "GET {tenant}/_apis/runtime/runnergroups/";
pub const FIND_SCALE_SET: &str = "GET {tenant}/_apis/runtime/runnerscalesets";
pub const GET_SCALE_SET: &str = "GET {tenant}/_apis/runtime/runnerscalesets/{id}";
pub const CREATE_SCALE_SET: &str = "POST {tenant}/_apis/runtime/runnerscalesets";
pub const DELETE_SCALE_SET: &str = "DELETE {tenant}/_apis/runtime/runnerscalesets/{id}";
pub const GENERATE_JITCONFIG: &str =
    "POST {tenant}/_apis/runtime/runnerscalesets/{id}/generatejitconfig";
pub const CREATE_SESSION: &str = "POST {tenant}/_apis/runtime/runnerscalesets/{id}/sessions";
pub const REFRESH_SESSION: &str =
    "PATCH {tenant}/_apis/runtime/runnerscalesets/{id}/sessions/{session_id}";
pub const DELETE_SESSION: &str =
    "DELETE {tenant}/_apis/runtime/runnerscalesets/{id}/sessions/{session_id}";
pub const ACQUIRE_JOBS: &str = "POST {tenant}/_apis/runtime/runnerscalesets/{id}/acquirejobs";
pub const GET_MESSAGE: &str = "GET {message_queue_url}";
pub const DELETE_MESSAGE: &str = "DELETE {message_queue_url}/{message_id}";
pub const FIND_RUNNER: &str = "GET {tenant}/_apis/distributedtask/pools/0/agents";
pub const REMOVE_RUNNER: &str = "DELETE {tenant}/_apis/distributedtask/pools/0/agents/{id}";
