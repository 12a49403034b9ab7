use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hookbus_core::{CommandError, Owner, Permission, PermissionSet, Timestamp};
use rand::RngCore;
use schemars::JsonSchema;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity;

/// Prefix of every token hookbus issues, so that a leaked one is recognisable by secret scanners.
const TOKEN_PREFIX: &str = "hbk_";

/// A validated request for a new token.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub permissions: PermissionSet,
    pub owner: Option<Owner>,
    pub expires_at: Option<Timestamp>,
}

impl NewToken {
    /// Checks the rules shared by the command and the CLI.
    pub fn parse(
        name: String,
        permissions: &[Permission],
        partner_id: Option<Uuid>,
        customer_id: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> Result<Self, CommandError> {
        let mut errors = Vec::new();
        let name = name.trim().to_owned();
        if name.is_empty() {
            errors.push("name: Name is required".to_owned());
        } else if name.chars().count() > 100 {
            errors.push("name: Name must be at most 100 characters".to_owned());
        }
        if permissions.is_empty() {
            errors.push("permissions: at least one permission is required".to_owned());
        }
        let owner = match (partner_id, customer_id) {
            (Some(_), Some(_)) => {
                errors.push("partnerId: give partnerId or customerId, not both".to_owned());
                None
            }
            (Some(partner), None) => Some(Owner::Partner(partner)),
            (None, Some(customer)) if customer.trim().is_empty() => {
                errors.push("customerId: customerId must not be empty".to_owned());
                None
            }
            (None, Some(customer)) => Some(Owner::Customer(customer)),
            (None, None) => None,
        };
        if expires_at.is_some_and(|at| at <= hookbus_core::now()) {
            errors.push("expiresAt: expiresAt must be in the future".to_owned());
        }
        if !errors.is_empty() {
            return Err(CommandError::Validation(errors));
        }
        Ok(Self { name, permissions: permissions.iter().copied().collect(), owner, expires_at })
    }
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub permissions: Vec<Permission>,
    pub partner_id: Option<Uuid>,
    pub customer_id: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A token just issued: the only value that ever carries the secret.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token. Shown here once; only its hash is stored.
    pub token: String,
}

/// Creates and stores a token.
pub async fn issue_token(db: &impl ConnectionTrait, new: NewToken) -> Result<IssuedToken, CommandError> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let (partner_id, customer_id) = match new.owner {
        Some(Owner::Partner(id)) => (Some(id), None),
        Some(Owner::Customer(id)) => (None, Some(id)),
        None => (None, None),
    };
    let model = entity::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(new.name),
        token_hash: Set(hash_token(&token)),
        permissions: Set(join_permissions(new.permissions)),
        partner_id: Set(partner_id),
        customer_id: Set(customer_id),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
        created_at: Set(hookbus_core::now()),
    }
    .insert(db)
    .await
    .map_err(CommandError::internal)?;
    Ok(IssuedToken { view: TokenView::from(model), token })
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn join_permissions(permissions: PermissionSet) -> String {
    permissions.iter().map(Permission::as_str).collect::<Vec<_>>().join(",")
}

pub(crate) fn split_permissions(stored: &str) -> PermissionSet {
    stored.split(',').filter_map(Permission::parse).collect()
}

impl From<entity::Model> for TokenView {
    fn from(model: entity::Model) -> Self {
        let entity::Model {
            id,
            name,
            token_hash: _,
            permissions,
            partner_id,
            customer_id,
            expires_at,
            revoked_at,
            created_at,
        } = model;
        Self {
            id,
            name,
            permissions: split_permissions(&permissions).iter().collect(),
            partner_id,
            customer_id,
            expires_at,
            revoked_at,
            created_at,
        }
    }
}
