//! Who is calling, and the grants that let them into tenant data.
//!
//! Sessions and API keys both resolve to a [`Principal`]. A [`TenantGrant`] is the only thing
//! the store accepts to open a tenant transaction, and it can be made in two ways: by
//! [`TenantGrant::authorize`], which checks the caller's membership of that very workspace
//! against the permission table, or from an [`OperatorGrant`] (the platform operator's CLI and
//! the platform's own lifecycle jobs), which names the operator in every event it leads to. An
//! organization's ledger opens only through an [`OrgGrant`]: one of those two.

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

/// Whom a ledger event names as acting: someone who authenticated, or nobody (a request
/// refused before authentication, a sign-in attempt that named no account it could prove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventActor {
    /// An authenticated actor.
    Known(Actor),
    /// Nobody proved who they are (also what an event names until told otherwise).
    #[default]
    Anonymous,
}

impl EventActor {
    /// How the ledger names it: `usr_…`, `key_…`, `operator` or `anonymous`.
    pub fn label(&self) -> String {
        match self {
            EventActor::Known(actor) => actor.label(),
            EventActor::Anonymous => "anonymous".to_owned(),
        }
    }
}

impl From<Actor> for EventActor {
    fn from(actor: Actor) -> Self {
        EventActor::Known(actor)
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

/// The platform operator (a CLI command) or the platform's own lifecycle work (retention,
/// erasure) acting on one organization, outside any request. It is recorded as actor
/// `operator`, method `CLI`. Nothing a request holds can become one: only the commands and
/// jobs that construct it, which are found by searching for `OperatorGrant::new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorGrant {
    org: OrgId,
}

impl OperatorGrant {
    /// The operator's standing in `org`.
    pub fn new(org: OrgId) -> Self {
        Self { org }
    }

    /// The organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Who acts: the operator, through the CLI.
    pub fn principal(&self) -> Principal {
        Principal {
            actor: Actor::Operator,
            method: AuthMethod::Cli,
        }
    }

    /// The operator inside `workspace` of this organization, with an owner's permissions. The
    /// caller has checked that the workspace belongs to the organization.
    pub fn in_workspace(&self, workspace: WorkspaceId) -> TenantGrant {
        TenantGrant {
            principal: self.principal(),
            org: self.org,
            workspace,
            role: Role::Owner,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::TenantGrant {}
    impl Sealed for super::OperatorGrant {}
}

/// Standing in one organization, which opens its ledger: a [`TenantGrant`] (its ledger is the
/// workspace's organization's) or an [`OperatorGrant`]. Sealed: no other type can be one.
///
/// ```compile_fail
/// // Outside this crate a type cannot become a grant (the sealing trait is private):
/// struct Forged(rampart_core::OrgId);
/// impl rampart_core::OrgGrant for Forged {
///     fn ledger_org(&self) -> rampart_core::OrgId {
///         self.0
///     }
/// }
/// ```
pub trait OrgGrant: sealed::Sealed + Send + Sync {
    /// The organization whose ledger this grant opens.
    fn ledger_org(&self) -> OrgId;
}

impl OrgGrant for TenantGrant {
    fn ledger_org(&self) -> OrgId {
        self.org
    }
}

impl OrgGrant for OperatorGrant {
    fn ledger_org(&self) -> OrgId {
        self.org
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
