use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a token may do. `Admin` implies every other permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Permission {
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    #[serde(rename = "subscriptions:read")]
    SubscriptionsRead,
    #[serde(rename = "subscriptions:write")]
    SubscriptionsWrite,
    #[serde(rename = "events:publish")]
    EventsPublish,
    #[serde(rename = "processes:read")]
    ProcessesRead,
    #[serde(rename = "processes:write")]
    ProcessesWrite,
    #[serde(rename = "inbound:read")]
    InboundRead,
    #[serde(rename = "secrets:read")]
    SecretsRead,
    #[serde(rename = "secrets:write")]
    SecretsWrite,
    #[serde(rename = "admin")]
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::WebhooksRead,
        Permission::WebhooksWrite,
        Permission::SubscriptionsRead,
        Permission::SubscriptionsWrite,
        Permission::EventsPublish,
        Permission::ProcessesRead,
        Permission::ProcessesWrite,
        Permission::InboundRead,
        Permission::SecretsRead,
        Permission::SecretsWrite,
        Permission::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::WebhooksRead => "webhooks:read",
            Permission::WebhooksWrite => "webhooks:write",
            Permission::SubscriptionsRead => "subscriptions:read",
            Permission::SubscriptionsWrite => "subscriptions:write",
            Permission::EventsPublish => "events:publish",
            Permission::ProcessesRead => "processes:read",
            Permission::ProcessesWrite => "processes:write",
            Permission::InboundRead => "inbound:read",
            Permission::SecretsRead => "secrets:read",
            Permission::SecretsWrite => "secrets:write",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, as a token holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn admin() -> Self {
        Self::from_iter([Permission::Admin])
    }

    /// Whether the set grants `needed`, directly or through `admin`.
    pub fn allows(self, needed: Permission) -> bool {
        self.0 & (needed.bit() | Permission::Admin.bit()) != 0
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn without(self, permission: Permission) -> Self {
        Self(self.0 & !permission.bit())
    }

    pub fn all() -> Self {
        Self::from_iter(Permission::ALL)
    }

    /// What `self` may do within `ceiling`: the permissions both allow, `admin` in either standing
    /// for every other permission. The result never holds `admin`.
    pub fn within(self, ceiling: PermissionSet) -> PermissionSet {
        let expand = |set: PermissionSet| if set.contains(Permission::Admin) { PermissionSet::all() } else { set };
        Self(expand(self).0 & expand(ceiling).0).without(Permission::Admin)
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, p| bits | p.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_everything() {
        let admin = PermissionSet::admin();
        assert!(Permission::ALL.into_iter().all(|p| admin.allows(p)));
    }

    #[test]
    fn a_set_allows_only_what_it_holds() {
        let set = PermissionSet::from_iter([Permission::WebhooksRead]);
        assert!(set.allows(Permission::WebhooksRead));
        assert!(!set.allows(Permission::WebhooksWrite));
        assert!(!set.allows(Permission::Admin));
    }

    #[test]
    fn within_keeps_what_both_allow_and_never_admin() {
        let set = |ps: &[Permission]| PermissionSet::from_iter(ps.iter().copied());
        let (read, write, publish) = (Permission::WebhooksRead, Permission::WebhooksWrite, Permission::EventsPublish);
        assert_eq!(set(&[read, write]).within(set(&[read, publish])), set(&[read]));
        assert_eq!(PermissionSet::admin().within(set(&[read, publish])), set(&[read, publish]));
        assert_eq!(set(&[write]).within(PermissionSet::admin()), set(&[write]));
        assert!(!PermissionSet::admin().within(PermissionSet::admin()).contains(Permission::Admin));
        assert_eq!(
            PermissionSet::admin().within(PermissionSet::admin()),
            PermissionSet::all().without(Permission::Admin)
        );
    }

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }
}
