//! What the message queue delivers: the [`Message`] envelope with its
//! statistics, and the [`JobMessage`]s inside it. The envelope's `body` is a
//! JSON *string* holding the array of job messages, so it is decoded twice;
//! job messages of types this operator does not know are skipped, and so is
//! one that cannot be read (with a warning), so that a single odd entry
//! cannot wedge the queue.

use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer};

use super::error::ScaleSetError;
use super::wire::{Statistics, decode, strip_bom};

/// The only envelope type that carries job messages.
const JOB_MESSAGES: &str = "RunnerScaleSetJobMessages";

/// One message of the queue; ack it with `delete_message` once handled, or
/// it is delivered again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub message_id: u64,
    pub statistics: Option<Statistics>,
    pub jobs: Vec<JobMessage>,
}

/// A job's step through the scale set. `request_id` is the runner request
/// `acquire_jobs` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobMessage {
    /// Waiting for a scale set to take it (GHES needs `acquire_jobs`).
    Available { request_id: i64, job: JobInfo },
    /// Assigned to this scale set; a runner is to pick it up.
    Assigned { request_id: i64, job: JobInfo },
    Started {
        request_id: i64,
        runner_id: u64,
        runner_name: String,
        job: JobInfo,
    },
    /// Finished, or given up (`result: "canceled"` for a job no runner took).
    Completed {
        request_id: i64,
        result: String,
        runner_id: Option<u64>,
        runner_name: String,
        job: JobInfo,
    },
}

impl JobMessage {
    pub fn request_id(&self) -> i64 {
        match self {
            JobMessage::Available { request_id, .. }
            | JobMessage::Assigned { request_id, .. }
            | JobMessage::Started { request_id, .. }
            | JobMessage::Completed { request_id, .. } => *request_id,
        }
    }

    pub fn job(&self) -> &JobInfo {
        match self {
            JobMessage::Available { job, .. }
            | JobMessage::Assigned { job, .. }
            | JobMessage::Started { job, .. }
            | JobMessage::Completed { job, .. } => job,
        }
    }
}

/// What every job message says about its job. Times the service leaves at
/// its zero value are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobInfo {
    /// `owner/name`.
    pub repository: String,
    pub workflow_ref: String,
    pub display_name: String,
    pub workflow_run_id: u64,
    pub job_id: String,
    pub event_name: String,
    pub request_labels: Vec<String>,
    pub queue_time: Option<Timestamp>,
    pub scale_set_assign_time: Option<Timestamp>,
    pub runner_assign_time: Option<Timestamp>,
    pub finish_time: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_id: u64,
    #[serde(default)]
    message_type: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

/// One job message as sent; every field is optional on the wire.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JobBody {
    message_type: String,
    runner_request_id: i64,
    repository_name: String,
    owner_name: String,
    #[serde(deserialize_with = "text_or_number")]
    job_id: String,
    job_workflow_ref: String,
    job_display_name: String,
    workflow_run_id: u64,
    event_name: String,
    request_labels: Vec<String>,
    queue_time: Option<String>,
    scale_set_assign_time: Option<String>,
    runner_assign_time: Option<String>,
    finish_time: Option<String>,
    result: String,
    runner_id: Option<u64>,
    runner_name: String,
}

/// Job ids are strings in the protocol; a number is taken too.
fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => text,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// A service time, `None` for the .NET zero value (`0001-01-01T00:00:00`,
/// with or without an offset) and for anything unreadable.
fn service_time(raw: Option<&str>) -> Option<Timestamp> {
    Timestamp::from_str(raw?)
        .ok()
        .filter(|time| time.as_second() > 0)
}

impl JobBody {
    fn into_job_message(self) -> Option<JobMessage> {
        let repository = match (self.owner_name.is_empty(), self.repository_name.is_empty()) {
            (false, false) => format!("{}/{}", self.owner_name, self.repository_name),
            _ => self.repository_name.clone(),
        };
        let job = JobInfo {
            repository,
            workflow_ref: self.job_workflow_ref,
            display_name: self.job_display_name,
            workflow_run_id: self.workflow_run_id,
            job_id: self.job_id,
            event_name: self.event_name,
            request_labels: self.request_labels,
            queue_time: service_time(self.queue_time.as_deref()),
            scale_set_assign_time: service_time(self.scale_set_assign_time.as_deref()),
            runner_assign_time: service_time(self.runner_assign_time.as_deref()),
            finish_time: service_time(self.finish_time.as_deref()),
        };
        let request_id = self.runner_request_id;
        Some(match self.message_type.as_str() {
            "JobAvailable" => JobMessage::Available { request_id, job },
            "JobAssigned" => JobMessage::Assigned { request_id, job },
            "JobStarted" => JobMessage::Started {
                request_id,
                runner_id: self.runner_id.unwrap_or_default(),
                runner_name: self.runner_name,
                job,
            },
            "JobCompleted" => JobMessage::Completed {
                request_id,
                result: self.result,
                runner_id: self.runner_id.filter(|&id| id != 0),
                runner_name: self.runner_name,
                job,
            },
            _ => return None,
        })
    }
}

/// Reads a queue answer: the envelope, then the job messages in its body.
pub(super) fn read_message(endpoint: &'static str, body: &[u8]) -> Result<Message, ScaleSetError> {
    let envelope: Envelope = decode(endpoint, body)?;
    let mut jobs = Vec::new();
    if envelope.message_type == JOB_MESSAGES
        && let Some(inner) = envelope.body.as_deref().filter(|b| !b.trim().is_empty())
    {
        let entries: Vec<serde_json::Value> = decode(endpoint, strip_bom(inner.as_bytes()))?;
        for entry in entries {
            match serde_json::from_value::<JobBody>(entry) {
                Ok(job) => jobs.extend(job.into_job_message()),
                Err(error) => tracing::warn!(
                    message_id = envelope.message_id,
                    line = error.line(),
                    column = error.column(),
                    "skipped a job message that cannot be read"
                ),
            }
        }
    } else if !envelope.message_type.is_empty() && envelope.message_type != JOB_MESSAGES {
        tracing::debug!(
            message_id = envelope.message_id,
            message_type = %envelope.message_type,
            "ignored a message of a type this operator does not handle"
        );
    }
    Ok(Message {
        message_id: envelope.message_id,
        statistics: envelope.statistics,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(jobs: serde_json::Value) -> Vec<u8> {
        let body = serde_json::json!({
            "messageId": 12,
            "messageType": JOB_MESSAGES,
            "body": jobs.to_string(),
            "statistics": {"totalAssignedJobs": 2, "totalRunningJobs": 1},
        });
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(body.to_string().as_bytes());
        bytes
    }

    #[test]
    fn the_body_is_decoded_twice_and_unknown_types_are_skipped() {
        let bytes = envelope(serde_json::json!([
            {"messageType": "JobAvailable", "runnerRequestId": 101, "repositoryName": "app",
             "ownerName": "acme", "jobId": "j-1", "jobWorkflowRef": "acme/app/.github/workflows/ci.yml@refs/heads/main",
             "jobDisplayName": "build", "workflowRunId": 55, "eventName": "push",
             "requestLabels": ["linux"], "queueTime": "2026-12-07T01:02:03.1234567Z",
             "acquireJobUrl": "https://x/acquire"},
            {"messageType": "JobMessageOfTheFuture", "runnerRequestId": 102},
            {"messageType": "JobStarted", "runnerRequestId": 101, "runnerId": 7, "runnerName": "r-7",
             "jobId": 99, "finishTime": "0001-01-01T00:00:00"},
            {"messageType": "JobCompleted", "runnerRequestId": 103, "result": "canceled",
             "runnerId": 0, "runnerName": ""},
            {"messageType": "JobAssigned", "runnerRequestId": "not a number"},
        ]));
        let message = read_message("poll", &bytes).unwrap();
        assert_eq!(message.message_id, 12);
        assert_eq!(message.statistics.unwrap().total_assigned_jobs, 2);
        assert_eq!(message.jobs.len(), 3);
        let JobMessage::Available { request_id, job } = &message.jobs[0] else {
            panic!("{:?}", message.jobs[0]);
        };
        assert_eq!(*request_id, 101);
        assert_eq!(job.repository, "acme/app");
        assert_eq!(job.workflow_run_id, 55);
        assert_eq!(
            job.queue_time.unwrap().to_string(),
            "2026-12-07T01:02:03.1234567Z"
        );
        assert!(matches!(
            &message.jobs[1],
            JobMessage::Started { runner_id: 7, runner_name, job, .. }
                if runner_name == "r-7" && job.job_id == "99" && job.finish_time.is_none()
        ));
        assert!(matches!(
            &message.jobs[2],
            JobMessage::Completed { request_id: 103, runner_id: None, result, .. } if result == "canceled"
        ));
    }

    #[test]
    fn other_envelopes_carry_only_statistics() {
        let bytes =
            br#"{"messageId": 3, "messageType": "RunnerScaleSetSettingsChanged", "body": "[1]"}"#;
        let message = read_message("poll", bytes).unwrap();
        assert!(message.jobs.is_empty() && message.statistics.is_none());
        let empty = br#"{"messageId": 4, "messageType": "RunnerScaleSetJobMessages", "body": ""}"#;
        assert!(read_message("poll", empty).unwrap().jobs.is_empty());
        let broken =
            br#"{"messageId": 5, "messageType": "RunnerScaleSetJobMessages", "body": "[{"}"#;
        assert!(matches!(
            read_message("poll", broken),
            Err(ScaleSetError::Protocol(_))
        ));
    }
}
