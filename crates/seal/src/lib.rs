//! Encryption at rest of what hookbus must keep but must not keep in clear: partners' signing
//! secrets, and the secret headers of a queued request until it has run.
//!
//! Values are sealed with ChaCha20-Poly1305 under the server's key (`outbound.encryption_key`), a
//! random nonce each, so that a copy of the database gives away none of them. Instances sharing a
//! database must share the key. This crate knows nothing of what it seals.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit},
};
use rand::RngCore;

const NONCE_LEN: usize = 12;
/// The stored form's prefix: the scheme, so that another can follow.
const STORED_PREFIX: &str = "v1:";

/// Seals and opens values with the server's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer")
    }
}

/// The configured key is not 32 bytes of base64.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("outbound.encryption_key must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)")]
pub struct BadKey;

/// A stored value that cannot be opened: sealed under another key, or altered.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a stored secret cannot be decrypted with this server's outbound.encryption_key")]
pub struct Undecryptable;

impl Sealer {
    /// A sealer under `key`, the base64 of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, BadKey> {
        let bytes = BASE64.decode(key.trim()).map_err(|_| BadKey)?;
        if bytes.len() != 32 {
            return Err(BadKey);
        }
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }

    /// `clear`, sealed: `v1:` and the base64 of the nonce and the ciphertext with its tag.
    pub fn seal(&self, clear: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encrypting fails only for inputs of gigabytes.
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), clear).unwrap_or_default();
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        format!("{STORED_PREFIX}{}", BASE64.encode(stored))
    }

    /// What [`seal`](Self::seal) sealed.
    pub fn open(&self, stored: &str) -> Result<Vec<u8>, Undecryptable> {
        let bytes = stored.strip_prefix(STORED_PREFIX).and_then(|b| BASE64.decode(b).ok()).ok_or(Undecryptable)?;
        if bytes.len() <= NONCE_LEN {
            return Err(Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| Undecryptable)
    }

    /// As [`open`](Self::open), for text.
    pub fn open_text(&self, stored: &str) -> Result<String, Undecryptable> {
        String::from_utf8(self.open(stored)?).map_err(|_| Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::from_base64(&BASE64.encode([byte; 32])).unwrap_or_else(|_| panic!("a valid key"))
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_hide_the_value() {
        let stored = sealer(7).seal(b"sec_live_partner_secret");
        assert!(stored.starts_with("v1:") && !stored.contains("partner"));
        assert_eq!(sealer(7).open_text(&stored).ok().as_deref(), Some("sec_live_partner_secret"));
        assert!(sealer(8).open(&stored).is_err());
        assert!(sealer(7).open("v1:garbage").is_err());
        assert_ne!(sealer(7).seal(b"same"), sealer(7).seal(b"same"), "a fresh nonce each time");
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        assert!(Sealer::from_base64(&BASE64.encode([1u8; 16])).is_err());
        assert!(Sealer::from_base64("not base64!").is_err());
    }
}
