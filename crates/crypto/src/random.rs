//! Bytes from the operating system's CSPRNG.

use rand::TryRngCore;
use rand::rngs::OsRng;

/// The OS random source failed; nothing secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// `N` bytes from the OS CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    OsRng.try_fill_bytes(&mut out).map_err(|_| RandomError)?;
    Ok(out)
}
