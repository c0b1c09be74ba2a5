//! TOTP secrets at rest: sealed under the platform data key (a person is not inside one
//! organization), bound to the user's row and the column, so a sealed secret copied to
//! another user or column does not open.

use rampart_core::{Secret, UserId};
use rampart_store::{Encrypted, KeyScope};

use crate::http::error::ApiError;
use crate::state::AppState;

const TABLE: &str = "users";

/// Seals a TOTP secret for `user`'s `column` (`totp_secret` or `totp_pending_secret`).
pub async fn seal(
    state: &AppState,
    user: UserId,
    column: &str,
    secret: &Secret<Vec<u8>>,
) -> Result<Encrypted, ApiError> {
    state
        .vault()
        .seal(
            KeyScope::Platform,
            TABLE,
            column,
            &user.to_string(),
            secret.expose(),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not seal a TOTP secret");
            ApiError::internal()
        })
}

/// Opens what [`seal`] produced for the same user and column.
pub async fn open(
    state: &AppState,
    user: UserId,
    column: &str,
    sealed: &Encrypted,
) -> Result<Secret<Vec<u8>>, ApiError> {
    state
        .vault()
        .open(KeyScope::Platform, TABLE, column, &user.to_string(), sealed)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not open a TOTP secret");
            ApiError::internal()
        })
}
