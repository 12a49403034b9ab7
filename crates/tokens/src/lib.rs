//! API tokens: issuing, revoking and listing them, and turning a bearer token into a
//! [`Principal`](hookbus_core::Principal).
//!
//! Only the SHA-256 of a token is stored; the token itself is returned once, when issued. Tokens
//! are 256 random bits, so a fast hash is the right one (a password hash would only slow every
//! request). This crate knows nothing of HTTP: the server passes it the bearer string.

mod authority;
mod commands;
mod entity;
mod issue;

pub use authority::TokenAuthority;
pub use issue::{IssuedToken, NewToken, TokenView, issue_token};
