//! The `encoded_jit_config` format: what `generate-jitconfig` returns and what
//! `./run.sh --jitconfig` reads.
//!
//! GitHub's value is base64 of a JSON object whose keys are the names of the
//! files the runner would otherwise write while configuring itself
//! (`.runner`, `.credentials`, `.credentials_rsaparams`) and whose values are
//! the base64 of each file's contents. `.runner` holds the runner's settings,
//! among them its id (`agentId`) and name (`agentName`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::util;

/// What a runner learns from its JIT configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitRunnerInfo {
    /// The runner id GitHub assigned (`agentId` in `.runner`).
    pub id: u64,
    /// The runner name (`agentName`).
    pub name: String,
    /// The runner group id (`poolId`).
    pub runner_group_id: u64,
    /// The runner group name (`poolName`).
    pub runner_group_name: String,
    /// The URL the runner registers against (`gitHubUrl`).
    pub github_url: String,
    /// Where the runner talks to the Actions service (`serverUrl`).
    pub server_url: String,
    /// Working directory for jobs (`workFolder`).
    pub work_folder: String,
    /// JIT runners are always ephemeral.
    pub ephemeral: bool,
}

/// Why a JIT configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JitDecodeError {
    #[error("the JIT config is not valid base64")]
    Base64,
    #[error("the JIT config is not a JSON object of files: {0}")]
    Json(String),
    #[error("the JIT config has no {0} file")]
    MissingFile(&'static str),
    #[error("the JIT config's {0} file is invalid: {1}")]
    BadFile(&'static str, String),
}

/// Reads the runner id and settings out of an `encoded_jit_config`.
pub fn decode_jit_config(encoded: &str) -> Result<JitRunnerInfo, JitDecodeError> {
    let outer = B64
        .decode(encoded.trim())
        .map_err(|_| JitDecodeError::Base64)?;
    let files: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&outer).map_err(|e| JitDecodeError::Json(e.to_string()))?;
    let file = |name: &'static str| -> Result<serde_json::Value, JitDecodeError> {
        let b64 = files
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or(JitDecodeError::MissingFile(name))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| JitDecodeError::BadFile(name, "not base64".into()))?;
        serde_json::from_slice(&raw).map_err(|e| JitDecodeError::BadFile(name, e.to_string()))
    };
    let runner = file(".runner")?;
    // The other two must be present and well-formed too, as for a real runner.
    let creds = file(".credentials")?;
    if creds.get("scheme").and_then(|s| s.as_str()).is_none() {
        return Err(JitDecodeError::BadFile(".credentials", "no scheme".into()));
    }
    let rsa = file(".credentials_rsaparams")?;
    if rsa.get("modulus").and_then(|s| s.as_str()).is_none() {
        return Err(JitDecodeError::BadFile(
            ".credentials_rsaparams",
            "no modulus".into(),
        ));
    }
    let s = |k: &str| {
        runner
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let id = runner
        .get("agentId")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| JitDecodeError::BadFile(".runner", "no agentId".into()))?;
    Ok(JitRunnerInfo {
        id,
        name: s("agentName"),
        runner_group_id: runner.get("poolId").and_then(|v| v.as_u64()).unwrap_or(0),
        runner_group_name: s("poolName"),
        github_url: s("gitHubUrl"),
        server_url: s("serverUrl"),
        work_folder: s("workFolder"),
        ephemeral: runner
            .get("ephemeral")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

/// Builds an `encoded_jit_config` for a new runner.
pub(crate) fn encode_jit_config(info: &JitRunnerInfo) -> String {
    let runner = json!({
        "agentId": info.id,
        "agentName": info.name,
        "poolId": info.runner_group_id,
        "poolName": info.runner_group_name,
        "serverUrl": info.server_url,
        "gitHubUrl": info.github_url,
        "workFolder": info.work_folder,
        "ephemeral": info.ephemeral,
        "disableUpdate": false,
        "useV2Flow": true,
    });
    let client_id = util::uuid_v4();
    let credentials = json!({
        "scheme": "OAuth",
        "data": {
            "clientId": client_id,
            "authorizationUrl": format!("{}/oauth2/token/{client_id}", info.server_url),
            "requireFipsCryptography": "False",
        }
    });
    // Shaped like a 2048-bit key's parameters; the bytes are random, as
    // nothing ever signs with them.
    let mut rng = rand::rng();
    let mut rand_b64 = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill(&mut v[..]);
        B64.encode(v)
    };
    let rsa = json!({
        "d": rand_b64(256),
        "dp": rand_b64(128),
        "dq": rand_b64(128),
        "exponent": "AQAB",
        "inverseQ": rand_b64(128),
        "modulus": rand_b64(256),
        "p": rand_b64(128),
        "q": rand_b64(128),
    });
    let file = |v: &serde_json::Value| B64.encode(serde_json::to_vec_pretty(v).expect("json"));
    let files = json!({
        ".runner": file(&runner),
        ".credentials": file(&credentials),
        ".credentials_rsaparams": file(&rsa),
    });
    B64.encode(serde_json::to_vec(&files).expect("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let info = JitRunnerInfo {
            id: 42,
            name: "pool-abc".into(),
            runner_group_id: 1,
            runner_group_name: "Default".into(),
            github_url: "http://127.0.0.1:1/acme".into(),
            server_url: "http://127.0.0.1:1/_fake/pipelines".into(),
            work_folder: "_work".into(),
            ephemeral: true,
        };
        let enc = encode_jit_config(&info);
        assert_eq!(decode_jit_config(&enc).unwrap(), info);
        // The outer object's keys are exactly the three runner files.
        let outer: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&B64.decode(&enc).unwrap()).unwrap();
        let mut keys: Vec<_> = outer.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, [".credentials", ".credentials_rsaparams", ".runner"]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            decode_jit_config("%%%"),
            Err(JitDecodeError::Base64)
        ));
        let no_runner = B64.encode(br#"{".credentials":"e30="}"#);
        assert!(matches!(
            decode_jit_config(&no_runner),
            Err(JitDecodeError::MissingFile(".runner"))
        ));
    }
}
