//! The seven fixed roles and the one table that maps each to its permissions
//! (ARCHITECTURE §3). Authorization anywhere in Rampart asks this table and nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role a member or API key holds in one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including billing and ownership.
    Owner,
    /// Everything except managing billing.
    Admin,
    /// An author: writes contacts and campaigns.
    Member,
    /// Reviews and approves campaigns; writes nothing else.
    Approver,
    /// Reads and manages billing only.
    Billing,
    /// CRM write, marketing read.
    Sales,
    /// Reads contacts and campaigns.
    Viewer,
}

/// One thing a role may do in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// See the workspace itself.
    #[serde(rename = "workspace:read")]
    WorkspaceRead,
    /// List and read contacts.
    #[serde(rename = "contacts:read")]
    ContactsRead,
    /// Create, change and delete contacts.
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    /// List and read campaigns.
    #[serde(rename = "campaigns:read")]
    CampaignsRead,
    /// Create and change campaigns.
    #[serde(rename = "campaigns:write")]
    CampaignsWrite,
    /// Approve a campaign for sending.
    #[serde(rename = "campaigns:approve")]
    CampaignsApprove,
    /// Read invoices and payouts.
    #[serde(rename = "billing:read")]
    BillingRead,
    /// Change billing details and payouts.
    #[serde(rename = "billing:manage")]
    BillingManage,
    /// Read the audit ledger and deleted objects' history.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Invite, change and remove members.
    #[serde(rename = "members:manage")]
    MembersManage,
    /// Create, list and revoke API keys.
    #[serde(rename = "keys:manage")]
    KeysManage,
    /// Set and remove provider credentials.
    #[serde(rename = "credentials:manage")]
    CredentialsManage,
}

use Permission as P;

const OWNER: &[Permission] = &[
    P::WorkspaceRead,
    P::ContactsRead,
    P::ContactsWrite,
    P::CampaignsRead,
    P::CampaignsWrite,
    P::CampaignsApprove,
    P::BillingRead,
    P::BillingManage,
    P::AuditRead,
    P::MembersManage,
    P::KeysManage,
    P::CredentialsManage,
];
const ADMIN: &[Permission] = &[
    P::WorkspaceRead,
    P::ContactsRead,
    P::ContactsWrite,
    P::CampaignsRead,
    P::CampaignsWrite,
    P::CampaignsApprove,
    P::BillingRead,
    P::AuditRead,
    P::MembersManage,
    P::KeysManage,
    P::CredentialsManage,
];
const MEMBER: &[Permission] = &[
    P::WorkspaceRead,
    P::ContactsRead,
    P::ContactsWrite,
    P::CampaignsRead,
    P::CampaignsWrite,
];
const APPROVER: &[Permission] = &[
    P::WorkspaceRead,
    P::ContactsRead,
    P::CampaignsRead,
    P::CampaignsApprove,
];
const BILLING: &[Permission] = &[P::WorkspaceRead, P::BillingRead, P::BillingManage];
const SALES: &[Permission] = &[
    P::WorkspaceRead,
    P::ContactsRead,
    P::ContactsWrite,
    P::CampaignsRead,
];
const VIEWER: &[Permission] = &[P::WorkspaceRead, P::ContactsRead, P::CampaignsRead];

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 7] = [
        Role::Owner,
        Role::Admin,
        Role::Member,
        Role::Approver,
        Role::Billing,
        Role::Sales,
        Role::Viewer,
    ];

    /// The permission table: everything this role may do.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Owner => OWNER,
            Role::Admin => ADMIN,
            Role::Member => MEMBER,
            Role::Approver => APPROVER,
            Role::Billing => BILLING,
            Role::Sales => SALES,
            Role::Viewer => VIEWER,
        }
    }

    /// Whether this role holds `permission`.
    pub fn can(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// Whether a holder of this role may grant, change, take away or manage something that
    /// acts with `other` (a member's role, an API key, an invitation): only when `other` holds
    /// no permission this role lacks, so that nobody can act beyond their own role through it.
    pub fn covers(self, other: Role) -> bool {
        other.permissions().iter().all(|p| self.can(*p))
    }

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Approver => "approver",
            Role::Billing => "billing",
            Role::Sales => "sales",
            Role::Viewer => "viewer",
        }
    }
}

impl Permission {
    /// The wire name, e.g. `contacts:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            P::WorkspaceRead => "workspace:read",
            P::ContactsRead => "contacts:read",
            P::ContactsWrite => "contacts:write",
            P::CampaignsRead => "campaigns:read",
            P::CampaignsWrite => "campaigns:write",
            P::CampaignsApprove => "campaigns:approve",
            P::BillingRead => "billing:read",
            P::BillingManage => "billing:manage",
            P::AuditRead => "audit:read",
            P::MembersManage => "members:manage",
            P::KeysManage => "keys:manage",
            P::CredentialsManage => "credentials:manage",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected owner, admin, member, approver, billing, sales or viewer)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn owner_holds_every_permission_and_others_are_subsets() {
        for role in Role::ALL {
            for p in role.permissions() {
                assert!(Role::Owner.can(*p), "{role} holds {p} that owner lacks");
            }
        }
    }

    #[test]
    fn the_documented_separations_hold() {
        assert!(
            !Role::Approver.can(P::ContactsWrite),
            "approvers review only"
        );
        assert!(!Role::Approver.can(P::CampaignsWrite));
        assert!(Role::Approver.can(P::CampaignsApprove));
        assert!(
            !Role::Member.can(P::CampaignsApprove),
            "authors cannot approve their own work"
        );
        assert!(Role::Sales.can(P::ContactsWrite) && !Role::Sales.can(P::CampaignsWrite));
        assert!(!Role::Viewer.can(P::ContactsWrite));
        assert!(!Role::Billing.can(P::ContactsRead));
        assert!(!Role::Admin.can(P::BillingManage));
        for role in [
            Role::Member,
            Role::Approver,
            Role::Billing,
            Role::Sales,
            Role::Viewer,
        ] {
            assert!(!role.can(P::KeysManage), "{role} must not mint keys");
            assert!(!role.can(P::MembersManage));
            assert!(!role.can(P::AuditRead));
        }
    }
}
