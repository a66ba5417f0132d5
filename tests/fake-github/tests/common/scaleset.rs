//! A small client of the fake's Actions service, written from the protocol
//! note as a scale-set client would be: registration token → admin token →
//! service calls under the tenant URL, with the BOM stripped.

use std::time::Duration;

use fake_github::FakeGitHub;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};

use super::{ORG_TOKEN, call, client};

pub const BOM: &[u8] = b"\xef\xbb\xbf";

/// Status, whether the body started with a BOM, and the JSON (Null if
/// empty, a string if it is not JSON).
pub async fn service_json(r: Response) -> (u16, bool, Value) {
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    let bom = bytes.starts_with(BOM);
    let raw = if bom { &bytes[BOM.len()..] } else { &bytes[..] };
    // Injected failures come from a proxy in front of the service: text.
    let v = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
    };
    (status, bom, v)
}

/// A registration token of `scope_path` (`orgs/acme`, `repos/acme/app`, …).
pub async fn registration_token(api: &str, scope_path: &str, token: &str) -> String {
    let c = client();
    let r = call(
        &c,
        Method::POST,
        &format!("{api}/{scope_path}/actions/runners/registration-token"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// `POST {api}/actions/runner-registration`.
pub async fn register(c: &Client, api: &str, reg_token: &str, html_url: &str) -> Response {
    c.post(format!("{api}/actions/runner-registration"))
        .header("authorization", format!("RemoteAuth {reg_token}"))
        .json(&json!({"url": html_url, "runner_event": "register"}))
        .send()
        .await
        .expect("request")
}

/// An Actions service connection of one scope.
pub struct Service {
    pub c: Client,
    pub tenant: String,
    pub admin: String,
}

impl Service {
    /// Registers for `html_path` (`acme`, `acme/app`, `enterprises/bigcorp`)
    /// with a registration token of `scope_path`, github.com style.
    pub async fn connect_as(
        fake: &FakeGitHub,
        scope_path: &str,
        html_path: &str,
        token: &str,
    ) -> Self {
        Self::connect_to(&fake.base_url(), scope_path, html_path, token).await
    }

    /// The same against a fake at `base` (`http://127.0.0.1:PORT`).
    pub async fn connect_to(base: &str, scope_path: &str, html_path: &str, token: &str) -> Self {
        let c = client();
        let reg = registration_token(base, scope_path, token).await;
        let html = format!("{base}/{html_path}");
        let (s, _, v) = service_json(register(&c, base, &reg, &html).await).await;
        assert_eq!(s, 200, "{v}");
        Service {
            c,
            tenant: v["url"].as_str().unwrap().to_string(),
            admin: v["token"].as_str().unwrap().to_string(),
        }
    }

    /// The organization `acme`.
    pub async fn connect(fake: &FakeGitHub) -> Self {
        Self::connect_as(fake, "orgs/acme", "acme", ORG_TOKEN).await
    }

    /// `{tenant}{path}?api-version=6.0-preview` (path without a leading `/`,
    /// query pairs already in it are kept).
    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version=6.0-preview", self.tenant)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut req = self
            .c
            .request(method, self.url(path))
            .header("authorization", format!("Bearer {}", self.admin))
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(b).unwrap());
        }
        req.send().await.expect("request")
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (s, _, v) = service_json(self.send(method, path, body).await).await;
        (s, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.json(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.json(Method::DELETE, path, None).await
    }

    /// Creates a scale set named `name` in group `group` with its name as label.
    pub async fn create_scale_set(&self, name: &str, group: u64) -> Value {
        let body = json!({
            "name": name,
            "runnerGroupId": group,
            "labels": [{"name": name, "type": "System"}],
            "RunnerSetting": {"ephemeral": true, "disableUpdate": true},
        });
        let (s, v) = self
            .json(Method::POST, "_apis/runtime/runnerscalesets", Some(&body))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// A JIT runner of the scale set: `(runner id, encodedJITConfig)`.
    pub async fn jit(&self, scale_set: u64, name: &str) -> (u64, String) {
        let (s, v) = self
            .json(
                Method::POST,
                &format!("_apis/runtime/runnerscalesets/{scale_set}/generatejitconfig"),
                Some(&json!({"name": name, "workFolder": "_work"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["runner"]["id"].as_u64().unwrap(),
            v["encodedJITConfig"].as_str().unwrap().to_string(),
        )
    }

    /// Opens a session: `(session JSON)`.
    pub async fn session(&self, scale_set: u64) -> Session {
        let (s, v) = self
            .json(
                Method::POST,
                &format!("_apis/runtime/runnerscalesets/{scale_set}/sessions"),
                Some(&json!({"ownerName": "listener-host"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        Session::from_json(&v)
    }
}

/// A session as the client holds it.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub queue_url: String,
    pub queue_token: String,
    pub statistics: Value,
}

impl Session {
    pub fn from_json(v: &Value) -> Self {
        Session {
            id: v["sessionId"].as_str().unwrap().to_string(),
            queue_url: v["messageQueueUrl"].as_str().unwrap().to_string(),
            queue_token: v["messageQueueAccessToken"].as_str().unwrap().to_string(),
            statistics: v["statistics"].clone(),
        }
    }

    /// One poll: `(status, envelope)`.
    pub async fn poll(&self, c: &Client, last_message_id: Option<u64>) -> (u16, Value) {
        // The queue URL carries a query of its own.
        let mut url = reqwest::Url::parse(&self.queue_url).expect("queue URL");
        if let Some(n) = last_message_id {
            url.query_pairs_mut()
                .append_pair("lastMessageId", &n.to_string());
        }
        let r = c
            .get(url)
            .header("authorization", format!("Bearer {}", self.queue_token))
            .header("accept", "application/json; api-version=6.0-preview")
            .header("x-scalesetmaxcapacity", "10")
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("poll");
        let (s, _, v) = service_json(r).await;
        (s, v)
    }

    pub async fn ack(&self, c: &Client, message_id: u64) -> u16 {
        let mut url = reqwest::Url::parse(&self.queue_url).expect("queue URL");
        let path = format!("{}/{message_id}", url.path());
        url.set_path(&path);
        c.delete(url)
            .header("authorization", format!("Bearer {}", self.queue_token))
            .send()
            .await
            .expect("ack")
            .status()
            .as_u16()
    }
}

/// The job messages of an envelope (its `body` is a JSON string).
pub fn job_messages(envelope: &Value) -> Vec<Value> {
    let body = envelope["body"].as_str().expect("body is a string");
    serde_json::from_str(body).expect("body holds a JSON array")
}

/// Message types of an envelope, in order.
pub fn kinds(envelope: &Value) -> Vec<String> {
    job_messages(envelope)
        .iter()
        .map(|m| m["messageType"].as_str().unwrap().to_string())
        .collect()
}
