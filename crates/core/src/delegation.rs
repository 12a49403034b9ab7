//! Delegated authority: what a stored router configuration or process definition may do when it
//! runs.
//!
//! Routes and processes run commands later than, and on behalf of, whoever saved them; a route runs
//! for callers that present no token at all. So each runs with the authority its saver had when
//! saving it, recorded beside it as a [`Delegation`]: the saver's permissions, narrowed at run time
//! to `router.internal_permissions`, and the saver's owner binding. Saving a route or a process
//! can therefore never give the saver, or an anonymous caller of the route, more than the saver
//! already had.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CommandError, Owner, Permission, PermissionSet, Principal, Subject};

/// The authority a configuration or process definition (or a running instance) runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The saver's permissions as they were when it saved (`admin` kept as `admin`).
    pub permissions: PermissionSet,
    /// The owner the saver's token was bound to: the route's commands see only that owner's data.
    pub owner: Option<Owner>,
    /// Who saved it, for the record: `token:<id>`, `bootstrap`, or the route or process that did.
    pub saved_by: String,
}

impl Delegation {
    /// The authority of `principal`, to be recorded with what it saves.
    pub fn of(principal: &Principal) -> Self {
        Self {
            permissions: principal.permissions,
            owner: principal.owner.clone(),
            saved_by: principal.subject.to_string(),
        }
    }

    /// The principal the stored thing's commands run as: the recorded permissions within
    /// `ceiling` (never `admin`), bound to the recorded owner.
    pub fn principal(&self, ceiling: PermissionSet, subject: &'static str) -> Principal {
        Principal {
            subject: Subject::Internal(subject),
            permissions: self.permissions.within(ceiling),
            owner: self.owner.clone(),
        }
    }

    /// The authority a caller gets by starting what was saved with `self` (a process definition):
    /// the saver's permissions, bound to the caller's owner as well as the saver's, so that an
    /// owner-bound caller reaches only its own owner's data through it. `None` when the two are
    /// bound to different owners.
    pub fn for_caller(&self, caller: &Principal) -> Option<Delegation> {
        let owner = match (&self.owner, &caller.owner) {
            (Some(saver), Some(caller)) if saver != caller => return None,
            (Some(owner), _) | (None, Some(owner)) => Some(owner.clone()),
            (None, None) => None,
        };
        Some(Self { permissions: self.permissions, owner, saved_by: self.saved_by.clone() })
    }

    /// The stored form: JSON text, as [`DelegationView`].
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.view()).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn from_stored(text: &str) -> Result<Self, String> {
        let view: DelegationView =
            serde_json::from_str(text).map_err(|e| format!("the recorded authority is not readable: {e}"))?;
        Self::from_view(view)
    }

    /// As answers show it.
    pub fn view(&self) -> DelegationView {
        let (partner_id, customer_id) = match &self.owner {
            Some(Owner::Partner(id)) => (Some(*id), None),
            Some(Owner::Customer(id)) => (None, Some(id.clone())),
            None => (None, None),
        };
        DelegationView {
            permissions: self.permissions.iter().collect(),
            partner_id,
            customer_id,
            saved_by: self.saved_by.clone(),
        }
    }

    fn from_view(view: DelegationView) -> Result<Self, String> {
        let DelegationView { permissions, partner_id, customer_id, saved_by } = view;
        let owner = match (partner_id, customer_id) {
            (Some(partner), None) => Some(Owner::Partner(partner)),
            (None, Some(customer)) => Some(Owner::Customer(customer)),
            (None, None) => None,
            (Some(_), Some(_)) => return Err("the recorded authority names two owners".into()),
        };
        Ok(Self { permissions: permissions.into_iter().collect(), owner, saved_by })
    }
}

/// A delegation as stored and as configuration and definition views show it (`runAs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationView {
    /// The saver's permissions; commands run with these within `router.internal_permissions`.
    pub permissions: Vec<Permission>,
    /// The owner the commands are bound to, when the saver's token was bound to a partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<Uuid>,
    /// The owner the commands are bound to, when the saver's token was bound to a customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Who saved it: `token:<id>`, `bootstrap`, `router` or `process`.
    pub saved_by: String,
}

/// Refuses (403) unless `principal` may run every command named: whoever saves a route or a
/// process must be allowed to run each command it names. Each entry is where the name was found
/// (`commandName`, `commandChain[1].commandName`) and the name; names not registered are left to
/// validation.
pub fn authorize_commands<'a>(
    principal: &Principal,
    named: impl IntoIterator<Item = (String, &'a str)>,
) -> Result<(), CommandError> {
    let refused: Vec<String> = named
        .into_iter()
        .filter_map(|(at, name)| {
            let info = crate::lookup(name)?;
            (!principal.permissions.allows(info.permission)).then(|| {
                format!("{at}: {name} requires permission {}, which this token does not have", info.permission)
            })
        })
        .collect();
    if refused.is_empty() { Ok(()) } else { Err(CommandError::ForbiddenCommands(refused)) }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Bootstrap => f.write_str("bootstrap"),
            Subject::Token(id) => write!(f, "token:{id}"),
            Subject::Internal(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegation(permissions: &[Permission], owner: Option<Owner>) -> Delegation {
        Delegation { permissions: permissions.iter().copied().collect(), owner, saved_by: "token:x".into() }
    }

    #[test]
    fn a_delegation_survives_storage() {
        let partner = Owner::Partner(Uuid::from_u128(7));
        let original = delegation(&[Permission::WebhooksRead, Permission::EventsPublish], Some(partner));
        assert_eq!(Delegation::from_stored(&original.to_stored()), Ok(original));
    }

    #[test]
    fn the_running_principal_is_within_the_ceiling_and_bound() {
        let partner = Owner::Partner(Uuid::from_u128(7));
        let saved = delegation(&[Permission::Admin], Some(partner.clone()));
        let ceiling = PermissionSet::from_iter([Permission::EventsPublish]);
        let principal = saved.principal(ceiling, "router");
        assert_eq!(principal.permissions, ceiling);
        assert_eq!(principal.owner, Some(partner));
    }

    #[test]
    fn a_caller_adds_its_owner_and_cannot_cross_owners() {
        let a = Owner::Customer("a".into());
        let b = Owner::Customer("b".into());
        let caller = |owner: Option<Owner>| Principal {
            subject: Subject::Token(Uuid::from_u128(1)),
            permissions: PermissionSet::from_iter([Permission::ProcessesWrite]),
            owner,
        };
        let definition = delegation(&[Permission::SubscriptionsRead], None);
        let started = definition.for_caller(&caller(Some(a.clone()))).expect("one owner");
        assert_eq!(started.permissions, definition.permissions);
        assert_eq!(started.owner, Some(a.clone()));
        let bound = delegation(&[Permission::SubscriptionsRead], Some(a.clone()));
        assert_eq!(bound.for_caller(&caller(None)).map(|d| d.owner), Some(Some(a.clone())));
        assert_eq!(bound.for_caller(&caller(Some(b))), None);
    }
}
