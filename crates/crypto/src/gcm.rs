//! AES-256-GCM with a fresh random 96-bit nonce per encryption: the one place this crate
//! calls the cipher, so every caller gets the same nonce discipline.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rampart_core::Secret;

use crate::random::{self, RandomError};

/// Bytes of nonce written before each ciphertext.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of authentication tag written after each ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// Why encryption produced nothing.
#[derive(Debug)]
pub(crate) enum SealError {
    /// The OS random source failed, so no nonce could be drawn.
    Random(RandomError),
    /// The plaintext is longer than AES-GCM allows (about 64 GiB).
    TooLong,
}

/// Encrypts `plaintext` under `key` and `aad` with a fresh random nonce and appends
/// `nonce ‖ ciphertext ‖ tag` to `out`.
pub(crate) fn seal_append(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    let nonce = random::bytes::<NONCE_LEN>().map_err(SealError::Random)?;
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::TooLong)?;
    out.reserve(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(())
}

/// Authenticates and decrypts `nonce ‖ ciphertext ‖ tag`; `None` for anything that does not
/// authenticate (wrong key, wrong `aad`, altered or short input), without saying which.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Secret<Vec<u8>>> {
    let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>()?;
    if rest.len() < TAG_LEN {
        return None;
    }
    Aes256Gcm::new(key.into())
        .decrypt(nonce.into(), Payload { msg: rest, aad })
        .ok()
        .map(Secret::new)
}
