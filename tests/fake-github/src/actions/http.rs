//! Serves Actions requests: the same outage switch, latency, injected
//! faults (before or after apply, dropped connections) and accounting as the
//! REST side, then the call itself. The long poll waits outside the state
//! lock, looking at the queue every few milliseconds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::ServiceBom;
use super::dispatch::{self, Answer, Request};
use super::routes::{Op, Route};
use super::tokens;
use crate::accounting::Record;
use crate::faults;
use crate::server::{Query, Shared, drop_connection, injected_message};

const BOM: &[u8] = b"\xef\xbb\xbf";
/// How often a waiting poll looks at its queue.
const POLL_TICK: Duration = Duration::from_millis(10);

/// A finished answer: status, body and its content type.
struct Reply {
    status: u16,
    body: Option<Vec<u8>>,
    content_type: &'static str,
    injected: bool,
    busy: bool,
    /// Bodies of the service itself (not the REST registration) may get a BOM.
    service: bool,
}

impl Reply {
    fn from_answer(a: Answer) -> Self {
        let json = |status, v: &Value| Reply {
            status,
            body: Some(serde_json::to_vec(v).expect("json")),
            content_type: "application/json; charset=utf-8",
            injected: false,
            busy: false,
            service: true,
        };
        match a {
            Answer::Json(status, v) => json(status, &v),
            Answer::Empty(status) => Reply {
                body: None,
                ..json(status, &Value::Null)
            },
            Answer::Api(e) => Reply {
                service: false,
                ..json(e.status, &e.body())
            },
            Answer::Service(e) => Reply {
                busy: e.busy,
                ..json(e.status, &e.body())
            },
        }
    }

    /// What a proxy in front of the service answers for an injected failure.
    fn injected(status: u16) -> Self {
        Reply {
            status,
            body: Some(injected_message(status).as_bytes().to_vec()),
            content_type: "text/plain; charset=utf-8",
            injected: true,
            busy: false,
            service: false,
        }
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Serves one Actions request.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    mut r: Route,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let authz = headers.get("authorization").and_then(|h| h.to_str().ok());
    let credential = tokens::credential_key(authz);
    let (m, tpl) = (r.method, r.template);
    *sh.lock().acct.received.entry((m, tpl)).or_default() += 1;
    let unavailable = sh.unavailable.load(Ordering::Relaxed);
    if !unavailable {
        let delay = sh.lock().faults.latency_for(m, tpl);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let query = Query::parse(uri.query());
    if r.op.uses_queue_token() {
        r.session = query.get("sessionId").map(str::to_string);
    }
    let reply = if unavailable {
        sh.lock().acct.faults_injected += 1;
        Reply::injected(503)
    } else {
        let req = Request {
            route: &r,
            query: &query,
            authz,
            body: &body,
            base: &sh.base_url,
            now: SystemTime::now(),
        };
        answer(&sh, &req, headers, &credential).await
    };
    {
        let mut st = sh.lock();
        if reply.busy {
            st.acct.busy_delete_attempts += 1;
        }
        st.acct.record(Record {
            method: m,
            template: tpl,
            path: uri.path(),
            query: uri.query(),
            status: reply.status,
            credential: &credential,
            duration_us: started.elapsed().as_micros() as u64,
            injected: reply.injected,
        });
    }
    tracing::debug!(method = m, endpoint = tpl, status = reply.status, credential = %credential, "actions request");
    if reply.status == faults::DROP_CONNECTION {
        drop_connection();
    }
    respond(&sh, reply)
}

async fn answer(
    sh: &Arc<Shared>,
    req: &Request<'_>,
    headers: &HeaderMap,
    credential: &str,
) -> Reply {
    let r = req.route;
    let (m, tpl) = (r.method, r.template);
    let pre = {
        let mut st = sh.lock();
        st.model.actions_tick(Instant::now());
        st.faults.injected(m, tpl, credential, false)
    };
    if let Some(status) = pre {
        sh.lock().acct.faults_injected += 1;
        return Reply::injected(status);
    }
    let reply = if r.op == Op::Poll {
        long_poll(sh, req, headers).await
    } else {
        let a = dispatch::call(&mut sh.lock().model, req);
        Reply {
            // The registration is GitHub's API, not the service.
            service: r.op != Op::Register,
            ..Reply::from_answer(a)
        }
    };
    if reply.is_success() {
        let mut st = sh.lock();
        if let Some(status) = st.faults.injected(m, tpl, credential, true) {
            // Applied, but the answer is lost on its way back.
            st.acct.faults_injected += 1;
            st.acct.answers_lost += 1;
            return Reply::injected(status);
        }
    }
    reply
}

/// `GET <messageQueueUrl>[?lastMessageId=N]`: 200 with the oldest envelope
/// not acknowledged, or 202 after `long_poll` without one.
async fn long_poll(sh: &Arc<Shared>, req: &Request<'_>, headers: &HeaderMap) -> Reply {
    let r = req.route;
    let scale_set = r.scale_set.unwrap_or(0);
    let last_id = req
        .query
        .get("lastMessageId")
        .and_then(|v| v.parse::<u64>().ok());
    let max_capacity = headers
        .get("x-scalesetmaxcapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (session, deadline) = {
        let st = sh.lock();
        let checked = dispatch::queue_auth(&st.model, r, req.authz, req.now)
            .and_then(|session| dispatch::check_optional_api_version(req.query).map(|_| session));
        match checked {
            Ok(session) => (
                session,
                Instant::now() + st.model.actions.settings.long_poll,
            ),
            Err(e) => return Reply::from_answer(Answer::Service(e)),
        }
    };
    let mut first = true;
    loop {
        {
            let mut st = sh.lock();
            st.model.actions_tick(Instant::now());
            // Only the first look acknowledges up to lastMessageId.
            let last = if first { last_id } else { None };
            first = false;
            match st.model.poll(scale_set, &session, last, max_capacity) {
                Ok(Some(envelope)) => return Reply::from_answer(Answer::Json(200, envelope)),
                Ok(None) => {}
                Err(e) => return Reply::from_answer(Answer::Service(e)),
            }
            st.model.touch_session(scale_set);
        }
        let now = Instant::now();
        if now >= deadline || sh.stopping.load(Ordering::Relaxed) {
            return Reply::from_answer(Answer::Empty(202));
        }
        tokio::time::sleep(POLL_TICK.min(deadline - now)).await;
    }
}

fn respond(sh: &Shared, reply: Reply) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let h = resp.headers_mut().expect("builder");
    h.insert(
        "x-tfs-processid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    h.insert(
        "activityid",
        HeaderValue::from_str(&crate::util::uuid_v4()).expect("uuid header"),
    );
    let Some(mut body) = reply.body else {
        return resp.body(Body::empty()).expect("response");
    };
    let bom = reply.service
        && match sh.lock().model.actions.settings.bom {
            ServiceBom::Never => false,
            ServiceBom::Always => true,
            ServiceBom::Random => rand::random::<bool>(),
        };
    if bom {
        body.splice(0..0, BOM.iter().copied());
    }
    h.insert("content-type", HeaderValue::from_static(reply.content_type));
    resp.body(Body::from(body)).expect("response")
}
