//! Operator commands about people: `rampart admin reset-2fa`, for someone who lost their
//! authenticator and their backup codes.

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};
use rampart_core::Email;
use rampart_store::Store;
use rampart_store::audit::NewEvent;
use serde_json::{Value, json};

use crate::auth::mail::{Mail, Mailer};

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
/// session, records `event` in the ledger of each of their organizations, and mails them. The
/// operator is expected to have checked who is asking (ASVS V6.4.4) before running it.
pub async fn reset_two_factor(
    store: &Store,
    mailer: &Mailer,
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
    let mail = Mail {
        to: user.email.clone(),
        subject: "Your two-factor authentication was reset".to_owned(),
        body: "An operator turned two-factor authentication off for your Rampart account and \
               signed out every session, at your request. Sign in with your password and turn it \
               on again. If you did not ask for this, contact your administrator now.\n"
            .to_owned(),
    };
    // The reset stands even if the mail cannot go; the operator is told.
    let mailed = match mailer.send(&mail).await {
        Ok(()) => true,
        Err(e) => {
            eprintln!("warning: the reset is done, but the notification mail failed: {e}");
            false
        }
    };
    Ok(json!({
        "user_id": user.id,
        "totp_was_on": user.totp_enabled,
        "sessions_ended": ended,
        "mailed": mailed,
    }))
}
