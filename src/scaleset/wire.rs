//! The Actions service's shapes: the public [`ScaleSet`], [`Session`] and
//! [`Statistics`] the listener works with, the private request and answer
//! bodies they come from, and the reading of bodies (which may start with a
//! UTF-8 byte-order mark, and whose decode errors never quote a value).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ScaleSetError;

/// The query every call to the tenant carries.
pub(super) const API_VERSION: (&str, &str) = ("api-version", "6.0-preview");
/// What the message queue is asked to answer in.
pub(super) const QUEUE_ACCEPT: &str = "application/json; api-version=6.0-preview";
/// The runner's work folder in a scale-set JIT config, as actions-runner-controller uses.
pub(super) const WORK_FOLDER: &str = "_work";

/// The scale set's job and runner counts, as the service sees them.
/// Scale on `total_assigned_jobs`, which counts running jobs too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    pub total_available_jobs: u32,
    pub total_acquired_jobs: u32,
    pub total_assigned_jobs: u32,
    pub total_running_jobs: u32,
    pub total_registered_runners: u32,
    pub total_busy_runners: u32,
    pub total_idle_runners: u32,
}

/// A runner scale set: what workflows target with `runs-on: <name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleSet {
    pub id: u64,
    pub name: String,
    pub runner_group_id: u64,
    pub runner_group_name: String,
    pub labels: Vec<String>,
    pub statistics: Option<Statistics>,
}

/// An open message session of a scale set: the one listener allowed to read
/// its queue. The queue token is a credential: never formatted by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: String,
    pub scale_set_id: u64,
    pub owner_name: String,
    pub message_queue_url: String,
    pub(super) message_queue_token: String,
    /// The first figure to scale on; messages bring newer ones.
    pub statistics: Option<Statistics>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .field("scale_set_id", &self.scale_set_id)
            .field("owner_name", &self.owner_name)
            .field("message_queue_url", &self.message_queue_url)
            .field("message_queue_token", &"<redacted>")
            .field("statistics", &self.statistics)
            .finish()
    }
}

/// A runner as the Actions service lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRunner {
    pub id: u64,
    pub name: String,
    /// 0 for a runner that belongs to no scale set.
    #[serde(default)]
    pub runner_scale_set_id: u64,
}

/// `{count, value}`: every list the service answers.
#[derive(Deserialize)]
pub(super) struct ListAnswer<T> {
    #[serde(default = "Vec::new")]
    pub(super) value: Vec<T>,
}

#[derive(Deserialize)]
pub(super) struct RunnerGroupAnswer {
    pub(super) id: u64,
    pub(super) name: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LabelBody {
    pub(super) name: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScaleSetAnswer {
    id: u64,
    name: String,
    #[serde(default)]
    runner_group_id: u64,
    #[serde(default)]
    runner_group_name: String,
    #[serde(default)]
    labels: Vec<LabelBody>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

impl From<ScaleSetAnswer> for ScaleSet {
    fn from(answer: ScaleSetAnswer) -> Self {
        ScaleSet {
            id: answer.id,
            name: answer.name,
            runner_group_id: answer.runner_group_id,
            runner_group_name: answer.runner_group_name,
            labels: answer.labels.into_iter().map(|label| label.name).collect(),
            statistics: answer.statistics,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewScaleSet<'a> {
    pub(super) name: &'a str,
    pub(super) runner_group_id: u64,
    pub(super) labels: Vec<LabelBody>,
    /// The service spells this one with a capital R.
    #[serde(rename = "RunnerSetting")]
    pub(super) runner_setting: RunnerSetting,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RunnerSetting {
    /// The operator rolls runner versions through the pod image, not in place.
    pub(super) disable_update: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JitBody<'a> {
    pub(super) name: &'a str,
    pub(super) work_folder: &'a str,
}

/// No `Debug`: holds the JIT config.
#[derive(Deserialize)]
pub(super) struct JitAnswer {
    pub(super) runner: ServiceRunner,
    #[serde(rename = "encodedJITConfig")]
    pub(super) encoded_jit_config: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionBody<'a> {
    pub(super) owner_name: &'a str,
}

#[derive(Deserialize)]
pub(super) struct ScaleSetId {
    pub(super) id: u64,
}

/// No `Debug`: holds the queue token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionAnswer {
    pub(super) session_id: String,
    #[serde(default)]
    pub(super) owner_name: String,
    #[serde(default)]
    pub(super) runner_scale_set: Option<ScaleSetId>,
    pub(super) message_queue_url: String,
    pub(super) message_queue_access_token: String,
    #[serde(default)]
    pub(super) statistics: Option<Statistics>,
}

impl SessionAnswer {
    /// The session, for the scale set it was opened on when the answer does not say.
    pub(super) fn into_session(self, scale_set_id: u64) -> Session {
        Session {
            session_id: self.session_id,
            scale_set_id: self.runner_scale_set.map_or(scale_set_id, |set| set.id),
            owner_name: self.owner_name,
            message_queue_url: self.message_queue_url,
            message_queue_token: self.message_queue_access_token,
            statistics: self.statistics,
        }
    }
}

/// No `Debug`: holds the admin token.
#[derive(Deserialize)]
pub(super) struct AdminAnswer {
    /// The tenant: the Actions service URL every later call starts with.
    pub(super) url: String,
    pub(super) token: String,
}

/// `body` without a leading UTF-8 byte-order mark, which the service
/// sometimes writes and JSON parsers refuse.
pub(super) fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// Decodes a JSON body, BOM or not. Only the position goes into the error:
/// serde's message can quote the offending value, which might be a token.
pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &'static str,
    body: &[u8],
) -> Result<T, ScaleSetError> {
    serde_json::from_slice(strip_bom(body)).map_err(|error| {
        ScaleSetError::Protocol(format!(
            "cannot read the answer of {endpoint}: {:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_stripped_once() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(strip_bom(b"{}"), b"{}");
        let list: ListAnswer<RunnerGroupAnswer> = decode(
            "test",
            b"\xEF\xBB\xBF{\"count\":1,\"value\":[{\"id\":3,\"name\":\"default\",\"isDefaultGroup\":true}]}",
        )
        .unwrap();
        assert_eq!(list.value[0].id, 3);
    }

    #[test]
    fn decode_errors_never_quote_the_body() {
        let err = decode::<AdminAnswer>("register", br#"{"url": 5, "token": "eyJsecret"}"#)
            .err()
            .unwrap();
        assert!(matches!(err, ScaleSetError::Protocol(_)));
        assert!(!err.to_string().contains("eyJsecret"), "{err}");
    }

    #[test]
    fn scale_set_answers_and_create_bodies() {
        let answer: ScaleSetAnswer = decode(
            "get",
            br#"{"id":7,"name":"linux","runnerGroupId":1,"runnerGroupName":"Default",
                "labels":[{"name":"linux","type":"System"}],"RunnerSetting":{"disableUpdate":true},
                "statistics":{"totalAssignedJobs":4,"totalIdleRunners":1}}"#,
        )
        .unwrap();
        let set = ScaleSet::from(answer);
        assert_eq!(set.labels, ["linux"]);
        assert_eq!(set.statistics.unwrap().total_assigned_jobs, 4);
        let body = serde_json::to_value(NewScaleSet {
            name: "linux",
            runner_group_id: 1,
            labels: vec![LabelBody {
                name: "gpu".into(),
                kind: "System".into(),
            }],
            runner_setting: RunnerSetting {
                disable_update: true,
            },
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "linux", "runnerGroupId": 1,
                "labels": [{"name": "gpu", "type": "System"}],
                "RunnerSetting": {"disableUpdate": true}})
        );
    }

    #[test]
    fn a_session_never_shows_its_queue_token() {
        let answer: SessionAnswer = decode(
            "session",
            br#"{"sessionId":"5e1","ownerName":"op","messageQueueUrl":"https://q/x",
                "messageQueueAccessToken":"eyJqueue","runnerScaleSet":{"id":9}}"#,
        )
        .unwrap();
        let session = answer.into_session(1);
        assert_eq!(session.scale_set_id, 9);
        let shown = format!("{session:?}");
        assert!(
            !shown.contains("eyJqueue") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
