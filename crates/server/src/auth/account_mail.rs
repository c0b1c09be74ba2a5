//! Account mail as the `auth.mail` job ([`rampart_jobs::kinds::account_mail`]): a request
//! enqueues the person's id and the kind of mail; the worker reads the current address, writes
//! the text, mints a link's token when the mail carries one, and hands the message to the
//! transport. A transport failure that may pass is retried with backoff, so an SMTP outage
//! delays mail and loses none; a refusal for good (an SMTP 5xx) leaves the job dead for an
//! operator (`rampart jobs list --state dead`, `rampart jobs retry ID`).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rampart_core::{Clock, Secret, UserId};
use rampart_jobs::kinds::account_mail::{AccountMail, AccountMailKind};
use rampart_jobs::{Handler, JobError, Queue, QueueError, RunInfo};
use rampart_store::Store;
use rampart_store::identity::{LockScope, TokenPurpose, UserAuth};

use super::Identity;
use super::mail::{Mail, MailError};
use super::token;

/// Queues `mail` for `user`; it is written and sent by a worker (in `serve`, or `rampart
/// worker`).
pub async fn enqueue(queue: &Queue, user: UserId, mail: AccountMailKind) -> Result<(), QueueError> {
    queue.enqueue(&AccountMail { user, mail }).await.map(|_| ())
}

/// Runs `auth.mail` jobs with the server's identity settings, transport and public URL.
pub struct AccountMailHandler {
    store: Store,
    identity: Identity,
    clock: Arc<dyn Clock>,
}

impl AccountMailHandler {
    /// A handler over `store`, mailing with `identity`'s transport and settings.
    pub fn new(store: Store, identity: Identity, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            identity,
            clock,
        }
    }

    /// The link `{public_url}{path}?token=…` with a fresh single-use token for `user`, stored
    /// hashed with its lifetime; and that lifetime in minutes.
    async fn link(
        &self,
        user: &UserAuth,
        purpose: TokenPurpose,
        browser_hash: Option<&str>,
    ) -> Result<(String, i64), JobError> {
        let settings = self.identity.settings();
        let (lifetime, path) = match purpose {
            TokenPurpose::Confirm => (Duration::hours(settings.confirm_hours), "/auth/confirm"),
            TokenPurpose::Reset => (Duration::minutes(settings.reset_minutes), "/auth/reset"),
            TokenPurpose::MagicLink => (
                Duration::minutes(settings.magic_link_minutes),
                "/auth/magic",
            ),
        };
        let minted =
            token::mint().map_err(|_| JobError::retry("the OS random generator failed"))?;
        let now = self.clock.now();
        self.store
            .create_auth_token(
                user.id,
                purpose,
                &minted.hash,
                browser_hash,
                now,
                now + lifetime,
            )
            .await
            .map_err(|e| JobError::retry(format!("storing the link's token failed: {e}")))?;
        Ok((
            link_text(self.identity.public_url(), path, &minted.token),
            lifetime.num_minutes(),
        ))
    }

    /// The message for `user`, minting a token when it carries a link.
    async fn compose(&self, user: &UserAuth, kind: &AccountMailKind) -> Result<Mail, JobError> {
        let url = self.identity.public_url();
        let (subject, body) = match kind {
            AccountMailKind::ConfirmEmail => {
                let (link, minutes) = self.link(user, TokenPurpose::Confirm, None).await?;
                (
                    "Confirm your email address",
                    link_body("confirm your email address", &link, minutes),
                )
            }
            AccountMailKind::PasswordReset => {
                let (link, minutes) = self.link(user, TokenPurpose::Reset, None).await?;
                (
                    "Reset your password",
                    link_body("choose a new password", &link, minutes),
                )
            }
            AccountMailKind::MagicLink { browser_hash } => {
                let (link, minutes) = self
                    .link(user, TokenPurpose::MagicLink, browser_hash.as_deref())
                    .await?;
                ("Your sign-in link", link_body("sign in", &link, minutes))
            }
            AccountMailKind::PasswordChanged => (
                "Your password was changed",
                "Your Rampart password was just changed. If this was not you, reset it now and \
                 contact your administrator.\n"
                    .to_owned(),
            ),
            AccountMailKind::TwoFactorEnabled => (
                "Two-factor authentication was turned on",
                "Two-factor authentication was just turned on for your Rampart account, and every \
                 other session was signed out. If this was not you, reset your password now and \
                 contact your administrator.\n"
                    .to_owned(),
            ),
            AccountMailKind::TwoFactorDisabled => (
                "Two-factor authentication was turned off",
                "Two-factor authentication was just turned off for your Rampart account. If this \
                 was not you, reset your password now.\n"
                    .to_owned(),
            ),
            AccountMailKind::TwoFactorReset => (
                "Your two-factor authentication was reset",
                "An operator turned two-factor authentication off for your Rampart account and \
                 signed out every session, at your request. Sign in with your password and turn \
                 it on again. If you did not ask for this, contact your administrator now.\n"
                    .to_owned(),
            ),
            AccountMailKind::AlreadyRegistered => (
                "You already have an account",
                format!(
                    "Someone tried to sign up with this address, which already has an account.\n\
                     Sign in at {url}, or reset your password at {url}/auth/reset.\n"
                ),
            ),
            AccountMailKind::PasswordLocked {
                scope,
                failed,
                until,
            } => (
                "Your account was locked",
                locked_body(url, *scope, *failed, *until),
            ),
            AccountMailKind::SecondFactorLocked { failed, until } => (
                "Two-factor sign-in to your account was locked",
                format!(
                    "Someone who knows your password entered {failed} wrong two-factor codes. \
                     Two-factor sign-in is locked until {} UTC. Change your password now at \
                     {url}/auth/reset.\n",
                    until.format("%Y-%m-%d %H:%M"),
                ),
            ),
        };
        Ok(Mail {
            to: user.email.clone(),
            subject: subject.to_owned(),
            body,
        })
    }
}

impl Handler<AccountMail> for AccountMailHandler {
    async fn handle(&self, job: AccountMail, run: RunInfo) -> Result<(), JobError> {
        let user = self
            .store
            .user_auth(job.user)
            .await
            .map_err(|e| JobError::retry(format!("reading the recipient failed: {e}")))?;
        let Some(user) = user else {
            // Deleted since: nobody to write to, and nothing to retry.
            tracing::info!(job = %run.id, user = %job.user, "account mail dropped: the user no longer exists");
            return Ok(());
        };
        if user.disabled_at.is_some() && carries_link(&job.mail) {
            tracing::info!(job = %run.id, user = %job.user, "account mail dropped: a disabled account gets no links");
            return Ok(());
        }
        let mail = self.compose(&user, &job.mail).await?;
        self.identity
            .mailer()
            .send(&mail)
            .await
            .map_err(|e| match e {
                MailError::Transient(_) => JobError::retry(e.to_string()),
                MailError::Refused(_)
                | MailError::BadAddress
                | MailError::Build
                | MailError::BadTransport
                | MailError::Setup(_)
                | MailError::Unconfigured => JobError::permanent(e.to_string()),
            })
    }
}

/// Whether the mail signs someone in or changes the account when followed.
fn carries_link(kind: &AccountMailKind) -> bool {
    matches!(
        kind,
        AccountMailKind::ConfirmEmail
            | AccountMailKind::PasswordReset
            | AccountMailKind::MagicLink { .. }
    )
}

fn link_text(public_url: &str, path: &str, token: &Secret<String>) -> String {
    format!("{public_url}{path}?token={}", token.expose())
}

fn link_body(what: &str, link: &str, minutes: i64) -> String {
    format!(
        "Follow this link to {what}. It works once and expires in {minutes} minutes.\n\n{link}\n\n\
         If you did not ask for this, ignore this message.\n"
    )
}

fn locked_body(url: &str, scope: LockScope, failed: u32, until: DateTime<Utc>) -> String {
    let when = until.format("%Y-%m-%d %H:%M");
    match scope {
        LockScope::Source => format!(
            "After {failed} failed sign-in attempts from one network address, password sign-in to \
             your account from there is locked until {when} UTC. You can still sign in from \
             elsewhere, or with a sign-in link ({url}/auth/magic).\n\
             If this was not you, reset your password at {url}/auth/reset.\n"
        ),
        LockScope::Account => format!(
            "After {failed} failed sign-in attempts from many network addresses, password \
             sign-in to your account is locked until {when} UTC. You can still sign in with a \
             sign-in link ({url}/auth/magic).\n\
             If this was not you, reset your password at {url}/auth/reset.\n"
        ),
    }
}
