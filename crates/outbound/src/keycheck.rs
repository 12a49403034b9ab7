//! The encryption key is checked at start-up. The database keeps a check value sealed with the key
//! (a fixed text, never the key); an instance whose key cannot open it refuses to start, instead of
//! coming up and leaving every delivery unsigned and stuck. A database from before the check
//! existed is checked against a stored signing secret, then given its check value.

use hookbus_core::now;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};

use crate::{
    entity::{key_check, subscription},
    secret::SecretBox,
};

/// The name the check value is stored under.
const NAME: &str = "outbound.encryption_key";
/// The text the check value seals.
const CHECK: &str = "hookbus outbound encryption key check";

/// The configured key is not the one the database's secrets were sealed with.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(
        "outbound.encryption_key (HOOKBUS_OUTBOUND__ENCRYPTION_KEY) is not the key this database's secrets \
         were encrypted with; every instance on one database needs the same key"
    )]
    Mismatch,
    #[error("cannot check outbound.encryption_key against the database")]
    Database(#[source] DbErr),
}

impl From<DbErr> for KeyCheckError {
    fn from(error: DbErr) -> Self {
        Self::Database(error)
    }
}

/// Checks `secrets`' key against the database, storing the check value on first use.
pub async fn check_key(db: &impl ConnectionTrait, secrets: &SecretBox) -> Result<(), KeyCheckError> {
    if let Some(stored) = key_check::Entity::find_by_id(NAME.to_owned()).one(db).await? {
        return opens(secrets, &stored.value);
    }
    // No check value yet: the secrets already stored must open with this key.
    if let Some(sealed) = subscription::Entity::find().one(db).await? {
        secrets.open(&sealed.secret).map_err(|_| KeyCheckError::Mismatch)?;
    }
    let row = key_check::Model { name: NAME.to_owned(), value: secrets.seal_text(CHECK), created_at: now() };
    key_check::Entity::insert(key_check::ActiveModel::from(row))
        .on_conflict(OnConflict::column(key_check::Column::Name).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    // Another instance may have stored its value first: the value kept decides.
    let stored = key_check::Entity::find_by_id(NAME.to_owned()).one(db).await?.ok_or(KeyCheckError::Mismatch)?;
    opens(secrets, &stored.value)
}

fn opens(secrets: &SecretBox, value: &str) -> Result<(), KeyCheckError> {
    match secrets.open_text(value) {
        Ok(text) if text == CHECK => Ok(()),
        _ => Err(KeyCheckError::Mismatch),
    }
}
