//! The credentials an object's `spec.github` names, and the GitHub
//! connection made with them: a Secret of the object's namespace
//! (`credentialsSecret`), or a `GitHubConnection` (`connectionRef`) whose
//! Secret lives in the operator's connections namespace and is read only for
//! the namespaces the connection allows, and sent only to its apiUrl.
//!
//! Only a missing Secret or connection, a namespace the connection does not
//! allow, or a refusal to read them (401, 403: a person must grant access)
//! is a credentials problem, shown in status. A request that failed (the API
//! server restarting or unreachable, a timeout) says nothing of the
//! credentials: it is an error, retried soon.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;

use super::error::Error;
use super::problem::{Blocked, Problem};
use crate::connection;
use crate::crd::{GitHubConnection, GitHubSpec};
use crate::github::{GitHubApi, GitHubConnector, Scope};

/// The credentials Secret of `spec` and the `spec` to connect with (apiUrl
/// and caBundle of the GitHubConnection when `spec` names one), for an
/// object in `namespace`. `Ok(Err(_))` is a problem of the object, shown in
/// its status.
pub async fn credentials_secret(
    client: &kube::Client,
    connections_namespace: &str,
    namespace: &str,
    spec: &GitHubSpec,
) -> Result<Result<(Secret, GitHubSpec), Blocked>, Error> {
    if let Some(secret) = &spec.credentials_secret {
        let read = read_secret(client, namespace, &secret.name, "credentials Secret").await?;
        return Ok(read.map(|s| (s, spec.clone())));
    }
    let Some(reference) = &spec.connection_ref else {
        return Ok(Err(Blocked::new(
            Problem::InvalidSpec,
            "spec.github names neither credentialsSecret nor connectionRef",
        )));
    };
    let name = &reference.name;
    let connection = match Api::<GitHubConnection>::all(client.clone())
        .get_opt(name)
        .await
    {
        Ok(Some(connection)) => connection,
        Ok(None) => {
            return Ok(Err(Blocked::new(
                Problem::CredentialsInvalid,
                format!("GitHubConnection {name:?} (spec.github.connectionRef) not found"),
            )));
        }
        Err(e) => return refused(e, &format!("cannot read GitHubConnection {name:?}")),
    };
    let labels = match connection.spec.allows(namespace, None) {
        None => match Api::<Namespace>::all(client.clone()).get(namespace).await {
            Ok(ns) => Some(ns.metadata.labels.unwrap_or_default()),
            Err(e) => {
                let what = format!(
                    "cannot read namespace {namespace:?} for GitHubConnection {name:?}'s namespaceSelector"
                );
                return refused(e, &what);
            }
        },
        Some(_) => None,
    };
    if connection.spec.allows(namespace, labels.as_ref()) != Some(true) {
        return Ok(Err(Blocked::new(
            Problem::CredentialsInvalid,
            format!(
                "GitHubConnection {name:?} does not allow namespace {namespace:?}: a cluster administrator must add it to the connection's spec.namespaces or give it labels its spec.namespaceSelector matches"
            ),
        )));
    }
    let pool_api = spec
        .api_url
        .as_deref()
        .unwrap_or(connection::DEFAULT_API_URL);
    let own_api = connection
        .spec
        .api_url
        .as_deref()
        .unwrap_or(connection::DEFAULT_API_URL);
    if pool_api.trim_end_matches('/') != own_api.trim_end_matches('/') {
        return Ok(Err(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "spec.github.apiUrl {pool_api:?} is not GitHubConnection {name:?}'s apiUrl {own_api:?}: its credentials are sent to that host only"
            ),
        )));
    }
    let secret_name = &connection.spec.credentials_secret.name;
    let what = format!("credentials Secret of GitHubConnection {name:?}");
    let read = read_secret(client, connections_namespace, secret_name, &what).await?;
    let github = GitHubSpec {
        api_url: connection.spec.api_url.clone(),
        ca_bundle: connection.spec.ca_bundle.clone(),
        ..spec.clone()
    };
    Ok(read.map(|secret| (secret, github)))
}

/// The Secret `name` in `namespace`, `what` it is for the messages.
async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    what: &str,
) -> Result<Result<Secret, Blocked>, Error> {
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(secret)) => Ok(Ok(secret)),
        Ok(None) => Ok(Err(Blocked::new(
            Problem::CredentialsInvalid,
            format!("{what} {name:?} not found in namespace {namespace:?}"),
        ))),
        Err(e) => refused(e, &format!("cannot read {what} {name:?}")),
    }
}

/// A failed read: a credentials problem when refused for good, else an
/// error retried soon.
fn refused<T>(error: kube::Error, what: &str) -> Result<Result<T, Blocked>, Error> {
    match refusal(&error) {
        Some(why) => Ok(Err(Blocked::new(
            Problem::CredentialsInvalid,
            format!("{what}: {why}"),
        ))),
        None => Err(error.into()),
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
