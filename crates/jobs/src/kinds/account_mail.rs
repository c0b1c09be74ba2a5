//! Account mail (confirm an address, reset a password, a sign-in link, security notices) as a
//! job, so an SMTP outage delays mail and loses none. The server registers the handler (it owns
//! the transport, the texts and the token minting); this crate only knows the job.
//!
//! The payload names the person and the kind of mail, never the address or a token: the
//! handler reads the current address when it runs and, for a mail carrying a link, mints the
//! single-use token then (stored hashed, as every token is), so a mail delayed by an outage
//! still carries a link with its whole lifetime ahead. A mail job may run twice (at least
//! once): each run mints its own token, each valid once, which is harmless.

use chrono::{DateTime, Utc};
use rampart_core::UserId;
use rampart_store::identity::LockScope;
use rampart_store::jobs::JobSubject;
use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Which account mail to send, with what its text needs (never personal data or a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountMailKind {
    /// A link to confirm the address.
    ConfirmEmail,
    /// A link to choose a new password.
    PasswordReset,
    /// A single-use sign-in link.
    MagicLink {
        /// The hash of the asking browser's binding cookie, stored with the token so the link
        /// works in that browser only; a hash grants nothing by itself.
        browser_hash: Option<String>,
    },
    /// The password was changed.
    PasswordChanged,
    /// Two-factor authentication was turned on.
    TwoFactorEnabled,
    /// Two-factor authentication was turned off.
    TwoFactorDisabled,
    /// An operator turned two-factor authentication off (`rampart admin reset-2fa`).
    TwoFactorReset,
    /// Someone tried to sign up with an address that has a confirmed account.
    AlreadyRegistered,
    /// Password sign-in was locked after `failed` wrong passwords.
    PasswordLocked {
        /// One source or the whole account.
        scope: LockScope,
        /// The failures that locked it.
        failed: u32,
        /// Until when.
        until: DateTime<Utc>,
    },
    /// Two-factor sign-in was locked after `failed` wrong codes.
    SecondFactorLocked {
        /// The failures that locked it.
        failed: u32,
        /// Until when.
        until: DateTime<Utc>,
    },
}

/// Send `mail` to user `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
            format!(r#"{{"user":"{user}","mail":{{"kind":"password_reset"}}}}"#)
        );
        assert_eq!(job.subject(), JobSubject::User(user));
    }

    /// A lock's mail carries its scope, count and end, and reads back as written.
    #[test]
    fn a_lock_mail_round_trips_with_its_facts() {
        let job = AccountMail {
            user: UserId::generate(),
            mail: AccountMailKind::PasswordLocked {
                scope: LockScope::Source,
                failed: 10,
                until: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            },
        };
        let text = crate::job::payload(&job).unwrap();
        assert!(
            text.contains(r#""kind":"password_locked","scope":"source","failed":10"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<AccountMail>(&text).unwrap(), job);
    }
}
