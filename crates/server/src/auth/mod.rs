//! Identity: people signing in to Rampart. Passwords (policy, breach check, argon2id), sessions
//! in cookies with CSRF protection, lockout, TOTP with backup codes, single-use emailed links,
//! and the mail that carries them. Sessions resolve to the same [`rampart_core::Principal`] as
//! API keys, so everything past authentication is shared.

pub mod account_mail;
pub mod breach;
pub mod events;
pub mod hash_threads;
pub mod mail;
pub mod password;
pub mod secrets;
pub mod session;
pub mod token;
pub mod totp;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::breach::{BreachCheck, BreachSettings};
use self::mail::Mailer;
use self::password::{HashError, Hasher, PasswordPolicy};

/// `[auth]`: every identity knob, with the documented defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Password rules.
    pub password: PasswordPolicy,
    /// Breached-password sources.
    pub breach_check: BreachSettings,
    /// Failed passwords from one source (a client IP, an IPv6 /64) that lock the account for
    /// that source.
    pub lockout_threshold: u32,
    /// How long the first lock lasts, in minutes; each further lock in a row doubles it, up to
    /// `lockout_max_minutes`.
    pub lockout_minutes: i64,
    /// Failed passwords from all sources together that lock the account's password for
    /// everyone (magic links still pass); NIST SP 800-63B allows at most 100.
    pub lockout_account_threshold: u32,
    /// Idle session expiry, in minutes.
    pub session_idle_minutes: i64,
    /// Absolute session expiry, in hours.
    pub session_absolute_hours: i64,
    /// How long a password-accepted session may wait for its second factor, in minutes.
    pub second_factor_minutes: i64,
    /// Wrong second-factor codes that end the pending session.
    pub second_factor_max_failures: u32,
    /// Wrong second-factor codes, over every sign-in since the last success, that lock the
    /// person's second factor (a correct password does not reset the count).
    pub second_factor_user_max_failures: u32,
    /// How long the first second-factor lock lasts, in minutes; each further lock in a row
    /// doubles it, up to `lockout_max_minutes`.
    pub second_factor_lockout_minutes: i64,
    /// The longest any lock lasts, however many came before it, in minutes.
    pub lockout_max_minutes: i64,
    /// At most one lock mail per account in this many minutes.
    pub lock_mail_every_minutes: i64,
    /// Email-confirmation link lifetime, in hours.
    pub confirm_hours: i64,
    /// Password-reset link lifetime, in minutes.
    pub reset_minutes: i64,
    /// Magic-link lifetime, in minutes (ASVS V6.5.5: at most 10).
    pub magic_link_minutes: i64,
    /// Invitation lifetime, in hours.
    pub invitation_hours: i64,
    /// The `From:` of every mail.
    pub mail_from: String,
    /// The issuer shown in authenticator apps.
    pub totp_issuer: String,
    /// Whether `POST /v1/auth/signup` is open.
    pub signup_enabled: bool,
    /// Password hashes computed at once; 0 means as many as the cores this process may use.
    pub hash_threads: usize,
    /// The nice value of the hashing threads (0 to 19, Linux): above the request threads' 0,
    /// so a sign-in flood runs on what requests leave instead of taking its share of every
    /// core.
    pub hash_nice: u8,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            breach_check: BreachSettings::default(),
            lockout_threshold: 5,
            lockout_minutes: 15,
            lockout_account_threshold: 100,
            session_idle_minutes: 8 * 60,
            session_absolute_hours: 30 * 24,
            second_factor_minutes: 5,
            second_factor_max_failures: 5,
            second_factor_user_max_failures: 10,
            second_factor_lockout_minutes: 15,
            lockout_max_minutes: 24 * 60,
            lock_mail_every_minutes: 60,
            confirm_hours: 24,
            reset_minutes: 60,
            magic_link_minutes: 10,
            invitation_hours: 7 * 24,
            mail_from: "Rampart <no-reply@localhost>".to_owned(),
            totp_issuer: "Rampart".to_owned(),
            signup_enabled: true,
            hash_threads: 0,
            hash_nice: password::DEFAULT_NICE,
        }
    }
}

/// The identity services a handler reaches through `AppState::identity`.
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

struct Inner {
    settings: AuthSettings,
    hasher: Hasher,
    breach: BreachCheck,
    mailer: Mailer,
    public_url: String,
    secure_cookies: bool,
}

impl Identity {
    /// Identity services with these settings, this mailer and the public base URL (links in
    /// mail point there; an https URL makes cookies `Secure` and `__Host-` prefixed).
    pub fn new(settings: AuthSettings, hasher: Hasher, mailer: Mailer, public_url: &str) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let secure_cookies = public_url.starts_with("https://");
        Self(Arc::new(Inner {
            breach: BreachCheck::new(settings.breach_check.clone()),
            settings,
            hasher,
            mailer,
            public_url,
            secure_cookies,
        }))
    }

    /// Defaults with no mail transport (mail is refused and logged); for embedders and benches.
    pub fn unconfigured() -> Result<Self, HashError> {
        Ok(Self::new(
            AuthSettings::default(),
            Hasher::for_this_machine()?,
            Mailer::unconfigured(),
            "http://localhost:8080",
        ))
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.0.settings
    }

    /// The password hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.0.hasher
    }

    /// The breach check.
    pub fn breach(&self) -> &BreachCheck {
        &self.0.breach
    }

    /// The mailer.
    pub fn mailer(&self) -> &Mailer {
        &self.0.mailer
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.0.public_url
    }

    /// Whether cookies are `Secure` and `__Host-` prefixed.
    pub fn secure_cookies(&self) -> bool {
        self.0.secure_cookies
    }
}
