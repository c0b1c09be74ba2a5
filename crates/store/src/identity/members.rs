//! Workspace members and invitations. Changes run inside the caller's tenant transaction, so
//! they commit with their audit event; every query is pinned to the transaction's workspace.

use chrono::{DateTime, Utc};
use rampart_core::{Email, InvitationId, MembershipId, OrgId, Role, UserId, WorkspaceId};
use serde::Serialize;
use sqlx::Row;

use crate::conn::{execute, fetch_all, fetch_optional, id};
use crate::platform::{insert_membership, parse_role};
use crate::{Store, StoreError, TenantTx, db_time};

/// One member of a workspace.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// The membership id (what member routes take).
    pub id: MembershipId,
    /// The user.
    pub user_id: UserId,
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: Option<String>,
    /// Their role here.
    pub role: Role,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// An invitation as listed (the token is never stored).
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    /// Id.
    pub id: InvitationId,
    /// Invited address.
    pub email: String,
    /// Role on acceptance.
    pub role: Role,
    /// Who invited (`usr_…` or `key_…`).
    pub invited_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Valid until.
    pub expires_at: DateTime<Utc>,
}

/// An invitation to store.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    /// Address.
    pub email: &'a Email,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub token_hash: &'a str,
    /// Inviter label.
    pub invited_by: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

const MEMBER_COLUMNS: &str = "m.id, m.user_id, u.email, u.name, m.role, m.created_at";

macro_rules! member {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(Member {
            id: id(r.try_get("id").map_err(e)?)?,
            user_id: id(r.try_get("user_id").map_err(e)?)?,
            email: r.try_get("email").map_err(e)?,
            name: r.try_get("name").map_err(e)?,
            role: parse_role(r.try_get("role").map_err(e)?)?,
            created_at: r.try_get("created_at").map_err(e)?,
        })
    }};
}

/// The workspace's members, oldest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Member>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 ORDER BY m.id"
        )),
        [ws],
        |r| member!(r)
    )
}

/// One member of this workspace.
pub async fn get(tx: &mut TenantTx, member: MembershipId) -> Result<Option<Member>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND m.id = $2"
        )),
        [ws, member.to_string()],
        |r| member!(r)
    )
}

async fn owners_left(tx: &mut TenantTx, excluding: MembershipId) -> Result<i64, StoreError> {
    let ws = tx.ws();
    let n = fetch_optional!(
        &mut tx.conn,
        "SELECT COUNT(*) AS n FROM memberships WHERE workspace_id = $1 AND role = 'owner' AND id <> $2",
        [ws, excluding.to_string()],
        |r| r.try_get::<i64, _>("n").map_err(StoreError::from_sqlx)
    )?;
    Ok(n.unwrap_or(0))
}

/// Changes a member's role. Refuses to leave the workspace without an owner.
pub async fn set_role(
    tx: &mut TenantTx,
    member: MembershipId,
    role: Role,
) -> Result<Member, StoreError> {
    let current = get(tx, member)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if current.role == Role::Owner && role != Role::Owner && owners_left(tx, member).await? == 0 {
        return Err(StoreError::Conflict(
            "the workspace would have no owner; make someone else owner first",
        ));
    }
    let ws = tx.ws();
    execute!(
        &mut tx.conn,
        "UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND id = $2",
        ws,
        member.to_string(),
        role.as_str()
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(Member { role, ..current })
}

/// Removes a member. Refuses to remove the last owner.
pub async fn remove(tx: &mut TenantTx, member: MembershipId) -> Result<Member, StoreError> {
    let current = get(tx, member)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if current.role == Role::Owner && owners_left(tx, member).await? == 0 {
        return Err(StoreError::Conflict(
            "the workspace would have no owner; make someone else owner first",
        ));
    }
    let ws = tx.ws();
    execute!(
        &mut tx.conn,
        "DELETE FROM memberships WHERE workspace_id = $1 AND id = $2",
        ws,
        member.to_string()
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(current)
}

/// Stores an invitation; an open invitation for the same address in this workspace is
/// replaced, so only the newest link works.
pub async fn invite(
    tx: &mut TenantTx,
    new: &NewInvitation<'_>,
    now: DateTime<Utc>,
) -> Result<Invitation, StoreError> {
    let ws = tx.ws();
    let now = db_time(now);
    let already: Option<String> = fetch_optional!(
        &mut tx.conn,
        "SELECT m.id FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND u.email_lower = $2",
        [ws.clone(), new.email.normalized()],
        |r| r.try_get::<String, _>("id").map_err(StoreError::from_sqlx)
    )?;
    if already.is_some() {
        return Err(StoreError::Conflict(
            "this person is already a member of the workspace",
        ));
    }
    execute!(
        &mut tx.conn,
        "UPDATE invitations SET revoked_at = $3 WHERE workspace_id = $1 AND email_lower = $2 \
         AND accepted_at IS NULL AND revoked_at IS NULL",
        ws.clone(),
        new.email.normalized(),
        now
    )
    .map_err(StoreError::from_sqlx)?;
    let inv = InvitationId::generate();
    execute!(
        &mut tx.conn,
        "INSERT INTO invitations (id, workspace_id, email, email_lower, role, token_hash, invited_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        inv.to_string(),
        ws,
        new.email.as_str(),
        new.email.normalized(),
        new.role.as_str(),
        new.token_hash,
        new.invited_by.as_str(),
        now,
        db_time(new.expires_at)
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(Invitation {
        id: inv,
        email: new.email.as_str().to_owned(),
        role: new.role,
        invited_by: new.invited_by.clone(),
        created_at: now,
        expires_at: db_time(new.expires_at),
    })
}

/// Reads an `invitations` row (`id, email, role, invited_by, created_at, expires_at`) into an
/// [`Invitation`]; a macro because each backend's row is its own type.
macro_rules! invitation {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(Invitation {
            id: id(r.try_get("id").map_err(e)?)?,
            email: r.try_get("email").map_err(e)?,
            role: parse_role(r.try_get("role").map_err(e)?)?,
            invited_by: r.try_get("invited_by").map_err(e)?,
            created_at: r.try_get("created_at").map_err(e)?,
            expires_at: r.try_get("expires_at").map_err(e)?,
        })
    }};
}

/// Open invitations of this workspace.
pub async fn invitations(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
) -> Result<Vec<Invitation>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        "SELECT id, email, role, invited_by, created_at, expires_at FROM invitations \
         WHERE workspace_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 ORDER BY id",
        [ws, db_time(now)],
        |r| invitation!(r)
    )
}

/// An open invitation of this workspace: not accepted, revoked or expired at `now`.
pub async fn open_invitation(
    tx: &mut TenantTx,
    invitation: InvitationId,
    now: DateTime<Utc>,
) -> Result<Option<Invitation>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        "SELECT id, email, role, invited_by, created_at, expires_at FROM invitations \
         WHERE workspace_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        [ws, invitation.to_string(), db_time(now)],
        |r| invitation!(r)
    )
}

/// Revokes an open invitation of this workspace (its link stops working); false when there is
/// no open invitation with that id.
pub async fn revoke_invitation(
    tx: &mut TenantTx,
    invitation: InvitationId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let ws = tx.ws();
    let n = execute!(
        &mut tx.conn,
        "UPDATE invitations SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 \
         AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        ws,
        invitation.to_string(),
        db_time(now)
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(n == 1)
}

/// What accepting an invitation produced.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The user who joined (created if new).
    pub user: UserId,
    /// Whether this acceptance set the account's password: a new address, or one whose earlier
    /// sign-up was never confirmed (and was cleared).
    pub new_user: bool,
    /// The organization.
    pub org: OrgId,
    /// The workspace joined.
    pub workspace: WorkspaceId,
    /// The membership.
    pub membership: MembershipId,
    /// The role.
    pub role: Role,
}

impl Store {
    /// Accepts an open invitation of `workspace` by its token hash: the invited address's user
    /// (created with `new_password_hash`, confirmed by the token, when there is none) joins with
    /// the role. Runs bound to the workspace (invitations are under row-level security; the
    /// workspace comes from the token itself, like an API key's). The event is recorded in the
    /// workspace's ledger in the same transaction.
    pub async fn accept_invitation(
        &self,
        workspace: WorkspaceId,
        token_hash: &str,
        name: Option<&str>,
        new_password_hash: Option<&str>,
        now: DateTime<Utc>,
        event: crate::audit::NewEvent,
    ) -> Result<Option<Accepted>, StoreError> {
        let now = db_time(now);
        let Some((org, _)) = self.workspace_org(workspace).await? else {
            return Ok(None);
        };
        let mut tx = self.bind(workspace, Some(org), crate::Mode::Write).await?;
        let c = &mut tx.conn;
        let row = fetch_optional!(
            &mut *c,
            "UPDATE invitations SET accepted_at = $2 WHERE token_hash = $1 AND workspace_id = $3 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING email, email_lower, role",
            [token_hash, now, workspace.to_string()],
            |r| {
                let e = StoreError::from_sqlx;
                Ok((
                    r.try_get::<String, _>("email").map_err(e)?,
                    r.try_get::<String, _>("email_lower").map_err(e)?,
                    parse_role(r.try_get("role").map_err(e)?)?,
                ))
            }
        )?;
        let Some((email, email_lower, role)) = row else {
            return Ok(None);
        };
        let existing: Option<UserId> = fetch_optional!(
            &mut *c,
            "SELECT id FROM users WHERE email_lower = $1",
            [email_lower.clone()],
            |r| id(r.try_get("id").map_err(StoreError::from_sqlx)?)
        )?;
        let (user, new_user) = match existing {
            Some(u) => {
                // The token proves the address. If it was never confirmed, whoever signed up with
                // it may not own it: their password, second factor and sessions are cleared, and
                // the password the invitee chooses is the one that counts.
                let confirmed: bool = fetch_optional!(
                    &mut *c,
                    "SELECT email_confirmed_at IS NOT NULL AS confirmed FROM users WHERE id = $1",
                    [u.to_string()],
                    |r| r
                        .try_get::<bool, _>("confirmed")
                        .map_err(StoreError::from_sqlx)
                )?
                .unwrap_or(false);
                if confirmed {
                    (u, false)
                } else {
                    let Some(hash) = new_password_hash else {
                        return Err(StoreError::NotFound("password for the new account"));
                    };
                    super::users::replace_unconfirmed(&mut *c, u, Some(hash), name, Some(now), now)
                        .await?;
                    (u, true)
                }
            }
            None => {
                let Some(hash) = new_password_hash else {
                    return Err(StoreError::NotFound("password for the new account"));
                };
                let u = UserId::generate();
                execute!(
                    &mut *c,
                    "INSERT INTO users (id, email, email_lower, name, password_hash, email_confirmed_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    u.to_string(),
                    email,
                    email_lower,
                    name,
                    hash,
                    now
                )
                .map_err(|e| StoreError::classify(e, "a user with this email already exists"))?;
                (u, true)
            }
        };
        let membership = insert_membership(&mut *c, workspace, user, role, now).await?;
        let mut event = event;
        event.workspace = Some(workspace);
        event.actor = rampart_core::Actor::User(user).into();
        event.target = Some(membership.to_string());
        crate::audit::append_on(&mut *c, org, event, now).await?;
        tx.commit().await?;
        Ok(Some(Accepted {
            user,
            new_user,
            org,
            workspace,
            membership,
            role,
        }))
    }
}

/// Ends the access to this workspace of every session the user behind `member` holds now (an
/// admin action), in this transaction: those sessions no longer count as this membership, so
/// the person signs in again to come back. Their sessions themselves, and their access to other
/// workspaces, stay: a workspace admin's authority ends at the workspace. Returns how many live
/// sessions lost their access here.
pub async fn end_sessions(
    tx: &mut TenantTx,
    member: MembershipId,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let current = get(tx, member)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    let now = db_time(now);
    let ws = tx.ws();
    execute!(
        &mut tx.conn,
        "UPDATE memberships SET sessions_revoked_before = $3 WHERE workspace_id = $1 AND id = $2",
        ws,
        member.to_string(),
        now
    )
    .map_err(StoreError::from_sqlx)?;
    let n = fetch_optional!(
        &mut tx.conn,
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1 AND ended_at IS NULL \
         AND created_at <= $2 AND idle_expires_at > $2 AND absolute_expires_at > $2",
        [current.user_id.to_string(), now],
        |r| r.try_get::<i64, _>("n").map_err(StoreError::from_sqlx)
    )?
    .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Store {
    /// A signed-in user's membership of a workspace, as a session created at
    /// `session_created_at` holds it: none when an admin ended that session's access there
    /// (the session is older than the membership's `sessions_revoked_before`).
    pub async fn session_membership(
        &self,
        user: UserId,
        workspace: WorkspaceId,
        session_created_at: DateTime<Utc>,
    ) -> Result<Option<rampart_core::Membership>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            "SELECT m.role, w.org_id, o.plan FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id JOIN organizations o ON o.id = w.org_id \
             WHERE m.user_id = $1 AND m.workspace_id = $2 \
             AND (m.sessions_revoked_before IS NULL OR m.sessions_revoked_before < $3)",
            [
                user.to_string(),
                workspace.to_string(),
                db_time(session_created_at)
            ],
            |r| Ok(rampart_core::Membership {
                org: id(r.try_get("org_id").map_err(StoreError::from_sqlx)?)?,
                workspace,
                role: parse_role(r.try_get("role").map_err(StoreError::from_sqlx)?)?,
                plan: crate::platform::parse_plan(
                    r.try_get("plan").map_err(StoreError::from_sqlx)?
                )?,
            })
        )
    }
}
