//! Sessions and their message queue. One open session per scale set; job
//! messages queue up in it and go out in envelopes of at most
//! [`MAX_JOB_MESSAGES`], whose `body` is the JSON *string* of the array.
//!
//! Delivery: a poll answers the oldest envelope not acknowledged yet, again
//! and again until it is. `DELETE …/messages/{id}` acknowledges one; a poll
//! with `lastMessageId=N` acknowledges every envelope up to `N` first (the
//! client has handled them). A session nobody polls for `session_timeout`
//! is gone, and so are its messages.

use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::{MAX_JOB_MESSAGES, ScaleSetSession, ServiceError, Statistics};
use crate::model::{Model, Scope};
use crate::util;

struct Envelope {
    id: u64,
    body: String,
    statistics: Statistics,
}

pub(crate) struct Session {
    scale_set_id: u64,
    pub id: String,
    owner: String,
    max_capacity: Option<u64>,
    last_seen: Instant,
    /// Job messages not in an envelope yet.
    pub pending: Vec<Value>,
    /// Envelopes made and not acknowledged, oldest first.
    envelopes: VecDeque<Envelope>,
}

impl Session {
    pub fn public(&self) -> ScaleSetSession {
        ScaleSetSession {
            scale_set_id: self.scale_set_id,
            session_id: self.id.clone(),
            owner_name: self.owner.clone(),
            max_capacity: self.max_capacity,
        }
    }
}

fn session_not_found(id: &str) -> ServiceError {
    ServiceError::new(
        404,
        "RunnerScaleSetSessionNotFoundException",
        format!("Runner scale set session {id} not found."),
    )
}

/// The open session `session_id` of a scale set (touched: it is in use).
fn session_of<'a>(
    sessions: &'a mut HashMap<u64, Session>,
    scale_set_id: u64,
    session_id: &str,
) -> Option<&'a mut Session> {
    let s = sessions
        .get_mut(&scale_set_id)
        .filter(|s| s.id.eq_ignore_ascii_case(session_id))?;
    s.last_seen = Instant::now();
    Some(s)
}

impl Model {
    /// The session JSON with a fresh queue token.
    fn session_json(
        &mut self,
        scope: &Scope,
        scale_set_id: u64,
        tenant_url: &str,
        now: SystemTime,
    ) -> Result<Value, ServiceError> {
        let scale_set = self.scale_set_in(scope, scale_set_id)?.clone();
        let ttl = self.actions.settings.queue_token_ttl;
        let session = self
            .actions
            .sessions
            .get(&scale_set_id)
            .ok_or_else(|| session_not_found("?"))?;
        let (sid, owner) = (session.id.clone(), session.owner.clone());
        let token = self.actions.tokens.mint_queue(scale_set_id, &sid, ttl, now);
        Ok(json!({
            "sessionId": sid,
            "ownerName": owner,
            "runnerScaleSet": self.scale_set_json(&scale_set, tenant_url),
            "messageQueueUrl": format!(
                "{tenant_url}_apis/runtime/runnerscalesets/{scale_set_id}/messages?sessionId={sid}&api-version=6.0-preview"
            ),
            "messageQueueAccessToken": token,
            "statistics": self.statistics(scale_set_id),
        }))
    }

    /// `POST RSS/{id}/sessions` body `{ownerName}`: 409 while one is open.
    pub(crate) fn create_session(
        &mut self,
        scope: &Scope,
        scale_set_id: u64,
        raw: &[u8],
        tenant_url: &str,
        now: SystemTime,
    ) -> Result<Value, ServiceError> {
        self.scale_set_in(scope, scale_set_id)?;
        let b = super::scale_sets::object(raw)?;
        let owner = b
            .get("ownerName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.expire_idle_sessions(Instant::now());
        if let Some(open) = self.actions.sessions.get(&scale_set_id) {
            return Err(ServiceError::new(
                409,
                "RunnerScaleSetSessionConflictException",
                format!(
                    "The scale set {scale_set_id} already has an active session for owner {}.",
                    open.owner
                ),
            ));
        }
        self.actions.sessions.insert(
            scale_set_id,
            Session {
                scale_set_id,
                id: util::uuid_v4(),
                owner,
                max_capacity: None,
                last_seen: Instant::now(),
                pending: Vec::new(),
                envelopes: VecDeque::new(),
            },
        );
        self.session_json(scope, scale_set_id, tenant_url, now)
    }

    fn open_session(
        &mut self,
        scale_set_id: u64,
        session_id: &str,
    ) -> Result<&mut Session, ServiceError> {
        session_of(&mut self.actions.sessions, scale_set_id, session_id)
            .ok_or_else(|| session_not_found(session_id))
    }

    /// `PATCH RSS/{id}/sessions/{sid}`: a new queue token; 404 when the
    /// service lost the session.
    pub(crate) fn refresh_session(
        &mut self,
        scope: &Scope,
        scale_set_id: u64,
        session_id: &str,
        tenant_url: &str,
        now: SystemTime,
    ) -> Result<Value, ServiceError> {
        self.scale_set_in(scope, scale_set_id)?;
        self.open_session(scale_set_id, session_id)?;
        self.session_json(scope, scale_set_id, tenant_url, now)
    }

    pub(crate) fn delete_session(
        &mut self,
        scope: &Scope,
        scale_set_id: u64,
        session_id: &str,
    ) -> Result<(), ServiceError> {
        self.scale_set_in(scope, scale_set_id)?;
        self.open_session(scale_set_id, session_id)?;
        self.actions.sessions.remove(&scale_set_id);
        Ok(())
    }

    /// One look at the queue for a poll: the envelope to answer, if any.
    /// A session that is gone answers 401 (the client refreshes, gets 404,
    /// and creates a new session).
    pub(crate) fn poll(
        &mut self,
        scale_set_id: u64,
        session_id: &str,
        last_message_id: Option<u64>,
        max_capacity: Option<u64>,
    ) -> Result<Option<Value>, ServiceError> {
        let stats = self.statistics(scale_set_id);
        let next_id = &mut self.actions.next_message_id;
        // A queue whose session is gone refuses its token.
        let session = session_of(&mut self.actions.sessions, scale_set_id, session_id)
            .ok_or_else(ServiceError::unauthorized)?;
        if max_capacity.is_some() {
            session.max_capacity = max_capacity;
        }
        if let Some(n) = last_message_id {
            session.envelopes.retain(|e| e.id > n);
        }
        if session.envelopes.is_empty() && !session.pending.is_empty() {
            let pending = std::mem::take(&mut session.pending);
            for chunk in pending.chunks(MAX_JOB_MESSAGES) {
                let id = *next_id;
                *next_id += 1;
                session.envelopes.push_back(Envelope {
                    id,
                    body: serde_json::to_string(chunk).expect("json"),
                    statistics: stats,
                });
            }
        }
        Ok(session.envelopes.front().map(|e| {
            json!({
                "messageId": e.id,
                "messageType": "RunnerScaleSetJobMessages",
                "body": e.body,
                "statistics": e.statistics,
            })
        }))
    }

    /// Keeps a session alive while a poll waits on it.
    pub(crate) fn touch_session(&mut self, scale_set_id: u64) {
        if let Some(s) = self.actions.sessions.get_mut(&scale_set_id) {
            s.last_seen = Instant::now();
        }
    }

    /// `DELETE …/messages/{id}`: acknowledges it (again: still 204).
    pub(crate) fn ack(
        &mut self,
        scale_set_id: u64,
        session_id: &str,
        message_id: u64,
    ) -> Result<(), ServiceError> {
        let issued = message_id < self.actions.next_message_id;
        // A queue whose session is gone refuses its token.
        let session = session_of(&mut self.actions.sessions, scale_set_id, session_id)
            .ok_or_else(ServiceError::unauthorized)?;
        let before = session.envelopes.len();
        session.envelopes.retain(|e| e.id != message_id);
        if session.envelopes.len() == before && !issued {
            return Err(ServiceError::new(
                404,
                "MessageNotFoundException",
                format!("Message {message_id} not found."),
            ));
        }
        Ok(())
    }

    pub(crate) fn expire_idle_sessions(&mut self, now: Instant) {
        let timeout = self.actions.settings.session_timeout;
        self.actions
            .sessions
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < timeout);
    }

    /// Time-driven changes: idle sessions expire, stale jobs are re-offered.
    pub(crate) fn actions_tick(&mut self, now: Instant) {
        self.expire_idle_sessions(now);
        self.reassign_stale_jobs(now);
    }
}
