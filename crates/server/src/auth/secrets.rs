//! TOTP secrets at rest: sealed under the platform data key, bound to the user's row and the
//! column, so a sealed secret copied to another user or column does not open.

use rampart_core::{Secret, UserId};

use crate::http::error::ApiError;
use crate::state::AppState;

/// Seals a TOTP secret for `user`'s `column` (`totp_secret` or `totp_pending_secret`).
pub async fn seal(
    _state: &AppState,
    _user: UserId,
    _column: &str,
    _secret: &Secret<Vec<u8>>,
) -> Result<Vec<u8>, ApiError> {
    Err(ApiError::internal())
}

/// Opens what [`seal`] produced.
pub async fn open(
    _state: &AppState,
    _user: UserId,
    _column: &str,
    _sealed: &[u8],
) -> Result<Secret<Vec<u8>>, ApiError> {
    Err(ApiError::internal())
}
