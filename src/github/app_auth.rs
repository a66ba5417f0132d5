//! GitHub App authentication: the RS256 JWT that proves we are the App, and the
//! installation access token that JWT buys (valid for an hour), cached so that
//! every pool using the installation shares one token.
//!
//! The HTTP exchange itself lives in the client, next to the rest of the
//! request machinery; this module only holds key material and token state.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::GitHubError;

/// GitHub rejects JWTs whose `iat` is in its future, so we backdate by a minute
/// to absorb clock drift, as GitHub's guide recommends.
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// GitHub allows at most 10 minutes; 9 leaves room for drift the other way.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// Installation tokens live an hour; never believe a longer expiry.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct JwtClaims {
    pub iat: u64,
    pub exp: u64,
    pub iss: Issuer,
}

/// GitHub takes the App's numeric id as a JSON integer, or its client id
/// (`Iv1.…`) as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum Issuer {
    AppId(u64),
    ClientId(String),
}

impl Issuer {
    fn of(app_id: &str) -> Self {
        app_id
            .parse()
            .map(Issuer::AppId)
            .unwrap_or_else(|_| Issuer::ClientId(app_id.to_owned()))
    }
}

impl JwtClaims {
    pub fn new(app_id: &str, now: SystemTime) -> Self {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        JwtClaims {
            iat: now.saturating_sub(JWT_BACKDATE).as_secs(),
            exp: (now + JWT_LIFETIME).as_secs(),
            iss: Issuer::of(app_id),
        }
    }
}

/// An installation access token and when we stop trusting it.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    pub token: String,
    pub expires_at: Instant,
}

impl InstallationToken {
    /// Builds the token from GitHub's answer. `expires_at` is GitHub's RFC 3339
    /// timestamp; converting it through our wall clock keeps it right even if
    /// GitHub hands out shorter-lived tokens than an hour.
    pub fn from_answer(
        token: String,
        expires_at: &str,
        now: Instant,
        wall_now: SystemTime,
    ) -> Self {
        let lifetime = parse_rfc3339(expires_at)
            .map(|at| at.duration_since(wall_now).unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_TOKEN_LIFETIME)
            .min(MAX_TOKEN_LIFETIME);
        InstallationToken {
            token,
            expires_at: now + lifetime,
        }
    }

    /// Still usable for a while: refreshed once less than `margin` is left, so a
    /// request never starts with a token about to expire under it.
    pub fn is_fresh(&self, now: Instant, margin: Duration) -> bool {
        self.expires_at.saturating_duration_since(now) > margin
    }
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One GitHub App installation's key and token cache.
pub(crate) struct AppAuthenticator {
    pub app_id: String,
    pub installation_id: u64,
    key: EncodingKey,
    /// Held across the token exchange so concurrent callers wait for one
    /// refresh instead of each buying a token.
    pub token: tokio::sync::Mutex<Option<InstallationToken>>,
}

impl AppAuthenticator {
    /// Checks the credential material up front so a bad Secret shows as
    /// `InvalidCredentials` at once, with a message that never quotes the key.
    pub fn new(
        app_id: &str,
        installation_id: u64,
        private_key_pem: &str,
    ) -> Result<Self, GitHubError> {
        let app_id = app_id.trim();
        if app_id.is_empty() {
            return Err(GitHubError::InvalidCredentials(
                "the GitHub App id is empty".into(),
            ));
        }
        if installation_id == 0 {
            return Err(GitHubError::InvalidCredentials(
                "the GitHub App installation id is 0".into(),
            ));
        }
        let key =
            EncodingKey::from_rsa_pem(private_key_pem.trim().as_bytes()).map_err(|_| bad_key())?;
        Ok(AppAuthenticator {
            app_id: app_id.to_owned(),
            installation_id,
            key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Signs a fresh App JWT. RSA signing is CPU work, so it runs off the async
    /// worker threads.
    pub async fn sign_jwt(&self, now: SystemTime) -> Result<String, GitHubError> {
        let claims = JwtClaims::new(&self.app_id, now);
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || sign_jwt(&claims, &key))
            .await
            .map_err(|_| {
                GitHubError::InvalidCredentials("signing the GitHub App JWT was interrupted".into())
            })?
    }
}

fn sign_jwt(claims: &JwtClaims, key: &EncodingKey) -> Result<String, GitHubError> {
    // The PEM parsed, but the RSA key inside may still be unusable.
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, key).map_err(|_| bad_key())
}

fn bad_key() -> GitHubError {
    GitHubError::InvalidCredentials(
        "the GitHub App private key is not a usable RSA private key in PEM format".into(),
    )
}

impl fmt::Debug for AppAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppAuthenticator")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// What `POST /app/installations/{id}/access_tokens` answers (other fields ignored).
/// No `Debug`: it holds the token.
#[derive(Deserialize)]
pub(crate) struct AccessTokenAnswer {
    pub token: String,
    pub expires_at: String,
}

/// Parses the UTC timestamps GitHub writes (`2016-07-11T22:14:10Z`, optionally
/// with fractional seconds or a numeric offset). Hand-rolled because this is the
/// only date the client reads, which does not justify a date crate.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;

    let (clock, offset_secs) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0i64)
    } else {
        let sign_at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(sign_at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset[1..].split_once(':')?;
        let hours: i64 = hours.parse().ok()?;
        let minutes: i64 = minutes.parse().ok()?;
        (clock, sign * (hours * 3600 + minutes * 60))
    };
    let clock = clock
        .split_once('.')
        .map_or(clock, |(whole, _fraction)| whole);
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    u64::try_from(secs)
        .ok()
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// A fresh 2048-bit RSA key pair `(private PEM, public PEM)` from openssl,
    /// so no private key is ever committed.
    pub(crate) fn generate_rsa_key_pair() -> (String, String) {
        let private = Command::new("openssl")
            .args(["genrsa", "2048"])
            .output()
            .expect("run openssl genrsa");
        assert!(private.status.success(), "openssl genrsa failed");
        let private_pem = String::from_utf8(private.stdout).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "rp-key-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&dir, &private_pem).unwrap();
        let public = Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&dir)
            .output()
            .expect("run openssl rsa");
        std::fs::remove_file(&dir).unwrap();
        assert!(public.status.success(), "openssl rsa -pubout failed");
        (private_pem, String::from_utf8(public.stdout).unwrap())
    }

    #[test]
    fn claims_backdate_iat_and_expire_within_ten_minutes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            JwtClaims::new("12345", now),
            JwtClaims {
                iat: 1_700_000_000 - 60,
                exp: 1_700_000_000 + 540,
                iss: Issuer::AppId(12345)
            }
        );
        assert_eq!(
            JwtClaims::new("Iv1.abc", now).iss,
            Issuer::ClientId("Iv1.abc".into())
        );
        let json = serde_json::to_value(JwtClaims::new("12345", now)).unwrap();
        assert_eq!(json["iss"], serde_json::json!(12345));
    }

    #[tokio::test]
    async fn jwt_is_rs256_and_verifies_with_the_public_key() {
        let (private_pem, public_pem) = generate_rsa_key_pair();
        let app = AppAuthenticator::new("4242", 7, &private_pem).unwrap();
        let jwt = app.sign_jwt(SystemTime::now()).await.unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation).unwrap();
        assert_eq!(decoded.claims["iss"], serde_json::json!(4242));
        let iat = decoded.claims["iat"].as_u64().unwrap();
        let exp = decoded.claims["exp"].as_u64().unwrap();
        assert_eq!(exp - iat, 600);
    }

    #[test]
    fn bad_pem_is_invalid_credentials_without_quoting_the_key() {
        let not_a_key = &not_a_pem_key();
        for pem in [not_a_key.as_str(), "secret-key-material", ""] {
            match AppAuthenticator::new("1", 2, pem) {
                Err(err @ GitHubError::InvalidCredentials(_)) => {
                    let text = err.to_string();
                    assert!(
                        !text.contains("c2VjcmV0") && !text.contains("secret-key-material"),
                        "{text}"
                    );
                }
                other => panic!("expected InvalidCredentials, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn structurally_valid_pem_with_garbage_inside_fails_at_signing() {
        let not_a_key = &not_a_pem_key();
        // Depending on how far parsing gets, the error comes at construction or at signing;
        // either way it is InvalidCredentials.
        if let Ok(app) = AppAuthenticator::new("1", 2, not_a_key) {
            assert!(matches!(
                app.sign_jwt(SystemTime::now()).await,
                Err(GitHubError::InvalidCredentials(_))
            ));
        }
    }

    #[test]
    fn empty_app_id_or_installation_is_rejected() {
        assert!(matches!(
            AppAuthenticator::new(" ", 2, "x"),
            Err(GitHubError::InvalidCredentials(_))
        ));
        assert!(matches!(
            AppAuthenticator::new("1", 0, "x"),
            Err(GitHubError::InvalidCredentials(_))
        ));
    }

    #[test]
    fn parses_github_timestamps() {
        let at = |secs| Some(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), at(0));
        assert_eq!(parse_rfc3339("2016-07-11T22:14:10Z"), at(1_468_275_250));
        assert_eq!(parse_rfc3339("2016-07-11T22:14:10.123Z"), at(1_468_275_250));
        assert_eq!(
            parse_rfc3339("2016-07-12T00:14:10+02:00"),
            at(1_468_275_250)
        );
        assert_eq!(
            parse_rfc3339("2016-07-11T20:14:10-02:00"),
            at(1_468_275_250)
        );
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00Z"), at(1_709_208_000));
        assert_eq!(parse_rfc3339("not a date"), None);
        assert_eq!(parse_rfc3339("2016-13-11T22:14:10Z"), None);
        assert_eq!(parse_rfc3339("2016-07-11"), None);
    }

    #[test]
    fn token_lifetime_follows_github_and_is_capped_at_an_hour() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_468_275_250 - 600);
        let token = InstallationToken::from_answer("t".into(), "2016-07-11T22:14:10Z", now, wall);
        assert_eq!(token.expires_at, now + Duration::from_secs(600));
        assert!(token.is_fresh(now, Duration::from_secs(300)));
        assert!(!token.is_fresh(now + Duration::from_secs(301), Duration::from_secs(300)));
        let long = InstallationToken::from_answer("t".into(), "2030-01-01T00:00:00Z", now, wall);
        assert_eq!(long.expires_at, now + MAX_TOKEN_LIFETIME);
        let unreadable = InstallationToken::from_answer("t".into(), "soon", now, wall);
        assert_eq!(unreadable.expires_at, now + MAX_TOKEN_LIFETIME);
        assert!(!format!("{token:?}").contains("\"t\""));
    }

    /// A PEM-shaped block that is no key, assembled so no key-like text sits in the tree.
    fn not_a_pem_key() -> String {
        let kind = "RSA PRIVATE KEY";
        format!("-----BEGIN {kind}-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END {kind}-----\n")
    }
}
