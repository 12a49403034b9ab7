//! Signing secrets: generated, checked, encrypted at rest, masked on read.
//!
//! Secrets are sealed at rest under the server's key (`hookbus_seal`), so that a copy of the
//! database does not give away partners' signing keys.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
pub use hookbus_seal::{BadKey, Sealer, Undecryptable};
use rand::RngCore;

/// The prefix of Standard Webhooks secrets.
pub const WHSEC: &str = "whsec_";

/// A signing secret in the clear. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.mask())
    }
}

impl Secret {
    /// A new `whsec_` secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{WHSEC}{}", BASE64.encode(bytes)))
    }

    /// Checks a secret a client chose: a `whsec_` secret whose key is at least 16 bytes, or at
    /// least 16 characters with three of lower case, upper case, digits and symbols.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(encoded) = text.strip_prefix(WHSEC) {
            return match BASE64.decode(encoded) {
                Ok(key) if key.len() >= 16 && key.len() <= 64 => Ok(Self(text.to_owned())),
                Ok(_) => Err("secret: a whsec_ secret must encode 16 to 64 bytes".to_owned()),
                Err(_) => Err("secret: the part after whsec_ must be base64".to_owned()),
            };
        }
        let classes = [
            text.chars().any(|c| c.is_ascii_lowercase()),
            text.chars().any(|c| c.is_ascii_uppercase()),
            text.chars().any(|c| c.is_ascii_digit()),
            text.chars().any(|c| !c.is_ascii_alphanumeric()),
        ];
        if text.chars().count() < 16 || classes.iter().filter(|&&has| has).count() < 3 {
            return Err("secret: must be a whsec_ secret, or at least 16 characters using three of lower case, \
                        upper case, digits and symbols"
                .to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the decoded part of a `whsec_` secret, else the secret's bytes.
    pub fn signing_key(&self) -> Vec<u8> {
        self.0
            .strip_prefix(WHSEC)
            .and_then(|encoded| BASE64.decode(encoded).ok())
            .unwrap_or_else(|| self.0.as_bytes().to_vec())
    }

    /// What reads show instead of the secret: `whsec_****abcd` (the last four characters).
    pub fn mask(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        format!("{}****{tail}", if self.0.starts_with(WHSEC) { WHSEC } else { "" })
    }
}

/// Encrypts and decrypts signing secrets with the server's key.
#[derive(Clone, Debug)]
pub struct SecretBox {
    sealer: Sealer,
}

impl SecretBox {
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }

    pub fn from_base64(key: &str) -> Result<Self, BadKey> {
        Sealer::from_base64(key).map(Self::new)
    }

    pub fn seal(&self, secret: &Secret) -> String {
        self.sealer.seal(secret.0.as_bytes())
    }

    pub fn open(&self, stored: &str) -> Result<Secret, Undecryptable> {
        self.sealer.open_text(stored).map(Secret)
    }

    /// Seals a text that is not a signing secret (the key check).
    pub(crate) fn seal_text(&self, text: &str) -> String {
        self.sealer.seal(text.as_bytes())
    }

    pub(crate) fn open_text(&self, stored: &str) -> Result<String, Undecryptable> {
        self.sealer.open_text(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> SecretBox {
        SecretBox::from_base64(&BASE64.encode([7u8; 32])).expect("key")
    }

    #[test]
    fn sealed_secrets_open_and_do_not_show_the_secret() {
        let secret = Secret::generate();
        let stored = sealer().seal(&secret);
        assert!(!stored.contains(secret.expose()));
        assert_eq!(sealer().open(&stored).expect("open"), secret);
        let other = SecretBox::from_base64(&BASE64.encode([8u8; 32])).expect("key");
        assert!(other.open(&stored).is_err());
    }

    #[test]
    fn chosen_secrets_follow_the_rules() {
        assert!(Secret::parse("Str0ng-enough-secret").is_ok());
        assert!(Secret::parse("weakweakweakweak").is_err());
        assert!(Secret::parse("Sh0rt!").is_err());
        assert!(Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(Secret::parse("whsec_!!!").is_err());
    }

    #[test]
    fn masks_keep_only_the_last_four_characters() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        assert_eq!(secret.mask(), "whsec_****LaSw");
        assert_eq!(format!("{secret:?}"), "Secret(whsec_****LaSw)");
    }
}
