//! Account mail (confirm an address, reset a password, a sign-in link, security notices) as a
//! job, so an SMTP outage delays mail and loses none. The server is to register the handler
//! (it owns the transport, the templates and the token minting); this crate only knows the job.
//! **Not wired yet (issue 33):** no handler is registered and nothing enqueues this job; the
//! server still mails from the request (or a task it spawns after answering).
//!
//! The payload names the person and the kind of mail, never the address or a token: the
//! handler reads the current address when it runs and, for a mail carrying a link, mints the
//! single-use token then (stored hashed, as today). A mail job may run twice (at least once):
//! each run mints its own token, each valid once, which is harmless.

use rampart_core::UserId;
use rampart_store::jobs::JobSubject;
use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Which account mail to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMailKind {
    /// A link to confirm the address.
    ConfirmEmail,
    /// A link to choose a new password.
    PasswordReset,
    /// A single-use sign-in link.
    MagicLink,
    /// The password was changed.
    PasswordChanged,
    /// Two-factor authentication was turned off.
    TwoFactorDisabled,
    /// Someone tried to sign up with an address that has an account.
    AlreadyRegistered,
    /// The account was locked after failed sign-ins (the handler reads until when).
    Locked,
}

/// Send `mail` to user `user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMail {
    /// The recipient.
    pub user: UserId,
    /// Which mail.
    pub mail: AccountMailKind,
}

impl Job for AccountMail {
    const KIND: &'static str = "auth.mail";
    /// With the default backoff (10 s doubling, capped at an hour) the twelfth attempt comes
    /// at most about three and a half hours after the first (half that on average): an SMTP
    /// outage of that length delays mail, a longer one leaves it dead for an operator.
    const MAX_ATTEMPTS: u32 = 12;

    fn subject(&self) -> JobSubject {
        JobSubject::User(self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is stored: the user's id and the mail's name, nothing else.
    #[test]
    fn the_payload_holds_the_user_id_and_the_kind_of_mail_only() {
        let user = UserId::generate();
        let job = AccountMail {
            user,
            mail: AccountMailKind::PasswordReset,
        };
        let text = crate::job::payload(&job).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"user":"{user}","mail":"password_reset"}}"#)
        );
        assert_eq!(job.subject(), JobSubject::User(user));
    }
}
