//! Why an object cannot do its work, as the reason of its conditions: one
//! list for pools and RunnerGroups, and one reading of GitHub's errors, so a
//! 404 or a refused credential means the same whichever controller met it.

use std::time::Duration;

use crate::github::GitHubError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    InvalidSpec,
    CredentialsInvalid,
    RunnerGroupNotFound,
    RateLimited,
    GitHubUnavailable,
    /// GitHub refused a request as invalid (422, 409).
    Rejected,
    /// Runners fail before they come online; new ones are created with backoff.
    RunnersFailing,
    /// The API server refuses the runner pods (Pod Security, quota, admission).
    PodRejected,
    /// The operator may not set up the pool's container mode (its RBAC lacks
    /// the rights `kubernetes` mode grants the pool's ServiceAccount).
    ContainerModeNotPermitted,
    /// A runner exited with code 7: GitHub refuses its version as deprecated.
    RunnerVersionDeprecated,
    /// A runner group of that name exists and `adopt` is not set.
    AlreadyExists,
    RepositoryNotFound,
    /// An organization named in an enterprise group's access list is unknown.
    OrganizationNotFound,
    /// The group of that name is shared with the organization by its
    /// enterprise: the organization can neither change nor delete it.
    Inherited,
    /// A RunnerGroup being deleted: runners are still in the group.
    WaitingForRunners,
}

impl Problem {
    pub fn reason(self) -> &'static str {
        match self {
            Problem::InvalidSpec => "InvalidSpec",
            Problem::CredentialsInvalid => "CredentialsInvalid",
            Problem::RunnerGroupNotFound => "RunnerGroupNotFound",
            Problem::RateLimited => "RateLimited",
            Problem::GitHubUnavailable => "GitHubUnavailable",
            Problem::Rejected => "Rejected",
            Problem::RunnersFailing => "RunnersFailing",
            Problem::PodRejected => "PodRejected",
            Problem::ContainerModeNotPermitted => "ContainerModeNotPermitted",
            Problem::RunnerVersionDeprecated => "RunnerVersionDeprecated",
            Problem::AlreadyExists => "AlreadyExists",
            Problem::RepositoryNotFound => "RepositoryNotFound",
            Problem::OrganizationNotFound => "OrganizationNotFound",
            Problem::Inherited => "Inherited",
            Problem::WaitingForRunners => "WaitingForRunners",
        }
    }

    /// Whether only a person can fix it (kstatus `Stalled`). The others pass
    /// by themselves (a rate limit resets, GitHub comes back, runners finish)
    /// or are retried with backoff (failing runners: a bad image is as often a
    /// registry hiccup, as with a Deployment's crash-looping pods).
    pub fn needs_a_person(self) -> bool {
        !matches!(
            self,
            Problem::RateLimited
                | Problem::GitHubUnavailable
                | Problem::RunnersFailing
                | Problem::WaitingForRunners
        )
    }

    /// The problem a GitHub error shows as. A 404 from a scope or group the
    /// credentials should reach means they cannot see it: GitHub answers 404,
    /// not 403, for a missing permission.
    pub fn of(error: &GitHubError) -> Problem {
        match error {
            GitHubError::Unauthorized { .. }
            | GitHubError::InvalidCredentials(_)
            | GitHubError::NotFound(_) => Problem::CredentialsInvalid,
            GitHubError::RateLimited { .. } => Problem::RateLimited,
            GitHubError::InvalidEndpoint(_) => Problem::InvalidSpec,
            GitHubError::Invalid(_) | GitHubError::Conflict(_) => Problem::Rejected,
            _ => Problem::GitHubUnavailable,
        }
    }
}

/// A problem in the way, with what to show and when to look again.
pub struct Blocked {
    pub problem: Problem,
    pub message: String,
    /// How long to wait before trying again, when the problem says (a rate
    /// limit's reset); otherwise the object's backoff.
    pub retry_in: Option<Duration>,
}

impl Blocked {
    pub fn new(problem: Problem, message: impl Into<String>) -> Self {
        Blocked {
            problem,
            message: message.into(),
            retry_in: None,
        }
    }

    /// The problem a GitHub error met while doing `what` shows as.
    pub fn github(error: &GitHubError, what: &str) -> Self {
        let problem = Problem::of(error);
        match error {
            // The wait is not in the message: a countdown would rewrite status
            // on every pass.
            GitHubError::RateLimited {
                retry_after,
                secondary,
            } => {
                let limit = if *secondary { "secondary" } else { "primary" };
                let mut blocked = Blocked::new(
                    problem,
                    format!(
                        "{what}: GitHub's {limit} rate limit is exhausted; nothing is sent until it resets"
                    ),
                );
                blocked.retry_in = Some(*retry_after);
                blocked
            }
            _ => Blocked::new(problem, format!("{what}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_errors_mean_the_same_problem_for_every_controller() {
        let cases = [
            (
                GitHubError::NotFound("orgs/acme".into()),
                "CredentialsInvalid",
            ),
            (
                GitHubError::Unauthorized {
                    status: 401,
                    message: "Bad credentials".into(),
                },
                "CredentialsInvalid",
            ),
            (GitHubError::Invalid("name".into()), "Rejected"),
            (GitHubError::Server { status: 502 }, "GitHubUnavailable"),
            (GitHubError::InvalidEndpoint("http".into()), "InvalidSpec"),
        ];
        for (error, reason) in cases {
            assert_eq!(Problem::of(&error).reason(), reason, "{error}");
        }
    }

    #[test]
    fn a_rate_limit_message_has_no_countdown() {
        let limited = |secs| GitHubError::RateLimited {
            retry_after: Duration::from_secs(secs),
            secondary: true,
        };
        let (a, b) = (
            Blocked::github(&limited(30), "cannot list runners"),
            Blocked::github(&limited(29), "cannot list runners"),
        );
        assert_eq!(a.message, b.message, "status is not rewritten every second");
        assert_eq!(a.retry_in, Some(Duration::from_secs(30)));
        assert_eq!(a.problem, Problem::RateLimited);
        assert!(!a.problem.needs_a_person());
        assert!(Problem::CredentialsInvalid.needs_a_person());
    }
}
