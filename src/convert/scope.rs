//! Where runners register and with which credentials: ARC's
//! `githubConfigUrl` read as a pool's `spec.github`, and the notes that tell
//! how to give the pool a Secret with the keys it reads (ARC's key names
//! differ, and inline secrets of a values file are never copied).

use crate::crd::{GitHubSpec, SecretReference};

use super::draft::Notes;

/// `spec.github` for a `githubConfigUrl`: `https://github.com/ORG`,
/// `https://github.com/ORG/REPO` or `https://github.com/enterprises/ENT`, on
/// github.com, a GHE.com subdomain or a GitHub Enterprise Server host.
pub fn github_from_config_url(
    url: &str,
    secret: &str,
    notes: &mut Notes,
) -> Result<GitHubSpec, String> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| format!("githubConfigUrl {url:?} is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("githubConfigUrl {url:?} has no host"))?
        .to_ascii_lowercase();
    let segments: Vec<&str> = parsed
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    let mut github = GitHubSpec {
        credentials_secret: Some(SecretReference {
            name: secret.to_string(),
        }),
        ..GitHubSpec::default()
    };
    match segments.as_slice() {
        ["enterprises", enterprise] => github.enterprise = Some(enterprise.to_string()),
        [organization] => github.organization = Some(organization.to_string()),
        [owner, repository] => {
            let repository = repository.trim_end_matches(".git");
            github.repository = Some(format!("{owner}/{repository}"));
        }
        _ => {
            return Err(format!(
                "githubConfigUrl {url:?} names no enterprise, organization or repository \
                 (expected https://HOST/ORG, https://HOST/ORG/REPO or https://HOST/enterprises/ENT)"
            ));
        }
    }
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    if host == "github.com" || host == "www.github.com" {
        // api.github.com is the default.
    } else if let Some(subdomain) = host.strip_suffix(".ghe.com") {
        github.api_url = Some(format!("https://api.{subdomain}.ghe.com"));
    } else {
        github.api_url = Some(format!("https://{authority}/api/v3"));
        if parsed.scheme() != "https" {
            notes.note(format!(
                "githubConfigUrl uses {}://: spec.github.apiUrl must be https (plain http only for a loopback host)",
                parsed.scheme()
            ));
        }
    }
    Ok(github)
}

/// The notes for a pool that reads `secret`, an ARC credentials Secret kept
/// by name: ours reads other keys.
pub fn existing_secret_notes(secret: &str, namespace: Option<&str>, notes: &mut Notes) {
    let ns = namespace.map(|ns| format!(" -n {ns}")).unwrap_or_default();
    notes.note(format!(
        "credentials: Secret {secret} holds ARC's keys (github_token, or github_app_id, \
         github_app_installation_id, github_app_private_key); this pool reads token, or appId, \
         installationId, privateKey. Add ours next to ARC's (ARC ignores them), e.g. for a token:"
    ));
    notes.note(format!(
        "  kubectl{ns} get secret {secret} -o json | jq '.data.token = .data.github_token' | kubectl apply -f -"
    ));
    notes.note(
        "  or for a GitHub App: jq '.data.appId = .data.github_app_id | .data.installationId = \
         .data.github_app_installation_id | .data.privateKey = .data.github_app_private_key'",
    );
}

/// The notes for a pool whose credentials ARC held inline (values file) or
/// at controller level (RunnerDeployment): the Secret must be created.
pub fn new_secret_notes(secret: &str, namespace: Option<&str>, app: bool, notes: &mut Notes) {
    let ns = namespace.map(|ns| format!(" -n {ns}")).unwrap_or_default();
    let data = if app {
        "--from-literal=appId=APP_ID --from-literal=installationId=INSTALLATION_ID --from-file=privateKey=app.pem"
    } else {
        "--from-literal=token=TOKEN"
    };
    notes.note(format!(
        "credentials: create Secret {secret}:  kubectl{ns} create secret generic {secret} {data}"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(url: &str) -> GitHubSpec {
        github_from_config_url(url, "s", &mut Notes::default()).unwrap()
    }

    #[test]
    fn config_urls_name_the_scope_and_the_api() {
        let org = scope("https://github.com/my-org");
        assert_eq!(org.organization.as_deref(), Some("my-org"));
        assert_eq!(org.api_url, None);
        let repo = scope("https://github.com/my-org/my-repo/");
        assert_eq!(repo.repository.as_deref(), Some("my-org/my-repo"));
        let ent = scope("https://github.com/enterprises/acme");
        assert_eq!(ent.enterprise.as_deref(), Some("acme"));
        let ghes = scope("https://ghes.example.com:8443/platform");
        assert_eq!(ghes.organization.as_deref(), Some("platform"));
        assert_eq!(
            ghes.api_url.as_deref(),
            Some("https://ghes.example.com:8443/api/v3")
        );
        let ghe = scope("https://octo.ghe.com/team");
        assert_eq!(ghe.api_url.as_deref(), Some("https://api.octo.ghe.com"));
    }

    #[test]
    fn urls_without_a_scope_are_refused() {
        let mut notes = Notes::default();
        for url in [
            "https://github.com",
            "https://github.com/a/b/c",
            "not a url",
        ] {
            assert!(
                github_from_config_url(url, "s", &mut notes).is_err(),
                "{url}"
            );
        }
    }
}
