//! Signing secrets: generated, checked, encrypted at rest, masked on read.
//!
//! Secrets are encrypted with ChaCha20-Poly1305 under the server's key (`outbound.encryption_key`)
//! so that a copy of the database does not give away partners' signing keys. Instances sharing a
//! database must share the key.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit},
};
use hookbus_core::CommandError;
use rand::RngCore;

/// The prefix of Standard Webhooks secrets.
pub const WHSEC: &str = "whsec_";
const NONCE_LEN: usize = 12;
const STORED_PREFIX: &str = "v1:";

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

/// Encrypts and decrypts secrets with the server's key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox")
    }
}

/// The configured key is not 32 bytes of base64.
#[derive(Debug, thiserror::Error)]
#[error("outbound.encryption_key must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)")]
pub struct BadKey;

/// A stored secret that cannot be decrypted: the key changed, or the row was altered.
#[derive(Debug, thiserror::Error)]
#[error("a stored signing secret cannot be decrypted with this server's outbound.encryption_key")]
pub struct Undecryptable;

impl SecretBox {
    pub fn from_base64(key: &str) -> Result<Self, BadKey> {
        let bytes = BASE64.decode(key.trim()).map_err(|_| BadKey)?;
        if bytes.len() != 32 {
            return Err(BadKey);
        }
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }

    pub fn seal(&self, secret: &Secret) -> Result<String, CommandError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), secret.0.as_bytes())
            .map_err(|_| CommandError::internal(Undecryptable))?;
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        Ok(format!("{STORED_PREFIX}{}", BASE64.encode(stored)))
    }

    pub fn open(&self, stored: &str) -> Result<Secret, Undecryptable> {
        let bytes = stored.strip_prefix(STORED_PREFIX).and_then(|b| BASE64.decode(b).ok()).ok_or(Undecryptable)?;
        if bytes.len() <= NONCE_LEN {
            return Err(Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let clear = self.cipher.decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| Undecryptable)?;
        String::from_utf8(clear).map(Secret).map_err(|_| Undecryptable)
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
        let stored = sealer().seal(&secret).expect("seal");
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
