use std::time::Duration;

use hookbus_core::{CommandError, Owner, Permission, PermissionSet, Principal, Subject, Timestamp};
use moka::sync::Cache;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use subtle::ConstantTimeEq;

use crate::{entity, issue::hash_token, issue::split_permissions};

/// How long a token lookup is reused. A revocation made on another instance takes effect here
/// within this time; on this instance it takes effect at once.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// Resolves bearer tokens to principals.
pub struct TokenAuthority {
    db: DatabaseConnection,
    bootstrap_hash: Option<String>,
    cache: Cache<String, Option<CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    principal: Principal,
    expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority").field("bootstrap", &self.bootstrap_hash.is_some()).finish()
    }
}

impl TokenAuthority {
    pub fn new(db: DatabaseConnection, bootstrap_token: Option<&str>) -> Self {
        Self {
            db,
            bootstrap_hash: bootstrap_token.filter(|t| !t.is_empty()).map(hash_token),
            cache: Cache::builder().max_capacity(10_000).time_to_live(CACHE_TTL).build(),
        }
    }

    /// The principal behind a bearer token; 401 when it is unknown, revoked or expired.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, CommandError> {
        let hash = hash_token(bearer);
        if let Some(bootstrap) = &self.bootstrap_hash
            && bool::from(bootstrap.as_bytes().ct_eq(hash.as_bytes()))
        {
            return Ok(Principal { subject: Subject::Bootstrap, permissions: PermissionSet::admin(), owner: None });
        }
        let cached = match self.cache.get(&hash) {
            Some(cached) => cached,
            None => {
                let found = self.load(&hash).await?;
                self.cache.insert(hash, found.clone());
                found
            }
        };
        match cached {
            Some(token) if token.expires_at.is_none_or(|at| at > hookbus_core::now()) => Ok(token.principal),
            _ => Err(CommandError::Unauthorized),
        }
    }

    /// Forgets a token at once on this instance (other instances forget it within [`CACHE_TTL`]).
    pub(crate) fn forget(&self, token_hash: &str) {
        self.cache.invalidate(token_hash);
    }

    async fn load(&self, hash: &str) -> Result<Option<CachedToken>, CommandError> {
        let row = entity::Entity::find()
            .filter(entity::Column::TokenHash.eq(hash))
            .filter(entity::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(CommandError::internal)?;
        Ok(row.map(|row| CachedToken {
            principal: Principal {
                subject: Subject::Token(row.id),
                permissions: split_permissions(&row.permissions),
                owner: match (row.partner_id, row.customer_id) {
                    (Some(partner), _) => Some(Owner::Partner(partner)),
                    (None, Some(customer)) => Some(Owner::Customer(customer)),
                    (None, None) => None,
                },
            },
            expires_at: row.expires_at,
        }))
    }
}

/// Permissions the tokens commands need; kept beside them.
pub(crate) const TOKENS_PERMISSION: Permission = Permission::Admin;
