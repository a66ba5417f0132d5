//! The credentials Secret an object's `spec.github` names, read from the
//! object's namespace, and the GitHub connection made with it.
//!
//! Only a missing Secret or a refusal to read it (401, 403: a person must
//! grant access) is a credentials problem, shown in status. A request that
//! failed (the API server restarting or unreachable, a timeout) says nothing
//! of the credentials: it is an error, retried soon.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::error::Error;
use super::problem::{Blocked, Problem};
use crate::connection;
use crate::crd::GitHubSpec;
use crate::github::{GitHubApi, GitHubConnector, Scope};

/// The credentials Secret `spec.credentials_secret` in `namespace`.
/// `Ok(Err(_))` is a problem of the object, shown in its status.
pub async fn credentials_secret(
    client: &kube::Client,
    namespace: &str,
    spec: &GitHubSpec,
) -> Result<Result<Secret, Blocked>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret_name = &spec.credentials_secret.name;
    match secrets.get_opt(secret_name).await {
        Ok(Some(secret)) => Ok(Ok(secret)),
        Ok(None) => Ok(Err(Blocked::new(
            Problem::CredentialsInvalid,
            format!("credentials Secret {secret_name:?} not found in namespace {namespace:?}"),
        ))),
        Err(e) => match refusal(&e) {
            Some(why) => Ok(Err(Blocked::new(
                Problem::CredentialsInvalid,
                format!("cannot read credentials Secret {secret_name:?}: {why}"),
            ))),
            None => Err(e.into()),
        },
    }
}

/// The API server's message when it refused a request for good (401, 403:
/// a person must grant access); `None` for a failure worth retrying.
fn refusal(error: &kube::Error) -> Option<&str> {
    match error {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
            Some(&status.message)
        }
        _ => None,
    }
}

/// The scope of `spec` and a client for it, with the credentials in `secret`.
pub fn connect(
    connector: &dyn GitHubConnector,
    spec: &GitHubSpec,
    secret: &Secret,
) -> Result<(Arc<dyn GitHubApi>, Scope), Blocked> {
    let invalid =
        |e: connection::ConnectionError| Blocked::new(Problem::InvalidSpec, e.to_string());
    let scope = connection::scope(spec).map_err(invalid)?;
    let endpoint = connection::endpoint(spec).map_err(invalid)?;
    let credentials = connection::credentials(secret, &scope)
        .map_err(|e| Blocked::new(Problem::CredentialsInvalid, e.to_string()))?;
    let api = connector
        .connect(&endpoint, &credentials)
        .map_err(|e| Blocked::github(&e, "cannot use the credentials"))?;
    Ok((api, scope))
}

#[cfg(test)]
mod tests {
    use super::refusal;

    fn answered(code: u16) -> kube::Error {
        let status = serde_json::from_value(serde_json::json!({
            "code": code,
            "message": format!("answer {code}"),
        }))
        .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn only_a_refusal_reading_the_credentials_is_a_credentials_problem() {
        assert_eq!(refusal(&answered(403)), Some("answer 403"));
        assert_eq!(refusal(&answered(401)), Some("answer 401"));
        // The API server restarting, overloaded or unreachable: retried,
        // never shown as bad credentials.
        for code in [429, 500, 503, 504] {
            assert_eq!(refusal(&answered(code)), None, "{code}");
        }
        let unreachable = kube::Error::Service("connection refused".into());
        assert_eq!(refusal(&unreachable), None);
    }
}
