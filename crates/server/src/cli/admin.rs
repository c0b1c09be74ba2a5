//! `rampart admin`: organizations, workspaces, API keys, members and users, each change in
//! the ledger of the organization it touches, attributed to the operator.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use rampart_core::{Clock, Email, OperatorGrant, OrgId, Plan, Role, SystemClock, WorkspaceId};
use rampart_crypto::NewApiKey;
use rampart_store::audit;
use rampart_store::{KeyScope, Mode, Store, Vault, api_keys};
use serde_json::json;

use super::open::{close, open_with_vault};
use super::output::{JsonFlag, emit, plan_parser, role_parser};
use super::{identity, operator_event, org};
use crate::config::Settings;

/// The admin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Admin {
    /// Create an organization with its first workspace and owner.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        /// The plan (free allows 100 requests a day; `set-plan` changes it later).
        #[arg(long, default_value = "free", value_parser = plan_parser())]
        plan: Plan,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Add a workspace to an organization.
    CreateWorkspace {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Mint an API key (the secret is printed once).
    CreateApiKey {
        #[arg(long)]
        workspace: WorkspaceId,
        #[arg(long, value_parser = role_parser())]
        role: Role,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Change an organization's settings: `--require-2fa true` makes every member without
    /// two-factor authentication enrol before reaching anything else.
    SetOrg {
        #[arg(long)]
        org: OrgId,
        #[arg(long = "require-2fa")]
        require_2fa: Option<bool>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Change an organization's plan (takes effect on every node within the key-cache TTL).
    SetPlan {
        #[arg(long)]
        org: OrgId,
        #[arg(long, value_parser = plan_parser())]
        plan: Plan,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Disable a user (every session ends, sign-in is refused) or, with `--enable`, enable again.
    DisableUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Set a user's password hash imported from another system (argon2id PHC or bcrypt
    /// `$2a$/$2b$/$2y$`), read from a file so it stays out of shell history; bcrypt hashes are
    /// replaced by argon2id at the next sign-in. `--confirmed` marks the email confirmed.
    ImportPasswordHash {
        #[arg(long)]
        email: String,
        #[arg(long)]
        hash_file: PathBuf,
        #[arg(long)]
        confirmed: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Give a user (created if new) a role in a workspace.
    AddMember {
        #[arg(long)]
        workspace: WorkspaceId,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = role_parser())]
        role: Role,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete an organization now: destroy its data key (crypto-erasure) and its rows.
    DeleteOrg(org::DeleteOrg),
    /// Turn a person's two-factor authentication off (secret and backup codes deleted), end
    /// every session and queue a mail to them; audited in each of their organizations.
    #[command(name = "reset-2fa")]
    ResetTwoFactor(identity::ResetTwoFactor),
}

/// Runs one admin subcommand.
pub async fn run(settings: &Settings, cmd: Admin) -> Result<()> {
    let (store, vault) = open_with_vault(settings).await?;
    let now = SystemClock.now();
    let result = admin_on(&store, &vault, now, cmd).await;
    close(store, vault).await;
    result
}

async fn admin_on(store: &Store, vault: &Vault, now: DateTime<Utc>, cmd: Admin) -> Result<()> {
    match cmd {
        Admin::ResetTwoFactor(args) => {
            let event = operator_event("admin reset-2fa", "user.reset_2fa", json!({}));
            let queue = rampart_jobs::Queue::new(store.clone(), std::sync::Arc::new(SystemClock));
            let done = identity::reset_two_factor(store, &queue, &args, now, event).await?;
            emit(
                args.json,
                done.clone(),
                format!(
                    "two-factor authentication is off for {}; {} session(s) ended",
                    args.email, done["sessions_ended"]
                ),
            );
        }
        Admin::DeleteOrg(args) => {
            let event = operator_event("admin delete-org", "org.delete", json!({"org": args.org}));
            let done = org::delete_org(store, vault, &args, now, event).await?;
            emit(
                args.json,
                done.clone(),
                format!(
                    "deleted organization {}: its data key is destroyed and its rows removed ({done})",
                    args.org
                ),
            );
        }
        Admin::CreateOrg {
            name,
            owner_email,
            plan,
            out,
        } => {
            let name = non_empty(&name, "--name")?;
            let email = Email::parse(&owner_email).map_err(|e| anyhow!("--owner-email {e}"))?;
            let event = operator_event(
                "admin create-org",
                "org.create",
                json!({"name": name, "plan": plan, "owner_email": email.as_str()}),
            );
            let made = store
                .create_org(name, plan, &email, now, Some(event))
                .await?;
            vault.ensure_key(KeyScope::Org(made.org_id)).await?;
            emit(
                out.json,
                serde_json::to_value(made)?,
                format!(
                    "created organization {} with workspace {} and owner {}{}",
                    made.org_id,
                    made.workspace_id,
                    made.user_id,
                    if plan == Plan::Free {
                        "\nIt is on the free plan: 100 requests a day. For a self-hosted install without \
                         quotas: rampart admin set-plan --org ORG --plan enterprise"
                    } else {
                        ""
                    }
                ),
            );
        }
        Admin::CreateWorkspace { org, name, out } => {
            let name = non_empty(&name, "--name")?;
            let event = operator_event(
                "admin create-workspace",
                "workspace.create",
                json!({"org": org, "name": name}),
            );
            let ws = store.create_workspace(org, name, now, Some(event)).await?;
            emit(
                out.json,
                json!({"workspace_id": ws, "org_id": org}),
                format!("created workspace {ws} in {org}"),
            );
        }
        Admin::CreateApiKey {
            workspace,
            role,
            name,
            out,
        } => {
            let name = non_empty(&name, "--name")?;
            let Some((org, _plan)) = store.workspace_org(workspace).await? else {
                bail!("workspace {workspace} not found");
            };
            let minted = NewApiKey::generate(workspace)?;
            let grant = OperatorGrant::new(org).in_workspace(workspace);
            let mut tx = store.tenant(&grant, Mode::Write).await?;
            let record = api_keys::create(
                &mut tx,
                name,
                role,
                &minted.hash,
                &minted.display_prefix,
                now,
            )
            .await?;
            let mut event = operator_event(
                "admin create-api-key",
                "api_key.create",
                json!({"name": name, "role": role}),
            );
            event.workspace = Some(workspace);
            event.target = Some(record.id.to_string());
            audit::append(&mut tx, event, now).await?;
            tx.commit().await?;
            emit(
                out.json,
                json!({"id": record.id, "key": minted.token.expose(), "prefix": record.prefix, "name": record.name,
                       "role": record.role, "workspace_id": workspace}),
                format!(
                    "created API key {} ({role}) for {workspace}:\n\n    {}\n\nIt is shown only this once.",
                    record.id,
                    minted.token.expose()
                ),
            );
        }
        Admin::SetOrg {
            org,
            require_2fa,
            out,
        } => {
            let Some(required) = require_2fa else {
                bail!("nothing to change: pass --require-2fa true|false");
            };
            let event = operator_event(
                "admin set-org",
                "org.update",
                json!({"org": org, "require_2fa": required}),
            );
            store
                .set_require_2fa(org, required, now, Some(event))
                .await?;
            emit(
                out.json,
                json!({"org_id": org, "require_2fa": required}),
                if required {
                    format!("{org} now requires two-factor authentication of its members")
                } else {
                    format!("{org} no longer requires two-factor authentication")
                },
            );
        }
        Admin::SetPlan { org, plan, out } => {
            let event = operator_event(
                "admin set-plan",
                "org.set_plan",
                json!({"org": org, "plan": plan}),
            );
            store.set_plan(org, plan, now, Some(event)).await?;
            emit(
                out.json,
                json!({"org_id": org, "plan": plan}),
                format!("{org} is now on the {plan} plan"),
            );
        }
        Admin::AddMember {
            workspace,
            email,
            role,
            out,
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow!("--email {e}"))?;
            let event = operator_event(
                "admin add-member",
                "member.add",
                json!({"email": email.as_str(), "role": role}),
            );
            let (user, membership) = store
                .add_member(workspace, &email, role, now, Some(event))
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "membership_id": membership, "workspace_id": workspace, "role": role}),
                format!("{user} is now {role} in {workspace}"),
            );
        }
        Admin::DisableUser { email, enable, out } => {
            let user = user_by_email(store, &email).await?;
            let ended = store.set_user_disabled(user, !enable, now).await?;
            let action = if enable {
                "user.enable"
            } else {
                "user.disable"
            };
            store
                .record_for_user(
                    user,
                    &operator_event(
                        "admin disable-user",
                        action,
                        json!({"sessions_ended": ended}),
                    ),
                    now,
                )
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "disabled": !enable, "sessions_ended": ended}),
                if enable {
                    format!("{user} can sign in again")
                } else {
                    format!("{user} is disabled; {ended} session(s) ended")
                },
            );
        }
        Admin::ImportPasswordHash {
            email,
            hash_file,
            confirmed,
            out,
        } => {
            let user = user_by_email(store, &email).await?;
            let hash = std::fs::read_to_string(&hash_file)
                .with_context(|| format!("reading {}", hash_file.display()))?;
            let hash = hash.trim();
            let known = ["$argon2id$", "$2a$", "$2b$", "$2y$"];
            if !known.iter().any(|p| hash.starts_with(p)) {
                bail!(
                    "--hash-file must hold an argon2id PHC string or a bcrypt hash ($2a$, $2b$, $2y$)"
                );
            }
            store
                .import_password_hash(user, hash, confirmed, now)
                .await?;
            store
                .record_for_user(
                    user,
                    &operator_event(
                        "admin import-password-hash",
                        "user.password_import",
                        json!({}),
                    ),
                    now,
                )
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "imported": true}),
                format!("password hash set for {user}"),
            );
        }
    }
    Ok(())
}

async fn user_by_email(store: &Store, email: &str) -> Result<rampart_core::UserId> {
    let email = Email::parse(email).map_err(|e| anyhow!("--email {e}"))?;
    Ok(store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| anyhow!("no user has the email {}", email.as_str()))?
        .id)
}

fn non_empty<'a>(value: &'a str, flag: &str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 200 {
        bail!("{flag} must be 1 to 200 characters");
    }
    Ok(v)
}
