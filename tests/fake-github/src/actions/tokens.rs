//! The service's credentials: registration tokens (issued by the REST API,
//! remembered with their scope and expiry), admin tokens (JWTs a client gets
//! for a registration token) and message-queue tokens (JWTs of a session).
//!
//! Both JWTs are HS256-signed with a key only this fake knows; clients read
//! `exp` without checking the signature, as they do with GitHub's.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::Scope;
use crate::util;

/// Lifetime of a registration token (GitHub: an hour).
const REGISTRATION_TOKEN_TTL: Duration = Duration::from_secs(3600);
const ISSUER: &str = "fake-github-actions";
const ADMIN_AUDIENCE: &str = "actions-admin";
const QUEUE_AUDIENCE: &str = "actions-queue";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AdminClaims {
    pub iss: String,
    pub aud: String,
    /// `orgs/acme`, `repos/acme/app` or `enterprises/bigcorp`.
    pub scope: String,
    pub tenant: String,
    pub iat: u64,
    pub exp: u64,
    /// Issue number: tokens below the floor were expired on purpose.
    pub issue: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct QueueClaims {
    pub iss: String,
    pub aud: String,
    pub scale_set_id: u64,
    pub session_id: String,
    pub iat: u64,
    pub exp: u64,
    pub issue: u64,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Invalid,
    Expired,
}

struct RegistrationToken {
    scope: Scope,
    expires: SystemTime,
}

pub(crate) struct Tokens {
    key: Vec<u8>,
    registration: HashMap<String, RegistrationToken>,
    generation: u64,
    admin_floor: u64,
    queue_floor: u64,
}

impl Tokens {
    pub fn new() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill(&mut key[..]);
        Tokens {
            key,
            registration: HashMap::new(),
            generation: 0,
            admin_floor: 0,
            queue_floor: 0,
        }
    }

    pub fn issue_registration(&mut self, scope: &Scope, now: SystemTime) -> (String, SystemTime) {
        let token = util::random_string(29, util::UPPER_ALNUM);
        let expires = now + REGISTRATION_TOKEN_TTL;
        if self.registration.len() > 10_000 {
            self.registration.retain(|_, t| t.expires > now);
        }
        self.registration.insert(
            token.clone(),
            RegistrationToken {
                scope: scope.clone(),
                expires,
            },
        );
        (token, expires)
    }

    /// The scope of a registration token the fake issued and that has not expired.
    pub fn registration_scope(&self, token: &str, now: SystemTime) -> Result<&Scope, Refused> {
        let t = self.registration.get(token).ok_or(Refused::Invalid)?;
        if t.expires <= now {
            return Err(Refused::Expired);
        }
        Ok(&t.scope)
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    pub fn mint_admin(
        &mut self,
        scope: &Scope,
        tenant: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> String {
        let iat = util::unix_secs(now);
        let claims = AdminClaims {
            iss: ISSUER.into(),
            aud: ADMIN_AUDIENCE.into(),
            scope: scope.path(),
            tenant: tenant.to_string(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            issue: self.next_generation(),
        };
        self.sign(&claims)
    }

    pub fn mint_queue(
        &mut self,
        scale_set_id: u64,
        session_id: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> String {
        let iat = util::unix_secs(now);
        let claims = QueueClaims {
            iss: ISSUER.into(),
            aud: QUEUE_AUDIENCE.into(),
            scale_set_id,
            session_id: session_id.to_string(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            issue: self.next_generation(),
        };
        self.sign(&claims)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&self.key),
        )
        .expect("HS256 signing")
    }

    fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, Refused> {
        let mut v = Validation::new(Algorithm::HS256);
        // Expiry is checked against the fake's clock below, to the second.
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(&self.key), &v)
            .map(|d| d.claims)
            .map_err(|_| Refused::Invalid)
    }

    pub fn admin(&self, token: &str, now: SystemTime) -> Result<AdminClaims, Refused> {
        let c: AdminClaims = self.verify(token)?;
        if c.aud != ADMIN_AUDIENCE {
            return Err(Refused::Invalid);
        }
        if c.exp <= util::unix_secs(now) || c.issue < self.admin_floor {
            return Err(Refused::Expired);
        }
        Ok(c)
    }

    pub fn queue(&self, token: &str, now: SystemTime) -> Result<QueueClaims, Refused> {
        let c: QueueClaims = self.verify(token)?;
        if c.aud != QUEUE_AUDIENCE {
            return Err(Refused::Invalid);
        }
        if c.exp <= util::unix_secs(now) || c.issue < self.queue_floor {
            return Err(Refused::Expired);
        }
        Ok(c)
    }

    pub fn expire_admin_tokens(&mut self) {
        self.admin_floor = self.generation + 1;
    }

    pub fn expire_queue_tokens(&mut self) {
        self.queue_floor = self.generation + 1;
    }
}

/// The tenant of a scope: stable, and no secret.
pub(crate) fn tenant_of(scope: &Scope) -> String {
    format!("t{}", util::fingerprint(&scope.path().to_lowercase()))
}

/// The name a request's credential is counted and logged under, read from
/// the header without checking it (never the secret itself):
/// `registration:<hash>`, `actions:<scope>`, `actions-queue:<scale set id>`,
/// `anonymous` or `invalid`.
pub(crate) fn credential_key(authorization: Option<&str>) -> String {
    let Some(h) = authorization else {
        return "anonymous".into();
    };
    let (scheme, secret) = h.trim().split_once(' ').unwrap_or(("", h));
    let secret = secret.trim();
    if scheme.eq_ignore_ascii_case("remoteauth") && !secret.is_empty() {
        return format!("registration:{}", util::fingerprint(secret));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return "invalid".into();
    }
    let claims: Option<serde_json::Value> = secret
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(c) = claims else {
        return "invalid".into();
    };
    match c.get("aud").and_then(|a| a.as_str()) {
        Some(ADMIN_AUDIENCE) => format!(
            "actions:{}",
            c.get("scope").and_then(|s| s.as_str()).unwrap_or("?")
        ),
        Some(QUEUE_AUDIENCE) => format!(
            "actions-queue:{}",
            c.get("scale_set_id").and_then(|s| s.as_u64()).unwrap_or(0)
        ),
        _ => "invalid".into(),
    }
}

/// The secret of `Authorization: <scheme> <secret>` when the scheme matches.
pub(crate) fn secret_of<'a>(authorization: Option<&'a str>, scheme: &str) -> Option<&'a str> {
    let (s, secret) = authorization?.trim().split_once(' ')?;
    let secret = secret.trim();
    (s.eq_ignore_ascii_case(scheme) && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_expire_and_carry_their_scope() {
        let mut t = Tokens::new();
        let now = SystemTime::now();
        let scope = Scope::org("acme");
        let jwt = t.mint_admin(&scope, &tenant_of(&scope), Duration::from_secs(60), now);
        let c = t.admin(&jwt, now).unwrap();
        assert_eq!(c.scope, "orgs/acme");
        assert_eq!(c.exp, util::unix_secs(now) + 60);
        assert_eq!(
            t.admin(&jwt, now + Duration::from_secs(61)).unwrap_err(),
            Refused::Expired
        );
        assert_eq!(
            credential_key(Some(&format!("Bearer {jwt}"))),
            "actions:orgs/acme"
        );
        t.expire_admin_tokens();
        assert_eq!(t.admin(&jwt, now).unwrap_err(), Refused::Expired);
        // A queue token is no admin token.
        let q = t.mint_queue(1, "s", Duration::from_secs(60), now);
        assert_eq!(t.admin(&q, now).unwrap_err(), Refused::Invalid);
        assert!(t.queue(&q, now).is_ok());
    }

    #[test]
    fn registration_tokens_are_remembered() {
        let mut t = Tokens::new();
        let now = SystemTime::now();
        let (tok, exp) = t.issue_registration(&Scope::repo("a", "b"), now);
        assert_eq!(
            t.registration_scope(&tok, now).unwrap(),
            &Scope::repo("a", "b")
        );
        assert_eq!(
            t.registration_scope(&tok, exp).unwrap_err(),
            Refused::Expired
        );
        assert_eq!(
            t.registration_scope("nope", now).unwrap_err(),
            Refused::Invalid
        );
    }
}
