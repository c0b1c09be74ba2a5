//! Operator commands about people: `rampart admin reset-2fa`, for someone who lost their
//! authenticator and their backup codes.

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};
use rampart_core::Email;
use rampart_jobs::Queue;
use rampart_jobs::kinds::account_mail::{AccountMail, AccountMailKind};
use rampart_store::Store;
use rampart_store::audit::NewEvent;
use serde_json::{Value, json};

/// Arguments of `admin reset-2fa`.
#[derive(Debug, clap::Args)]
pub struct ResetTwoFactor {
    /// The person's email address.
    #[arg(long)]
    pub email: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Turns the person's second factor off (secret and every backup code deleted), ends every
/// session, records `event` in the ledger of each of their organizations, and queues a mail to
/// them. The operator is expected to have checked who is asking (ASVS V6.4.4) before running it.
pub async fn reset_two_factor(
    store: &Store,
    queue: &Queue,
    args: &ResetTwoFactor,
    now: DateTime<Utc>,
    event: NewEvent,
) -> Result<Value> {
    let email = Email::parse(&args.email).map_err(|e| anyhow!("--email {e}"))?;
    let user = store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| anyhow!("no user has the email {}", email.as_str()))?;
    store.disable_totp(user.id).await?;
    let ended = store
        .end_user_sessions(user.id, None, "second_factor_reset", now)
        .await?;
    let mut event = event;
    event.args = rampart_audit::redact::redact_args(
        json!({"totp_was_on": user.totp_enabled, "sessions_ended": ended})
            .to_string()
            .as_bytes(),
    );
    store.record_for_user(user.id, &event, now).await?;
    // The reset stands whatever becomes of the mail; the worker (in `serve`, or `rampart
    // worker`) sends it, retrying through an SMTP outage.
    let job = queue
        .enqueue(&AccountMail {
            user: user.id,
            mail: AccountMailKind::TwoFactorReset,
        })
        .await?;
    Ok(json!({
        "user_id": user.id,
        "totp_was_on": user.totp_enabled,
        "sessions_ended": ended,
        "mail_job": job,
    }))
}
