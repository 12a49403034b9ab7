//! Verification as a type. A provider's request is only bytes from somewhere until its route's
//! [`Verifier`] accepts it; what the verifier returns is [`Verified`], which nothing else in the
//! crate can make, and dispatch takes nothing else. So no change to the pipeline can publish a
//! notification whose request was not verified.

use hookbus_configs::IpAllowList;
use hookbus_core::CommandError;
use hookbus_router::InboundRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A value that came from a request its route's verifier accepted. Only [`Verifier::verify`]
/// makes one; what is derived from it with [`try_map`](Self::try_map) stays verified.
#[derive(Debug)]
pub(crate) struct Verified<T>(T);

impl<T> Verified<T> {
    pub(crate) fn get(&self) -> &T {
        &self.0
    }

    pub(crate) fn into_inner(self) -> T {
        self.0
    }

    pub(crate) fn as_ref(&self) -> Verified<&T> {
        Verified(&self.0)
    }

    pub(crate) fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Verified<U>, E> {
        f(self.0).map(Verified)
    }

    /// What a logged request carried: it was verified when it arrived, and only an authorised
    /// replay (`ReplayInboundEventCommand`) reads it back.
    pub(crate) fn replayed(value: T) -> Self {
        Self(value)
    }
}

/// A shared secret, kept as its SHA-256 digest: comparing digests in constant time reveals
/// neither the secret's content nor its length.
#[derive(Clone)]
pub(crate) struct SharedSecret([u8; 32]);

impl SharedSecret {
    pub(crate) fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// How a route tells its provider's requests from anyone else's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verifier<'a> {
    /// The header (lower-case name) must carry the secret: Mono's `mono-webhook-secret`.
    SharedSecret { header: &'static str, secret: &'a SharedSecret },
    /// The client IP must be on the list (empty: anyone): Remita signs nothing.
    AllowList(&'a IpAllowList),
}

impl Verifier<'_> {
    /// `payload` (the body, as read) wrapped as verified, or the 401 or 403 that refuses the
    /// request. The request's other parts are looked at, not taken.
    pub(crate) fn verify<B>(&self, request: &InboundRequest, payload: B) -> Result<Verified<B>, CommandError> {
        match self {
            Self::SharedSecret { header, secret } => {
                let presented = request.headers.get(*header).map(String::as_str).unwrap_or_default();
                if presented.is_empty() || !secret.matches(presented) {
                    return Err(CommandError::Rejected {
                        status: 401,
                        message: "Unauthorized".into(),
                        errors: vec![format!("the {header} header is missing or wrong")],
                    });
                }
            }
            Self::AllowList(list) => {
                if !list.allows(request.ip) {
                    return Err(CommandError::Denied(format!(
                        "client IP {} is not allowed to call this webhook",
                        request.ip
                    )));
                }
            }
        }
        Ok(Verified(payload))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;

    fn request(headers: &[(&str, &str)], ip: &str) -> InboundRequest {
        InboundRequest {
            key: "mono/callback".into(),
            method: "POST".into(),
            path: "/api/webhooks/mono/callback".into(),
            query: BTreeMap::new(),
            headers: headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect(),
            ip: ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            body: Value::Null,
            raw_body: String::new(),
            body_from_raw: false,
            received_at: hookbus_core::now(),
        }
    }

    #[test]
    fn a_shared_secret_must_match_exactly() {
        let secret = SharedSecret::new("sec_live_123");
        let verifier = Verifier::SharedSecret { header: "mono-webhook-secret", secret: &secret };
        let status =
            |headers: &[(&str, &str)]| verifier.verify(&request(headers, "127.0.0.1"), ()).err().map(|e| e.status());
        assert_eq!(status(&[("mono-webhook-secret", "sec_live_123")]), None);
        assert_eq!(status(&[("mono-webhook-secret", "sec_live_12")]), Some(401));
        assert_eq!(status(&[("mono-webhook-secret", "")]), Some(401));
        assert_eq!(status(&[]), Some(401));
    }

    #[test]
    fn an_allow_list_admits_its_addresses_only() {
        let list = IpAllowList::parse("10.0.0.0/8").unwrap_or_default();
        let verifier = Verifier::AllowList(&list);
        assert!(verifier.verify(&request(&[], "10.1.2.3"), ()).is_ok());
        assert_eq!(verifier.verify(&request(&[], "192.0.2.1"), ()).err().map(|e| e.status()), Some(403));
        let anyone = IpAllowList::default();
        assert!(Verifier::AllowList(&anyone).verify(&request(&[], "192.0.2.1"), ()).is_ok());
    }
}
