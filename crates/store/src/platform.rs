//! Platform tables: organizations, workspaces, users, memberships. No customer data lives
//! here; these rows decide who may enter which workspace, so they are read before any
//! workspace is bound and written by the operator CLI.

use chrono::{DateTime, Utc};
use rampart_core::{Email, Membership, MembershipId, OrgId, Plan, Role, UserId, WorkspaceId};
use serde::Serialize;
use sqlx::Row;

use crate::audit::NewEvent;
use crate::conn::{Conn, execute, fetch_optional, id};
use crate::error::corrupt;
use crate::{Backend, Store, StoreError, db_time};

/// The ids made by [`Store::create_org`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CreatedOrg {
    /// The new organization.
    pub org_id: OrgId,
    /// Its first workspace.
    pub workspace_id: WorkspaceId,
    /// The owner user (new, or existing with that email).
    pub user_id: UserId,
}

/// An organization and its plan.
#[derive(Debug, Clone, Serialize)]
pub struct OrgSummary {
    /// The id.
    pub id: OrgId,
    /// The display name.
    pub name: String,
    /// The plan.
    pub plan: Plan,
}

pub(crate) fn parse_role(raw: String) -> Result<Role, StoreError> {
    raw.parse().map_err(corrupt)
}

pub(crate) fn parse_plan(raw: String) -> Result<Plan, StoreError> {
    raw.parse().map_err(corrupt)
}

impl Store {
    pub(crate) async fn platform_read(&self) -> Result<Conn, StoreError> {
        self.platform(false).await
    }

    pub(crate) async fn platform_write(&self) -> Result<Conn, StoreError> {
        self.platform(true).await
    }

    pub(crate) async fn platform(&self, write: bool) -> Result<Conn, StoreError> {
        let e = StoreError::from_sqlx;
        Ok(match &*self.0 {
            Backend::Sqlite { writes, .. } if write => Conn::sqlite_write(writes).await?,
            Backend::Sqlite { readers, .. } => Conn::sqlite_read(readers.begin().await.map_err(e)?),
            Backend::Postgres { pool, .. } => Conn::Pg(pool.begin().await.map_err(e)?),
        })
    }

    /// Creates an organization, its first workspace, the owner user (unless one with that email
    /// exists) and the owner membership, atomically.
    pub async fn create_org(
        &self,
        name: &str,
        plan: Plan,
        owner_email: &Email,
        now: DateTime<Utc>,
        event: Option<NewEvent>,
    ) -> Result<CreatedOrg, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let (org_id, workspace_id) = insert_org(&mut c, name, plan, now).await?;
        let user_id = upsert_user(&mut c, owner_email, now).await?;
        insert_membership(&mut c, workspace_id, user_id, Role::Owner, now).await?;
        bind_org(&mut c, org_id).await?;
        crate::audit::create_head(&mut c, org_id).await?;
        if let Some(mut event) = event {
            event.workspace = Some(workspace_id);
            event.target.get_or_insert_with(|| org_id.to_string());
            crate::audit::append_on(&mut c, org_id, event, now).await?;
        }
        c.commit().await?;
        Ok(CreatedOrg {
            org_id,
            workspace_id,
            user_id,
        })
    }

    /// Changes an organization's plan (an operator action, recorded in its ledger).
    pub async fn set_plan(
        &self,
        org: OrgId,
        plan: Plan,
        now: DateTime<Utc>,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE organizations SET plan = $1 WHERE id = $2",
            plan.as_str(),
            org.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::NotFound("organization"));
        }
        if let Some(mut event) = event {
            event.target.get_or_insert_with(|| org.to_string());
            append_in_platform(&mut c, org, event, now).await?;
        }
        c.commit().await
    }

    /// Sets whether the organization requires two-factor authentication of its members, and
    /// records `event` in its ledger, atomically.
    pub async fn set_require_2fa(
        &self,
        org: OrgId,
        required: bool,
        now: DateTime<Utc>,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE organizations SET require_2fa = $1 WHERE id = $2",
            required,
            org.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::NotFound("organization"));
        }
        if let Some(mut event) = event {
            event.target.get_or_insert_with(|| org.to_string());
            append_in_platform(&mut c, org, event, now).await?;
        }
        c.commit().await
    }

    /// Adds a workspace to an existing organization.
    pub async fn create_workspace(
        &self,
        org: OrgId,
        name: &str,
        now: DateTime<Utc>,
        event: Option<NewEvent>,
    ) -> Result<WorkspaceId, StoreError> {
        let mut c = self.platform(true).await?;
        let ws = WorkspaceId::generate();
        execute!(
            &mut c,
            "INSERT INTO workspaces (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
            ws.to_string(),
            org.to_string(),
            name,
            db_time(now)
        )
        .map_err(|e| match StoreError::from_sqlx(e) {
            StoreError::BadReference => StoreError::NotFound("organization"),
            other => other,
        })?;
        if let Some(mut event) = event {
            event.workspace = Some(ws);
            event.target.get_or_insert_with(|| ws.to_string());
            append_in_platform(&mut c, org, event, now).await?;
        }
        c.commit().await?;
        Ok(ws)
    }

    /// Gives the user with `email` (created if new) `role` in `workspace`.
    pub async fn add_member(
        &self,
        workspace: WorkspaceId,
        email: &Email,
        role: Role,
        now: DateTime<Utc>,
        event: Option<NewEvent>,
    ) -> Result<(UserId, MembershipId), StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let Some((org, _)) = workspace_row(&mut c, workspace).await? else {
            return Err(StoreError::NotFound("workspace"));
        };
        let user = upsert_user(&mut c, email, now).await?;
        let membership = insert_membership(&mut c, workspace, user, role, now).await?;
        if let Some(mut event) = event {
            event.workspace = Some(workspace);
            event.target.get_or_insert_with(|| user.to_string());
            append_in_platform(&mut c, org, event, now).await?;
        }
        c.commit().await?;
        Ok((user, membership))
    }

    /// The organization and plan owning a workspace, if the workspace exists.
    pub async fn workspace_org(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<(OrgId, Plan)>, StoreError> {
        let mut c = self.platform(false).await?;
        workspace_row(&mut c, workspace).await
    }

    /// A user's membership of a workspace, if any.
    pub async fn membership(
        &self,
        user: UserId,
        workspace: WorkspaceId,
    ) -> Result<Option<Membership>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            "SELECT m.role, w.org_id, o.plan FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id JOIN organizations o ON o.id = w.org_id \
             WHERE m.user_id = $1 AND m.workspace_id = $2",
            [user.to_string(), workspace.to_string()],
            |r| Ok(Membership {
                org: id(r.try_get("org_id").map_err(StoreError::from_sqlx)?)?,
                workspace,
                role: parse_role(r.try_get("role").map_err(StoreError::from_sqlx)?)?,
                plan: parse_plan(r.try_get("plan").map_err(StoreError::from_sqlx)?)?,
            })
        )
    }

    /// Looks up an organization.
    pub async fn org(&self, org: OrgId) -> Result<Option<OrgSummary>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            "SELECT id, name, plan FROM organizations WHERE id = $1",
            [org.to_string()],
            |r| Ok(OrgSummary {
                id: id(r.try_get("id").map_err(StoreError::from_sqlx)?)?,
                name: r.try_get("name").map_err(StoreError::from_sqlx)?,
                plan: parse_plan(r.try_get("plan").map_err(StoreError::from_sqlx)?)?,
            })
        )
    }
}

/// Inserts an organization and its first workspace, both named `name`.
pub(crate) async fn insert_org(
    c: &mut Conn,
    name: &str,
    plan: Plan,
    now: DateTime<Utc>,
) -> Result<(OrgId, WorkspaceId), StoreError> {
    let (org, workspace) = (OrgId::generate(), WorkspaceId::generate());
    execute!(
        &mut *c,
        "INSERT INTO organizations (id, name, plan, created_at) VALUES ($1, $2, $3, $4)",
        org.to_string(),
        name,
        plan.as_str(),
        now
    )
    .map_err(StoreError::from_sqlx)?;
    execute!(
        c,
        "INSERT INTO workspaces (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
        workspace.to_string(),
        org.to_string(),
        name,
        now
    )
    .map_err(StoreError::from_sqlx)?;
    Ok((org, workspace))
}

/// Binds a platform transaction to `org`'s ledger (PostgreSQL row-level security).
pub(crate) async fn bind_org(c: &mut Conn, org: OrgId) -> Result<(), StoreError> {
    if let Conn::Pg(tx) = c {
        sqlx::query("SELECT set_config('rampart.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

/// Records an operator's platform change in the same transaction as the change.
pub(crate) async fn append_in_platform(
    c: &mut Conn,
    org: OrgId,
    event: NewEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    bind_org(c, org).await?;
    crate::audit::append_on(c, org, event, now).await
}

pub(crate) async fn workspace_row(
    c: &mut Conn,
    workspace: WorkspaceId,
) -> Result<Option<(OrgId, Plan)>, StoreError> {
    fetch_optional!(
        c,
        "SELECT w.org_id, o.plan FROM workspaces w JOIN organizations o ON o.id = w.org_id WHERE w.id = $1",
        [workspace.to_string()],
        |r| Ok((
            id(r.try_get("org_id").map_err(StoreError::from_sqlx)?)?,
            parse_plan(r.try_get("plan").map_err(StoreError::from_sqlx)?)?,
        ))
    )
}

async fn upsert_user(
    c: &mut Conn,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<UserId, StoreError> {
    let existing: Option<UserId> = fetch_optional!(
        &mut *c,
        "SELECT id FROM users WHERE email_lower = $1",
        [email.normalized()],
        |r| id(r.try_get("id").map_err(StoreError::from_sqlx)?)
    )?;
    if let Some(user) = existing {
        return Ok(user);
    }
    let user = UserId::generate();
    execute!(
        c,
        "INSERT INTO users (id, email, email_lower, created_at) VALUES ($1, $2, $3, $4)",
        user.to_string(),
        email.as_str(),
        email.normalized(),
        now
    )
    .map_err(|e| StoreError::classify(e, "a user with this email already exists"))?;
    Ok(user)
}

pub(crate) async fn insert_membership(
    c: &mut Conn,
    workspace: WorkspaceId,
    user: UserId,
    role: Role,
    now: DateTime<Utc>,
) -> Result<MembershipId, StoreError> {
    let membership = MembershipId::generate();
    execute!(c, "INSERT INTO memberships (id, workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        membership.to_string(), workspace.to_string(), user.to_string(), role.as_str(), now)
    .map_err(|e| StoreError::classify(e, "this user is already a member of the workspace"))?;
    Ok(membership)
}
