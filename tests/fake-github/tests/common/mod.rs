//! Helpers shared by the fake's integration tests.
#![allow(dead_code)]

pub mod scaleset;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use fake_github::{Config, FakeGitHub};
use reqwest::{Client, Method, Response};
use serde_json::Value;

pub const ORG_TOKEN: &str = "ghp_orgadmin000000000000000000000000000";
pub const REPO_TOKEN: &str = "ghp_repoonly0000000000000000000000000000";
pub const ENT_TOKEN: &str = "ghp_enterprise00000000000000000000000000";
pub const WEAK_TOKEN: &str = "ghp_readorg00000000000000000000000000000";

/// A fake with `acme` (repos `app`, `lib`), enterprise `bigcorp` (owning
/// `acme`) and four classic tokens.
pub async fn start_with(mut cfg: Config) -> FakeGitHub {
    cfg.orgs.push("acme".into());
    cfg.repos.push(("acme".into(), "app".into()));
    cfg.repos.push(("acme".into(), "lib".into()));
    cfg.enterprise_orgs.push(("bigcorp".into(), "acme".into()));
    let fake = FakeGitHub::start(cfg).await.expect("start fake");
    fake.add_token(ORG_TOKEN, &["admin:org", "repo"]);
    fake.add_token(REPO_TOKEN, &["repo"]);
    fake.add_token(ENT_TOKEN, &["manage_runners:enterprise"]);
    fake.add_token(WEAK_TOKEN, &["read:org"]);
    fake
}

pub async fn start() -> FakeGitHub {
    start_with(Config::default()).await
}

pub fn client() -> Client {
    Client::builder().no_proxy().build().expect("client")
}

/// A request with GitHub's usual headers.
pub async fn call(
    c: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut req = c
        .request(method, url)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.expect("request")
}

pub async fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, v)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RSA private key (PKCS#8 PEM) made with openssl for this test run.
pub fn app_private_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fake-github-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path: PathBuf = dir.join("app.pem");
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .output()
            .expect("openssl must be installed to make test keys");
        assert!(out.status.success(), "openssl genpkey failed: {out:?}");
        let pem = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        pem
    })
}

/// A second, unrelated key (for signature checks).
pub fn other_private_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    })
}

/// The public half of a private key PEM.
pub fn public_key_of(private_pem: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["pkey", "-pubout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private_pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// An RS256 app JWT with the given claims.
pub fn jwt(private_pem: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        &key,
    )
    .expect("jwt")
}
