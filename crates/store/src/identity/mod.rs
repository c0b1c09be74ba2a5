//! Identity storage: password credentials and lockout, sessions, single-use emailed tokens,
//! the second factor (TOTP state and backup codes), invitations and workspace members.
//!
//! Users, sessions, tokens and codes are platform rows: a person is not inside one workspace.
//! Every secret is stored as a SHA-256 hash of a high-entropy token, except the TOTP secret,
//! which must be recoverable and arrives here already encrypted by the caller.

pub mod members;
pub mod second_factor;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use members::{Accepted, Invitation, Member, NewInvitation};
pub use second_factor::{SecondFactorClaim, SecondFactorFailure, backoff};
pub use sessions::{NewSession, SessionRecord, SessionStage};
pub use tokens::TokenPurpose;
pub use users::{LockMail, LockScope, SigninClaim, SignupOutcome, UserAuth};
