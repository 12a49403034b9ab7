//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): `webhook-signature` is
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per active secret, space-separated.

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// The `v1,...` signature of one message under one secret.
pub fn signature(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.signing_key()).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: every secret's signature, space-separated.
pub fn header<'a>(secrets: impl IntoIterator<Item = &'a Secret>, id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.into_iter().map(|secret| signature(secret, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification and its libraries.
    #[test]
    fn matches_the_specification_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signs_with_every_secret_during_rotation() {
        let old = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let new = Secret::generate();
        let value = header([&new, &old], "msg_1", 1, b"{}");
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts, [signature(&new, "msg_1", 1, b"{}"), signature(&old, "msg_1", 1, b"{}")]);
    }
}
