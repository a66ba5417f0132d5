//! The few fields of a `workflow_job` delivery the operator reads. Everything
//! else in GitHub's (large) payload is ignored, so new fields never break it.

use jiff::Timestamp;
use serde::Deserialize;

/// What happened to the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    Queued,
    /// Waiting for an environment's approval: not yet runner demand.
    Waiting,
    InProgress,
    Completed,
}

/// A `workflow_job` delivery, reduced to what routing and demand need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub action: JobAction,
    pub job_id: u64,
    /// The job's `runs-on` labels.
    pub labels: Vec<String>,
    /// `owner/name`.
    pub repository: String,
    pub owner: String,
    /// The enterprise slug, when the repository belongs to one.
    pub enterprise: Option<String>,
    /// The runner that took the job (`in_progress`, `completed`).
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    /// What a person reads about the job (shown on its runner's pod).
    pub details: JobDetails,
    /// When GitHub queued, started and completed the job.
    pub times: JobTimes,
    /// Taken from GitHub's delivery log rather than received (see
    /// [`super::recovery`]).
    pub recovered: bool,
}

/// The job as a person knows it: its workflow run, name and page. Values
/// come from GitHub's payload, are cut to [`MAX_DETAIL_CHARS`] and hold no
/// secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobDetails {
    pub run_id: Option<u64>,
    pub workflow: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    /// `success`, `failure`, `cancelled`, ... once completed.
    pub conclusion: Option<String>,
}

/// The job's `created_at`, `started_at` and `completed_at`, by GitHub's
/// clock; `None` when absent or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobTimes {
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

/// The longest detail kept from a payload.
pub const MAX_DETAIL_CHARS: usize = 256;

/// Why a delivery could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not a workflow_job payload: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("unknown workflow_job action {0:?}")]
    UnknownAction(String),
}

impl PayloadError {
    pub fn category(&self) -> &'static str {
        match self {
            PayloadError::Invalid(_) => "invalid_payload",
            PayloadError::UnknownAction(_) => "unknown_action",
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    action: String,
    workflow_job: WireJob,
    repository: WireRepository,
    #[serde(default)]
    enterprise: Option<WireEnterprise>,
}

#[derive(Deserialize)]
struct WireJob {
    id: u64,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    runner_id: Option<u64>,
    #[serde(default)]
    runner_name: Option<String>,
    #[serde(default)]
    run_id: Option<u64>,
    #[serde(default)]
    workflow_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    completed_at: Option<String>,
}

#[derive(Deserialize)]
struct WireRepository {
    full_name: String,
    owner: WireOwner,
}

#[derive(Deserialize)]
struct WireOwner {
    login: String,
}

#[derive(Deserialize)]
struct WireEnterprise {
    slug: String,
}

/// Reads a `workflow_job` payload. Only call it on a verified body.
pub fn parse_workflow_job(body: &[u8]) -> Result<JobEvent, PayloadError> {
    let wire: Wire = serde_json::from_slice(body)?;
    let action = match wire.action.as_str() {
        "queued" => JobAction::Queued,
        "waiting" => JobAction::Waiting,
        "in_progress" => JobAction::InProgress,
        "completed" => JobAction::Completed,
        other => {
            return Err(PayloadError::UnknownAction(
                other.chars().take(40).collect(),
            ));
        }
    };
    let job = &wire.workflow_job;
    let cut = |s: &Option<String>| {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(MAX_DETAIL_CHARS).collect())
    };
    let details = JobDetails {
        run_id: job.run_id,
        workflow: cut(&job.workflow_name),
        name: cut(&job.name),
        url: cut(&job.html_url).filter(|u: &String| u.starts_with("https://")),
        conclusion: cut(&job.conclusion),
    };
    let time = |t: &Option<String>| t.as_deref()?.parse::<Timestamp>().ok();
    let times = JobTimes {
        created_at: time(&job.created_at),
        started_at: time(&job.started_at),
        completed_at: time(&job.completed_at),
    };
    Ok(JobEvent {
        action,
        details,
        times,
        job_id: wire.workflow_job.id,
        labels: wire.workflow_job.labels,
        repository: wire.repository.full_name,
        owner: wire.repository.owner.login,
        enterprise: wire.enterprise.map(|e| e.slug),
        // GitHub sends 0 or null before a runner is assigned.
        runner_id: wire.workflow_job.runner_id.filter(|id| *id != 0),
        runner_name: wire.workflow_job.runner_name.filter(|n| !n.is_empty()),
        recovered: false,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so property tests need
    /// no extra dependency and fail the same way every run.
    pub struct Random(u64);

    impl Random {
        pub fn new(seed: u64) -> Self {
            Random(seed.max(1))
        }

        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    pub fn sample(action: &str) -> serde_json::Value {
        serde_json::json!({
            "action": action,
            "workflow_job": {
                "id": 42, "run_id": 7, "status": action, "labels": ["self-hosted", "Linux"],
                "workflow_name": "CI", "name": "build",
                "html_url": "https://github.com/acme/app/actions/runs/7/job/42",
                "runner_id": if action == "queued" { serde_json::Value::Null } else { 9.into() },
                "runner_name": if action == "queued" { serde_json::Value::Null } else { "ci-abcde".into() },
                "created_at": "2026-01-02T03:04:05Z",
                "started_at": "2026-01-02T03:05:35Z",
                "completed_at": if action == "completed" { "2026-01-02T03:15:35Z".into() } else { serde_json::Value::Null },
                "steps": [],
            },
            "repository": { "id": 1, "name": "app", "full_name": "acme/app", "owner": { "login": "acme", "id": 2 } },
            "organization": { "login": "acme", "id": 2 },
            "enterprise": { "slug": "bigcorp", "id": 3 },
            "sender": { "login": "octocat" },
        })
    }

    #[test]
    fn reads_the_fields_routing_needs() {
        let body = serde_json::to_vec(&sample("in_progress")).unwrap();
        let event = parse_workflow_job(&body).unwrap();
        assert_eq!(
            event,
            JobEvent {
                action: JobAction::InProgress,
                job_id: 42,
                labels: vec!["self-hosted".into(), "Linux".into()],
                repository: "acme/app".into(),
                owner: "acme".into(),
                enterprise: Some("bigcorp".into()),
                runner_id: Some(9),
                runner_name: Some("ci-abcde".into()),
                details: JobDetails {
                    run_id: Some(7),
                    workflow: Some("CI".into()),
                    name: Some("build".into()),
                    url: Some("https://github.com/acme/app/actions/runs/7/job/42".into()),
                    conclusion: None,
                },
                times: JobTimes {
                    created_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
                    started_at: Some("2026-01-02T03:05:35Z".parse().unwrap()),
                    completed_at: None,
                },
                recovered: false,
            }
        );
        let queued = parse_workflow_job(&serde_json::to_vec(&sample("queued")).unwrap()).unwrap();
        assert_eq!((queued.action, queued.runner_id), (JobAction::Queued, None));
    }

    #[test]
    fn refuses_what_is_not_a_workflow_job() {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"action\":\"queued\"}",
            b"{\"zen\":\"Keep it logically awesome.\"}",
        ] {
            assert!(parse_workflow_job(body).is_err(), "{body:?}");
        }
        let mut odd = sample("queued");
        odd["action"] = "teleported".into();
        assert!(matches!(
            parse_workflow_job(&serde_json::to_vec(&odd).unwrap()),
            Err(PayloadError::UnknownAction(_))
        ));
        let mut negative = sample("queued");
        negative["workflow_job"]["id"] = (-1).into();
        assert!(parse_workflow_job(&serde_json::to_vec(&negative).unwrap()).is_err());
    }

    /// Random bytes, and real payloads cut short or with a byte changed, give
    /// an answer (parsed or refused) and never a panic.
    #[test]
    fn random_and_mangled_bodies_never_panic() {
        let mut random = Random::new(0x5eed_0002);
        let valid: Vec<Vec<u8>> = ["queued", "in_progress", "completed", "waiting"]
            .iter()
            .map(|a| serde_json::to_vec(&sample(a)).unwrap())
            .collect();
        let mut parsed = 0;
        for _ in 0..20_000 {
            let body = match random.below(3) {
                0 => random.bytes(512),
                1 => {
                    let v = &valid[random.below(valid.len())];
                    v[..random.below(v.len())].to_vec()
                }
                _ => {
                    let mut v = valid[random.below(valid.len())].clone();
                    for _ in 0..=random.below(3) {
                        let at = random.below(v.len());
                        v[at] = random.next() as u8;
                    }
                    v
                }
            };
            if parse_workflow_job(&body).is_ok() {
                parsed += 1;
            }
        }
        assert!(parsed > 0, "some mangled payloads still parse");
    }
}
