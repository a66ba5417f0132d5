//! Runner versions: which runner release GitHub serves to a scope (its
//! `…/actions/runners/downloads` endpoint), which release a pool's image
//! carries, whether that is outdated, and how to recognise a runner GitHub
//! refused as deprecated.
//!
//! GitHub stops sending jobs to a runner 30 days after a newer release is out,
//! and such a runner exits with code 7. The newest release is read at most
//! once per interval per scope and shared by every pool of that scope; the
//! read is conditional (ETag), so an unchanged answer costs no rate-limit
//! budget. GitHub does not say when a release came out, so the operator
//! remembers when it first saw each newest release: 30 days after that is the
//! latest date jobs can stop (they stop earlier when the release is older
//! than the operator's first look at it).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use crate::crd::RunnerVersionStatus;
use crate::github::{RunnerDownload, Scope};
use crate::pod::cached::CachedPod;

pub mod pool;
pub mod releases;

/// The exit code of a runner that GitHub refused because its version is deprecated.
pub const DEPRECATED_EXIT_CODE: i32 = 7;

/// How long the newest release of a scope is reused before GitHub is asked again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60 * 60);

/// After a failed read, the next one waits this long (or the refresh
/// interval, if shorter): a GitHub outage costs one request per scope a
/// minute, not one per pool and pass.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// GitHub stops sending jobs to a runner this long after a newer release.
pub const JOBS_STOP_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Releases remembered per scope, with when each was first seen.
const REMEMBERED_RELEASES: usize = 16;

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

/// Where a pool's runner version was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSource {
    /// The tag of the `runner` container's image.
    ImageTag,
    /// `spec.runnerVersion`, for an image whose tag names no version.
    Spec,
}

impl VersionSource {
    fn describe(self) -> &'static str {
        match self {
            VersionSource::ImageTag => "the runner image's tag",
            VersionSource::Spec => "spec.runnerVersion",
        }
    }
}

/// The version of a pool's runners: the image tag's when it names one, else
/// `spec.runnerVersion`.
pub fn pool_version(
    image: Option<&str>,
    spec_version: Option<&str>,
) -> Option<(RunnerVersion, VersionSource)> {
    image
        .and_then(image_version)
        .map(|v| (v, VersionSource::ImageTag))
        .or_else(|| {
            spec_version
                .and_then(RunnerVersion::parse)
                .map(|v| (v, VersionSource::Spec))
        })
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
pub fn exited_deprecated(pod: &CachedPod) -> bool {
    pod.status.runner_exit_code == Some(DEPRECATED_EXIT_CODE)
}

/// A release and when this operator first saw GitHub serve it as the newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub version: RunnerVersion,
    pub first_seen: Timestamp,
}

/// What is known of a scope's releases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeReleases {
    /// The newest release, as GitHub last answered.
    pub newest: Option<RunnerVersion>,
    /// Releases seen as the newest, with when each was first seen.
    pub seen: BTreeMap<RunnerVersion, Timestamp>,
}

impl ScopeReleases {
    /// The newest release and when it was first seen.
    pub fn latest(&self) -> Option<Sighting> {
        let version = self.newest?;
        let first_seen = *self.seen.get(&version)?;
        Some(Sighting {
            version,
            first_seen,
        })
    }

    /// Of the releases newer than `version`, the one first seen earliest:
    /// 30 days after it, GitHub sends no more jobs to `version` at the latest.
    pub fn first_newer_than(&self, version: RunnerVersion) -> Option<Sighting> {
        self.seen
            .range(version..)
            .filter(|(v, _)| **v > version)
            .min_by_key(|(_, at)| **at)
            .map(|(v, at)| Sighting {
                version: *v,
                first_seen: *at,
            })
    }

    /// Remembers that `version` was seen at `at` (an earlier sighting wins).
    pub(crate) fn saw(&mut self, version: RunnerVersion, at: Timestamp) {
        self.seen
            .entry(version)
            .and_modify(|first| *first = (*first).min(at))
            .or_insert(at);
        while self.seen.len() > REMEMBERED_RELEASES {
            self.seen.pop_first();
        }
    }
}

/// A condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionValue {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// The `RunnerVersionOutdated` condition's type and reasons.
pub const OUTDATED: &str = "RunnerVersionOutdated";
pub const NEWER_RELEASE: &str = "NewerReleaseAvailable";
pub const UP_TO_DATE: &str = "UpToDate";
pub const VERSION_UNKNOWN: &str = "VersionUnknown";
pub const LATEST_UNKNOWN: &str = "LatestUnknown";

/// What a pool shows of its runner version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// `status.runnerVersion`; `None` when neither version is known.
    pub status: Option<RunnerVersionStatus>,
    /// The `RunnerVersionOutdated` condition.
    pub condition: ConditionValue,
}

impl Assessment {
    /// Whether the pool's runners are older than the newest release; `None`
    /// when either version is unknown.
    pub fn outdated(&self) -> Option<bool> {
        self.status.as_ref().and_then(|s| s.outdated)
    }
}

/// The day (UTC) of a timestamp, `2026-12-01`.
fn day(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d").to_string()
}

/// Compares the pool's runner version with the newest release of its scope.
/// `image` is the `runner` container's image, named when its tag tells no version.
pub fn assess(
    version: Option<(RunnerVersion, VersionSource)>,
    image: Option<&str>,
    releases: &ScopeReleases,
    scope: &Scope,
) -> Assessment {
    let latest = releases.latest();
    let status = (latest.is_some() || version.is_some()).then(|| RunnerVersionStatus {
        latest: latest.map(|l| l.version.to_string()),
        latest_first_seen: latest.map(|l| l.first_seen.to_string()),
        image: version.map(|(v, _)| v.to_string()),
        outdated: latest.zip(version).map(|(l, (v, _))| v < l.version),
    });
    let condition = match (version, latest) {
        (None, _) => ConditionValue {
            status: "Unknown",
            reason: VERSION_UNKNOWN,
            message: format!(
                "the tag of the runner image {} names no version (such as :2.330.0): set spec.runnerVersion to the runner release the image carries to compare it with the newest release",
                image.unwrap_or("(none)")
            ),
        },
        (Some((v, _)), None) => ConditionValue {
            status: "Unknown",
            reason: LATEST_UNKNOWN,
            message: format!(
                "runner version {v}: the newest release GitHub serves to {scope} is not known yet"
            ),
        },
        (Some((v, source)), Some(l)) if v < l.version => {
            let mut message = format!(
                "runner version {v} (from {}) is older than {}, the newest release GitHub serves to {scope}; GitHub stops sending jobs to a runner 30 days after a newer release",
                source.describe(),
                l.version,
            );
            if let Some(first) = releases.first_newer_than(v) {
                message.push_str(&format!(
                    ": by {} at the latest (30 days after this operator first saw {} on {}; earlier if GitHub released it before)",
                    day(first.first_seen + JOBS_STOP_AFTER),
                    first.version,
                    day(first.first_seen),
                ));
            }
            message.push_str(". Upgrade the runner image");
            ConditionValue {
                status: "True",
                reason: NEWER_RELEASE,
                message,
            }
        }
        (Some((v, source)), Some(l)) => ConditionValue {
            status: "False",
            reason: UP_TO_DATE,
            message: format!(
                "runner version {v} (from {}) is not older than {}, the newest release GitHub serves to {scope}",
                source.describe(),
                l.version
            ),
        },
    };
    Assessment { status, condition }
}

/// The sighting a pool's status kept: its `latest` and `latestFirstSeen`.
pub fn recalled(status: Option<&RunnerVersionStatus>) -> Option<Sighting> {
    let status = status?;
    Some(Sighting {
        version: RunnerVersion::parse(status.latest.as_deref()?)?,
        first_seen: status.latest_first_seen.as_deref()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::releases::LatestReleases;
    use super::*;
    use crate::github::GitHubApi;
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
        let pod = |name: &str, code: i32| -> CachedPod {
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
        assert!(!exited_deprecated(&CachedPod::default()));
    }

    /// A fake GitHub with organization `acme`, and a client for it.
    async fn fake_acme() -> (fake_github::FakeGitHub, Arc<dyn GitHubApi>, Scope) {
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
        (fake, Arc::new(api), Scope::Organization("acme".into()))
    }

    const DOWNLOADS: &str = "GET /orgs/{org}/actions/runners/downloads";
    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn many_pools_of_one_scope_read_the_downloads_once_per_interval() {
        let (fake, api, scope) = fake_acme().await;

        let releases = LatestReleases::new(Duration::from_millis(300));
        let asks = (0..50).map(|_| releases.releases(&api, "h", &scope, None, WAIT));
        let answers = futures::future::join_all(asks).await;
        let newest = answers[0].newest.expect("a release");
        assert_eq!(newest.to_string(), "2.330.0");
        assert!(answers.iter().all(|a| a.newest == Some(newest)));
        assert_eq!(
            fake.counters().endpoint(DOWNLOADS),
            1,
            "50 pools, one request"
        );

        tokio::time::sleep(Duration::from_millis(400)).await;
        for _ in 0..10 {
            releases.releases(&api, "h", &scope, None, WAIT).await;
        }
        assert_eq!(
            fake.counters().endpoint(DOWNLOADS),
            2,
            "one more after the interval"
        );
        // ... and that one was conditional: unchanged, so 304 and free.
        assert_eq!(fake.counters().endpoint_status(DOWNLOADS, 304), 1);

        // A new release is seen at the next read, first seen now; the old
        // one's sighting is kept for the deadline of older runners.
        fake.set_runner_version("2.331.0").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let known = releases.releases(&api, "h", &scope, None, WAIT).await;
        assert_eq!(known.newest, RunnerVersion::parse("2.331.0"));
        assert_eq!(known.seen.len(), 2);
        assert!(known.latest().unwrap().first_seen >= known.seen[&newest]);
    }

    #[tokio::test]
    async fn a_failed_read_keeps_the_last_release_and_is_not_repeated_by_every_pool() {
        let (fake, api, scope) = fake_acme().await;
        let releases = LatestReleases::new(Duration::from_millis(200));
        let first = releases.releases(&api, "h", &scope, None, WAIT).await;
        assert!(first.newest.is_some());

        fake.set_unavailable(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = fake.counters().endpoint(DOWNLOADS);
        for _ in 0..20 {
            let known = releases.releases(&api, "h", &scope, None, WAIT).await;
            assert_eq!(known, first, "the last known release stays");
        }
        let asked = fake.counters().endpoint(DOWNLOADS) - before;
        // The client may retry a 503 itself; what matters is one read, not 20.
        assert!(asked >= 1, "the stale answer was read again");
        assert!(
            asked <= 4,
            "{asked} requests for 20 asks while GitHub is down"
        );
    }

    #[tokio::test]
    async fn a_slow_read_does_not_hold_the_asker_longer_than_its_wait() {
        let (fake, api, scope) = fake_acme().await;
        fake.set_endpoint_latency(DOWNLOADS, Duration::from_secs(2));
        let releases = LatestReleases::new(Duration::from_secs(3600));
        let started = Instant::now();
        let known = releases
            .releases(&api, "h", &scope, None, Duration::from_millis(100))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(known.newest, None, "nothing known yet");
        // The read finishes in the background and serves the next asker.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let known = releases
            .releases(&api, "h", &scope, None, Duration::from_millis(100))
            .await;
        assert_eq!(known.newest, RunnerVersion::parse("2.330.0"));
        assert_eq!(fake.counters().endpoint(DOWNLOADS), 1);
    }

    fn at(day: &str) -> Timestamp {
        format!("{day}T10:00:00Z").parse().unwrap()
    }

    fn sighting(version: &str, day: &str) -> Sighting {
        Sighting {
            version: RunnerVersion::parse(version).unwrap(),
            first_seen: at(day),
        }
    }

    fn known(newest: &str, seen: &[(&str, &str)]) -> ScopeReleases {
        let mut releases = ScopeReleases {
            newest: RunnerVersion::parse(newest),
            ..Default::default()
        };
        for (v, day) in seen {
            let s = sighting(v, day);
            releases.saw(s.version, s.first_seen);
        }
        releases
    }

    fn org() -> Scope {
        Scope::Organization("acme".into())
    }

    #[test]
    fn the_pool_version_comes_from_the_tag_else_the_spec() {
        let v = |s| RunnerVersion::parse(s).unwrap();
        assert_eq!(
            pool_version(
                Some("ghcr.io/actions/actions-runner:2.329.0"),
                Some("2.1.0")
            ),
            Some((v("2.329.0"), VersionSource::ImageTag))
        );
        assert_eq!(
            pool_version(
                Some("ghcr.io/actions/actions-runner:latest"),
                Some("2.328.0")
            ),
            Some((v("2.328.0"), VersionSource::Spec))
        );
        assert_eq!(pool_version(Some("runner:latest"), None), None);
        assert_eq!(pool_version(None, Some("not-a-version")), None);
    }

    #[test]
    fn an_outdated_pool_names_both_versions_and_the_latest_date_jobs_stop() {
        let releases = known("2.330.0", &[("2.330.0", "2026-11-20")]);
        let a = assess(
            pool_version(Some("r:2.329.0"), None),
            Some("r:2.329.0"),
            &releases,
            &org(),
        );
        assert_eq!(a.outdated(), Some(true));
        assert_eq!(
            a.status,
            Some(RunnerVersionStatus {
                latest: Some("2.330.0".into()),
                latest_first_seen: Some("2026-11-20T10:00:00Z".into()),
                image: Some("2.329.0".into()),
                outdated: Some(true),
            })
        );
        let c = &a.condition;
        assert_eq!((c.status, c.reason), ("True", NEWER_RELEASE));
        for part in [
            "runner version 2.329.0 (from the runner image's tag)",
            "older than 2.330.0",
            "orgs/acme",
            "by 2026-12-20 at the latest",
            "first saw 2.330.0 on 2026-11-20",
        ] {
            assert!(c.message.contains(part), "{part:?} not in {:?}", c.message);
        }
    }

    #[test]
    fn the_date_counts_from_the_first_release_newer_than_the_runners() {
        // Seen 2.329.0 on Nov 1, 2.330.0 on Nov 20: a 2.328.0 runner stops
        // getting jobs 30 days after 2.329.0 at the latest, a 2.329.0 one 30
        // days after 2.330.0.
        let releases = known(
            "2.330.0",
            &[("2.329.0", "2026-11-01"), ("2.330.0", "2026-11-20")],
        );
        let message = |v: &str| {
            assess(pool_version(None, Some(v)), None, &releases, &org())
                .condition
                .message
        };
        let old = message("2.328.0");
        assert!(old.contains("by 2026-12-01 at the latest"), "{old}");
        assert!(old.contains("first saw 2.329.0 on 2026-11-01"), "{old}");
        assert!(old.contains("(from spec.runnerVersion)"), "{old}");
        assert!(old.contains("older than 2.330.0"), "{old}");
        let newer = message("2.329.0");
        assert!(newer.contains("by 2026-12-20 at the latest"), "{newer}");
    }

    #[test]
    fn current_unknown_and_newer_than_latest_runners() {
        let releases = known("2.330.0", &[("2.330.0", "2026-11-20")]);
        let current = assess(pool_version(None, Some("2.330.0")), None, &releases, &org());
        assert_eq!(
            (current.condition.status, current.condition.reason),
            ("False", UP_TO_DATE)
        );
        assert_eq!(current.outdated(), Some(false));
        let ahead = assess(pool_version(None, Some("2.331.0")), None, &releases, &org());
        assert_eq!(ahead.outdated(), Some(false));

        let untagged = assess(None, Some("r:latest"), &releases, &org());
        assert_eq!(
            (untagged.condition.status, untagged.condition.reason),
            ("Unknown", VERSION_UNKNOWN)
        );
        assert!(untagged.condition.message.contains("r:latest"));
        assert!(untagged.condition.message.contains("spec.runnerVersion"));
        assert_eq!(untagged.outdated(), None);
        let status = untagged.status.unwrap();
        assert_eq!(
            (status.latest.as_deref(), status.image, status.outdated),
            (Some("2.330.0"), None, None)
        );

        let unread = assess(
            pool_version(None, Some("2.330.0")),
            None,
            &ScopeReleases::default(),
            &org(),
        );
        assert_eq!(
            (unread.condition.status, unread.condition.reason),
            ("Unknown", LATEST_UNKNOWN)
        );
        assert_eq!(unread.outdated(), None);
        let nothing = assess(None, None, &ScopeReleases::default(), &org());
        assert_eq!(nothing.status, None);
    }

    #[test]
    fn a_sighting_kept_in_status_survives_a_restart_and_only_moves_earlier() {
        let releases = known("2.330.0", &[("2.330.0", "2026-11-25")]);
        let status = assess(pool_version(None, Some("2.329.0")), None, &releases, &org())
            .status
            .unwrap();
        let recalled = recalled(Some(&status)).unwrap();
        assert_eq!(recalled, sighting("2.330.0", "2026-11-25"));

        let mut later = known("2.330.0", &[("2.330.0", "2026-12-01")]);
        later.saw(recalled.version, recalled.first_seen);
        assert_eq!(later.latest(), Some(recalled), "the earlier sighting wins");
        later.saw(recalled.version, at("2026-12-24"));
        assert_eq!(later.latest(), Some(recalled));
        assert_eq!(recalled_of_nothing(), None);
    }

    fn recalled_of_nothing() -> Option<Sighting> {
        recalled(Some(&RunnerVersionStatus::default()))
    }
}
