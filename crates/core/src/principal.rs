//! Who is calling, and the grant that lets them into one workspace.
//!
//! Sessions and API keys both resolve to a [`Principal`]. A [`TenantGrant`] is the only thing
//! the store accepts to open a tenant transaction, and it can be made in two ways: by
//! [`TenantGrant::authorize`], which checks the caller's membership of that very workspace
//! against the permission table, or by [`TenantGrant::operator`], the platform operator's CLI.

use serde::Serialize;

use crate::{ApiKeyId, OrgId, Permission, Plan, Role, UserId, WorkspaceId};

/// The one who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in person.
    User(UserId),
    /// A workspace API key.
    ApiKey(ApiKeyId),
    /// The platform operator, through the CLI.
    Operator,
}

impl Actor {
    /// How ledgers and version history name the actor: `usr_…`, `key_…` or `operator`.
    pub fn label(&self) -> String {
        match self {
            Actor::User(u) => u.to_string(),
            Actor::ApiKey(k) => k.to_string(),
            Actor::Operator => "operator".to_owned(),
        }
    }
}

/// How the actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A browser session cookie.
    Session,
    /// An `Authorization: Bearer` API key.
    ApiKey,
    /// The operator CLI on the server's host.
    Cli,
}

impl AuthMethod {
    /// The ledger's name for the method.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Session => "session",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Cli => "cli",
        }
    }
}

/// An authenticated caller, however they authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// Who acts.
    pub actor: Actor,
    /// How they authenticated.
    pub method: AuthMethod,
}

/// A caller's standing in one workspace: its organization, the role held there and the
/// organization's plan. Built by the store from a membership row or an API key row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The organization that owns the workspace.
    pub org: OrgId,
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The role held there.
    pub role: Role,
    /// The organization's plan.
    pub plan: Plan,
}

/// Why a grant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// The caller has no membership in the workspace: answer exactly as for a missing one.
    #[error("not found")]
    NotAMember,
    /// The caller is a member but the role lacks the permission.
    #[error("your role `{role}` lacks the `{needed}` permission")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// The permission the route needs.
        needed: Permission,
    },
}

/// Proof that a principal may act in one workspace. Fields are private: the only ways to get
/// one are an authorization decision or the operator constructor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantGrant {
    principal: Principal,
    org: OrgId,
    workspace: WorkspaceId,
    role: Role,
}

impl TenantGrant {
    /// Grants `principal` access to `requested` if `membership` is for that workspace and its
    /// role holds `needed` (when the route needs a permission at all).
    pub fn authorize(
        principal: Principal,
        requested: WorkspaceId,
        membership: Option<Membership>,
        needed: Option<Permission>,
    ) -> Result<Self, AccessDenied> {
        let m = membership
            .filter(|m| m.workspace == requested)
            .ok_or(AccessDenied::NotAMember)?;
        if let Some(needed) = needed
            && !m.role.can(needed)
        {
            return Err(AccessDenied::Forbidden {
                role: m.role,
                needed,
            });
        }
        Ok(Self {
            principal,
            org: m.org,
            workspace: m.workspace,
            role: m.role,
        })
    }

    /// The platform operator acting inside a tenant (CLI, admin tooling).
    pub fn operator(org: OrgId, workspace: WorkspaceId) -> Self {
        Self {
            principal: Principal {
                actor: Actor::Operator,
                method: AuthMethod::Cli,
            },
            org,
            workspace,
            role: Role::Owner,
        }
    }

    /// Who holds the grant.
    pub fn principal(&self) -> Principal {
        self.principal
    }

    /// The organization owning the workspace.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The one workspace this grant opens.
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// The role the grant was made under.
    pub fn role(&self) -> Role {
        self.role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_principal() -> Principal {
        Principal {
            actor: Actor::ApiKey(ApiKeyId::generate()),
            method: AuthMethod::ApiKey,
        }
    }

    #[test]
    fn a_membership_of_another_workspace_grants_nothing() {
        let m = Membership {
            org: OrgId::generate(),
            workspace: WorkspaceId::generate(),
            role: Role::Owner,
            plan: Plan::Enterprise,
        };
        let other = WorkspaceId::generate();
        assert_eq!(
            TenantGrant::authorize(key_principal(), other, Some(m), None),
            Err(AccessDenied::NotAMember)
        );
        assert_eq!(
            TenantGrant::authorize(key_principal(), other, None, None),
            Err(AccessDenied::NotAMember)
        );
    }

    #[test]
    fn a_role_without_the_permission_is_forbidden() {
        let ws = WorkspaceId::generate();
        let m = Membership {
            org: OrgId::generate(),
            workspace: ws,
            role: Role::Viewer,
            plan: Plan::Free,
        };
        assert_eq!(
            TenantGrant::authorize(
                key_principal(),
                ws,
                Some(m),
                Some(Permission::ContactsWrite)
            ),
            Err(AccessDenied::Forbidden {
                role: Role::Viewer,
                needed: Permission::ContactsWrite
            })
        );
        let g =
            TenantGrant::authorize(key_principal(), ws, Some(m), Some(Permission::ContactsRead));
        assert_eq!(g.map(|g| g.workspace()), Ok(ws));
    }
}
