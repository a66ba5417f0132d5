//! The handle's controls of the Actions service (see the README's
//! "Runner scale sets").

use std::time::Duration;

use super::{ScaleSet, ScaleSetSession, ServiceBom, ServiceSettings, Statistics};
use crate::FakeGitHub;

impl FakeGitHub {
    /// Every scale set, by id.
    pub fn scale_sets(&self) -> Vec<ScaleSet> {
        self.lock()
            .model
            .actions
            .scale_sets
            .values()
            .cloned()
            .collect()
    }

    pub fn scale_set(&self, id: u64) -> Option<ScaleSet> {
        self.lock().model.actions.scale_sets.get(&id).cloned()
    }

    /// Open sessions, by scale set id.
    pub fn sessions(&self) -> Vec<ScaleSetSession> {
        self.lock().model.actions.sessions()
    }

    /// A scale set's statistics as the service would report them now
    /// (all zero for an unknown id).
    pub fn scale_set_statistics(&self, id: u64) -> Statistics {
        self.lock().model.statistics(id)
    }

    /// GHES style (`true`): new jobs are offered with `JobAvailable` and
    /// assigned only once acquired. github.com style (`false`, the
    /// default): assigned at once.
    pub fn set_acquire_mode(&self, acquire: bool) {
        self.lock().model.actions.settings.acquire_mode = acquire;
    }

    /// How long a message poll waits before answering 202 (default 50 s).
    pub fn set_long_poll(&self, wait: Duration) {
        self.lock().model.actions.settings.long_poll = wait;
    }

    /// A session nobody polls for this long is gone (default 2 min).
    pub fn set_session_timeout(&self, timeout: Duration) {
        self.lock().model.actions.settings.session_timeout = timeout;
    }

    /// Lifetime of the queue tokens issued from now on (default 50 min).
    pub fn set_queue_token_ttl(&self, ttl: Duration) {
        self.lock().model.actions.settings.queue_token_ttl = ttl;
    }

    /// Lifetime of the admin tokens issued from now on (default 1 h).
    pub fn set_admin_token_ttl(&self, ttl: Duration) {
        self.lock().model.actions.settings.admin_token_ttl = ttl;
    }

    /// Re-offer assigned jobs no runner started within this (n-th time
    /// after n × it, at most 3 times); `None` (the default) never does.
    pub fn set_reassign_after(&self, after: Option<Duration>) {
        self.lock().model.actions.settings.reassign_after = after;
    }

    /// Which service answers start with a UTF-8 BOM (default: all).
    pub fn set_service_bom(&self, bom: ServiceBom) {
        self.lock().model.actions.settings.bom = bom;
    }

    pub fn actions_settings(&self) -> ServiceSettings {
        self.lock().model.actions.settings.clone()
    }

    /// Every queue token issued so far is refused (401) from now on.
    pub fn expire_queue_tokens(&self) {
        self.lock().model.actions.expire_queue_tokens();
    }

    /// Every admin token issued so far is refused (401) from now on.
    pub fn expire_admin_tokens(&self) {
        self.lock().model.actions.expire_admin_tokens();
    }

    /// The service loses every session: polls answer 401, refreshes 404,
    /// and a new session can be created at once.
    pub fn drop_sessions(&self) {
        self.lock().model.actions.drop_sessions();
    }
}
