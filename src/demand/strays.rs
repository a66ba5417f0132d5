//! Queued jobs that no pool matched when their delivery was routed. The pool
//! may be applied after the job was queued (jobs already waiting when a team
//! installs its first pool), or be so new that the operator's cache has not
//! seen it yet when the delivery comes. Such a job is matched again each time
//! the pools change (one added, a spec edited), until a pool takes
//! it, it starts or completes elsewhere (a GitHub-hosted job, another
//! operator's runner), or GitHub's limit for a job to wait has passed.
//!
//! Memory only, and bounded: the newest [`MAX_STRAYS`] are kept. A restarted
//! leader does not know them; the delivery log does not give them back
//! either, since their deliveries were taken.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use kube::ResourceExt;

use super::store::QUEUED_MAX_AGE;
use crate::RunnerPool;
use crate::webhook::payload::JobEvent;

/// The most unmatched jobs remembered (a few hundred bytes each). GitHub-hosted
/// jobs of a busy organization pass through here too, and leave when they start.
pub const MAX_STRAYS: usize = 1_000;

struct Stray {
    event: JobEvent,
    since: Instant,
}

/// Unmatched queued jobs, by job id.
#[derive(Default)]
pub struct Strays {
    jobs: HashMap<u64, Stray>,
    /// The pools' [`shape`] the jobs were last matched against.
    shape: Option<u64>,
}

impl Strays {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Remembers a queued job no pool matched; the oldest is forgotten
    /// when [`MAX_STRAYS`] are already kept.
    pub fn add(&mut self, event: JobEvent, now: Instant) {
        if self.jobs.len() >= MAX_STRAYS && !self.jobs.contains_key(&event.job_id) {
            let oldest = self.jobs.iter().min_by_key(|(_, s)| s.since);
            if let Some(&id) = oldest.map(|(id, _)| id) {
                self.jobs.remove(&id);
            }
        }
        self.jobs
            .entry(event.job_id)
            .or_insert(Stray { event, since: now });
    }

    /// The job started or completed: it waits for no pool.
    pub fn settle(&mut self, job_id: u64) {
        self.jobs.remove(&job_id);
    }

    /// When the pools' shape is not the one the jobs were last matched
    /// against, forgets jobs past GitHub's wait limit and offers the others
    /// to `matched`, which says whether the job is dealt with (a pool took
    /// it, or it was known already). Returns how many were dealt with.
    pub fn retry(
        &mut self,
        shape: u64,
        now: Instant,
        mut matched: impl FnMut(&JobEvent) -> bool,
    ) -> usize {
        if self.shape == Some(shape) {
            return 0;
        }
        self.shape = Some(shape);
        self.jobs
            .retain(|_, s| now.saturating_duration_since(s.since) < QUEUED_MAX_AGE);
        let before = self.jobs.len();
        self.jobs.retain(|_, s| !matched(&s.event));
        before - self.jobs.len()
    }
}

/// What matching depends on in the pools, as one number: which pools exist,
/// their specs' generations and whether they are being deleted (not their
/// statuses, written many times a minute). Independent of listing order.
pub fn shape(pools: &[std::sync::Arc<RunnerPool>]) -> u64 {
    pools.iter().fold(0u64, |sum, pool| {
        let mut h = DefaultHasher::new();
        pool.uid().hash(&mut h);
        pool.metadata.generation.hash(&mut h);
        pool.metadata.deletion_timestamp.is_some().hash(&mut h);
        sum.wrapping_add(h.finish())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::webhook::payload::{JobAction, JobDetails, JobTimes};

    fn job(id: u64) -> JobEvent {
        JobEvent {
            action: JobAction::Queued,
            job_id: id,
            labels: vec!["linux".into()],
            repository: "acme/app".into(),
            owner: "acme".into(),
            enterprise: None,
            runner_id: None,
            runner_name: None,
            details: JobDetails::default(),
            times: JobTimes::default(),
            recovered: false,
        }
    }

    fn ids(strays: &mut Strays, shape: u64, now: Instant) -> Vec<u64> {
        let mut seen = Vec::new();
        strays.retry(shape, now, |e| {
            seen.push(e.job_id);
            false
        });
        seen.sort();
        seen
    }

    #[test]
    fn jobs_are_offered_again_only_when_the_pools_changed() {
        let now = Instant::now();
        let mut strays = Strays::default();
        strays.add(job(1), now);
        strays.add(job(2), now);
        assert_eq!(ids(&mut strays, 10, now), vec![1, 2]);
        assert_eq!(ids(&mut strays, 10, now), Vec::<u64>::new(), "same pools");
        let taken = strays.retry(11, now, |e| e.job_id == 2);
        assert_eq!(taken, 1);
        assert_eq!(ids(&mut strays, 12, now), vec![1], "job 2 was taken");
    }

    #[test]
    fn a_job_that_started_or_waited_past_githubs_limit_is_forgotten() {
        let now = Instant::now();
        let mut strays = Strays::default();
        strays.add(job(1), now);
        strays.add(job(2), now + Duration::from_secs(3600));
        strays.settle(1);
        assert_eq!(
            ids(&mut strays, 1, now + Duration::from_secs(3600)),
            vec![2]
        );
        let late = now + Duration::from_secs(3600) + QUEUED_MAX_AGE;
        assert_eq!(ids(&mut strays, 2, late), Vec::<u64>::new());
        assert!(strays.is_empty());
    }

    #[test]
    fn the_oldest_is_forgotten_beyond_the_bound_and_a_duplicate_keeps_its_age() {
        let now = Instant::now();
        let mut strays = Strays::default();
        for id in 0..MAX_STRAYS as u64 {
            strays.add(job(id), now + Duration::from_millis(id));
        }
        strays.add(job(5), now + Duration::from_secs(60));
        assert_eq!(strays.len(), MAX_STRAYS, "a duplicate adds nothing");
        strays.add(job(MAX_STRAYS as u64), now + Duration::from_secs(60));
        assert_eq!(strays.len(), MAX_STRAYS);
        let kept = ids(&mut strays, 1, now + Duration::from_secs(60));
        assert!(!kept.contains(&0), "the oldest went");
        assert!(kept.contains(&5) && kept.contains(&(MAX_STRAYS as u64)));
    }
}
