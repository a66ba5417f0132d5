//! Runner versions: which runner release GitHub serves to a scope (its
//! `…/actions/runners/downloads` endpoint), which release a pool's image
//! carries, and how to recognise a runner GitHub refused as deprecated.
//!
//! GitHub stops sending jobs to a runner more than 30 days behind its newest
//! release, and such a runner exits with code 7. The newest release is read
//! at most once per interval per scope and shared by every pool of that
//! scope; the read is conditional (ETag), so an unchanged answer costs no
//! rate-limit budget.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::github::{GitHubApi, Result, RunnerDownload, Scope};

/// The exit code of a runner that GitHub refused because its version is deprecated.
pub const DEPRECATED_EXIT_CODE: i32 = 7;

/// How long the newest release of a scope is reused before GitHub is asked again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60 * 60);

/// A runner release, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunnerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl RunnerVersion {
    /// `2.330.0` or `v2.330.0`; nothing else (a suffix such as `-ubuntu` is
    /// not a version this module can compare).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.split('.');
        let mut number = || -> Option<u32> {
            let part = parts.next()?;
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        let version = RunnerVersion {
            major: number()?,
            minor: number()?,
            patch: number()?,
        };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for RunnerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version an image reference's tag names, as in
/// `ghcr.io/actions/actions-runner:2.330.0`; `None` for `latest`, a digest
/// only, or a tag that is not a plain version.
pub fn image_version(image: &str) -> Option<RunnerVersion> {
    let without_digest = image.split('@').next().unwrap_or(image);
    // The tag follows the last ':' after the last '/' (a registry port is not a tag).
    let name = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (_, tag) = name.rsplit_once(':')?;
    RunnerVersion::parse(tag)
}

/// The newest release among GitHub's downloads, from file names such as
/// `actions-runner-linux-x64-2.330.0.tar.gz`.
pub fn newest_release(downloads: &[RunnerDownload]) -> Option<RunnerVersion> {
    downloads
        .iter()
        .filter_map(|d| {
            let stem = d
                .filename
                .strip_suffix(".tar.gz")
                .or_else(|| d.filename.strip_suffix(".zip"))?;
            RunnerVersion::parse(stem.rsplit('-').next()?)
        })
        .max()
}

/// Whether the pod's `runner` container ended with the "deprecated" exit code.
pub fn exited_deprecated(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == "runner")
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .any(|t| t.exit_code == DEPRECATED_EXIT_CODE)
}

struct Entry {
    fetched: Option<Instant>,
    newest: Option<RunnerVersion>,
}

/// One scope's answer; its lock makes concurrent askers wait for one request.
type Slot = Arc<tokio::sync::Mutex<Entry>>;

/// The newest runner release per (GitHub host, scope), shared by all pools.
pub struct LatestReleases {
    refresh: Duration,
    entries: std::sync::Mutex<HashMap<(String, Scope), Slot>>,
}

impl Default for LatestReleases {
    fn default() -> Self {
        Self::new(DEFAULT_REFRESH)
    }
}

impl LatestReleases {
    pub fn new(refresh: Duration) -> Self {
        LatestReleases {
            refresh,
            entries: Default::default(),
        }
    }

    /// The newest release GitHub serves to `scope` on `host`, asking GitHub
    /// only when the last answer is older than the refresh interval. Pools
    /// asking at the same moment wait for one request. A failed read keeps
    /// the last known answer and is retried at the next call.
    pub async fn newest(
        &self,
        api: &dyn GitHubApi,
        host: &str,
        scope: &Scope,
    ) -> Result<Option<RunnerVersion>> {
        let slot = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            entries
                .entry((host.to_string(), scope.clone()))
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(Entry {
                        fetched: None,
                        newest: None,
                    }))
                })
                .clone()
        };
        let mut entry = slot.lock().await;
        if entry.fetched.is_some_and(|at| at.elapsed() < self.refresh) {
            return Ok(entry.newest);
        }
        let downloads = api.runner_downloads(scope).await?;
        entry.fetched = Some(Instant::now());
        entry.newest = newest_release(&downloads).or(entry.newest);
        Ok(entry.newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::client::{ClientOptions, GitHubClient};
    use crate::github::{Credentials, Endpoint};

    #[test]
    fn versions_parse_and_order() {
        let v = |s| RunnerVersion::parse(s).unwrap();
        assert_eq!(v("2.330.0").to_string(), "2.330.0");
        assert_eq!(v("v2.331.1"), v("2.331.1"));
        assert!(v("2.330.10") > v("2.330.9"));
        assert!(v("3.0.0") > v("2.999.999"));
        for bad in [
            "latest",
            "2.330",
            "2.330.0.1",
            "2.330.x",
            "",
            "2..1",
            "2.330.0-ubuntu",
        ] {
            assert_eq!(RunnerVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn image_tags_tell_the_version_when_they_can() {
        let v = RunnerVersion::parse("2.330.0");
        assert_eq!(image_version("ghcr.io/actions/actions-runner:2.330.0"), v);
        assert_eq!(image_version("registry:5000/runner:v2.330.0"), v);
        assert_eq!(
            image_version("ghcr.io/actions/actions-runner:2.330.0@sha256:abc"),
            v
        );
        assert_eq!(image_version("registry:5000/runner"), None);
        assert_eq!(image_version("ghcr.io/actions/actions-runner:latest"), None);
        assert_eq!(
            image_version("ghcr.io/actions/actions-runner@sha256:abc"),
            None
        );
    }

    #[test]
    fn the_newest_release_comes_from_the_file_names() {
        let d = |f: &str| RunnerDownload {
            os: "linux".into(),
            architecture: "x64".into(),
            download_url: String::new(),
            filename: f.into(),
        };
        let downloads = [
            d("actions-runner-linux-x64-2.329.0.tar.gz"),
            d("actions-runner-win-x64-2.331.0.zip"),
            d("something-else.txt"),
        ];
        assert_eq!(newest_release(&downloads), RunnerVersion::parse("2.331.0"));
        assert_eq!(newest_release(&[]), None);
    }

    #[test]
    fn exit_code_seven_is_deprecated_only_for_the_runner_container() {
        let pod = |name: &str, code: i32| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "status": {"containerStatuses": [{
                    "name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code}}
                }]}
            }))
            .unwrap()
        };
        assert!(exited_deprecated(&pod("runner", 7)));
        assert!(!exited_deprecated(&pod("runner", 1)));
        assert!(!exited_deprecated(&pod("sidecar", 7)));
        assert!(!exited_deprecated(&Pod::default()));
    }

    #[tokio::test]
    async fn many_pools_of_one_scope_read_the_downloads_once_per_interval() {
        let fake = fake_github::FakeGitHub::start(fake_github::Config::default())
            .await
            .unwrap();
        fake.add_token("ghp_versions", &["admin:org"]);
        fake.add_org("acme");
        let endpoint = Endpoint {
            api_base: url::Url::parse(&fake.base_url()).unwrap(),
            ca_bundle: None,
        };
        let api = GitHubClient::new(
            &endpoint,
            &Credentials::Token("ghp_versions".into()),
            ClientOptions::default(),
        )
        .unwrap();
        let scope = Scope::Organization("acme".into());
        let downloads = "GET /orgs/{org}/actions/runners/downloads";

        let releases = LatestReleases::new(Duration::from_millis(300));
        let asks = (0..50).map(|_| releases.newest(&api, "h", &scope));
        let answers = futures::future::join_all(asks).await;
        let newest = answers[0].as_ref().unwrap().expect("a release");
        assert!(answers.iter().all(|a| a.as_ref().unwrap() == &Some(newest)));
        assert_eq!(
            fake.counters().endpoint(downloads),
            1,
            "50 pools, one request"
        );

        tokio::time::sleep(Duration::from_millis(400)).await;
        for _ in 0..10 {
            releases.newest(&api, "h", &scope).await.unwrap();
        }
        assert_eq!(
            fake.counters().endpoint(downloads),
            2,
            "one more after the interval"
        );
        // ... and that one was conditional: unchanged, so 304 and free.
        assert_eq!(fake.counters().endpoint_status(downloads, 304), 1);
    }
}
