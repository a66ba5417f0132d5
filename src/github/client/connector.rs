//! [`CachingConnector`], the production [`GitHubConnector`]: it hands out one
//! shared [`GitHubClient`] per (endpoint, credential) and drops the clients
//! of rotated credentials once nobody holds them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::options::{ClientOptions, CredentialFingerprint};
use super::requests::GitHubClient;
use crate::github::{Credentials, Endpoint, GitHubApi, GitHubConnector, Result};
use crate::mutex::lock;

struct CachedClient {
    client: Arc<GitHubClient>,
    last_used: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    endpoint: Endpoint,
    credential: CredentialFingerprint,
}

/// The production [`GitHubConnector`]: one [`GitHubClient`] per (endpoint,
/// credential fingerprint), so every pool using a credential shares its
/// installation token, ETag cache and rate-limit state.
pub struct CachingConnector {
    options: ClientOptions,
    clients: Mutex<HashMap<ClientKey, CachedClient>>,
}

impl CachingConnector {
    pub fn new(options: ClientOptions) -> Self {
        CachingConnector {
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The options every client is built with; the Actions service client
    /// (`crate::scaleset::HttpSettings`) is built with the same.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Like [`GitHubConnector::connect`], but returns the concrete client (for
    /// rate-limit snapshots and request counters).
    pub fn client(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<Arc<GitHubClient>> {
        let key = ClientKey {
            endpoint: endpoint.clone(),
            credential: CredentialFingerprint::of(credentials),
        };
        let now = Instant::now();
        let mut clients = lock(&self.clients);
        // Rotated credentials leave their old client behind; drop those nobody holds.
        let idle_ttl = self.options.idle_client_ttl;
        clients.retain(|_, cached| {
            Arc::strong_count(&cached.client) > 1 || now.duration_since(cached.last_used) < idle_ttl
        });
        if let Some(cached) = clients.get_mut(&key) {
            cached.last_used = now;
            return Ok(cached.client.clone());
        }
        let client = Arc::new(GitHubClient::new(
            endpoint,
            credentials,
            self.options.clone(),
        )?);
        clients.insert(
            key,
            CachedClient {
                client: client.clone(),
                last_used: now,
            },
        );
        Ok(client)
    }

    /// Every live client, e.g. to export rate-limit gauges and request counters
    /// labelled by `api_base()` and `credential_fingerprint()`.
    pub fn clients(&self) -> Vec<Arc<GitHubClient>> {
        lock(&self.clients)
            .values()
            .map(|cached| cached.client.clone())
            .collect()
    }
}

impl Default for CachingConnector {
    fn default() -> Self {
        CachingConnector::new(ClientOptions::default())
    }
}

impl fmt::Debug for CachingConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingConnector")
            .field("clients", &lock(&self.clients).len())
            .finish_non_exhaustive()
    }
}

impl GitHubConnector for CachingConnector {
    fn connect(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<Arc<dyn GitHubApi>> {
        Ok(self.client(endpoint, credentials)?)
    }
}
