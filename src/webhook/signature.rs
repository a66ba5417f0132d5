//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
//! of the raw body, keyed with the webhook secret>`. Checked on the raw bytes
//! before any parsing, in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a delivery's signature is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    pub fn category(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks `header` (the value of `X-Hub-Signature-256`) against `body`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = hmac_sha256(secret);
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` for `body`, as GitHub sends it (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::tests::Random;

    #[test]
    fn accepts_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" page.
        let header = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(header)
            ),
            Ok(())
        );
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!").as_bytes(),
            header
        );
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_signatures() {
        let body = b"{}";
        let good = sign(b"s3cret", body);
        assert_eq!(verify(b"s3cret", body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"s3cret", body, Some(b"sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"s3cret", body, Some(&good.as_bytes()[..70])),
            Err(SignatureError::Malformed)
        );
        let mut upper = good.clone().into_bytes();
        upper[7] = b'z';
        assert_eq!(
            verify(b"s3cret", body, Some(&upper)),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"other", body, Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", b"{} ", Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    /// No header, body or key panics, and only the right signature passes.
    #[test]
    fn random_inputs_never_panic_and_never_pass_unsigned() {
        let mut random = Random::new(0x5eed_0001);
        for _ in 0..5_000 {
            let secret = random.bytes(40);
            let body = random.bytes(300);
            let header = random.bytes(80);
            let forged = verify(&secret, &body, Some(&header));
            assert!(forged.is_err(), "a random header passed");
            let mut signed = sign(&secret, &body).into_bytes();
            assert_eq!(verify(&secret, &body, Some(&signed)), Ok(()));
            let at = random.below(signed.len());
            signed[at] = signed[at].wrapping_add(1 + random.below(200) as u8);
            assert!(verify(&secret, &body, Some(&signed)).is_err());
        }
    }
}
