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

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// A published AES-256-GCM known answer, checked against the cipher as this module calls
    /// it (nonce ‖ ciphertext ‖ tag): McGrew and Viega, "The Galois/Counter Mode of Operation
    /// (GCM)", submitted to NIST (2005), Appendix B, Test Case 16 (256-bit key, 96-bit IV,
    /// 20-byte AAD, 60-byte plaintext).
    const K: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                     1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const IV: &str = "cafebabefacedbaddecaf888";
    const C: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const T: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    #[test]
    fn opens_the_gcm_spec_test_case_16() {
        let key: [u8; 32] = unhex(K).try_into().unwrap();
        let sealed = [unhex(IV), unhex(C), unhex(T)].concat();
        let opened = open(&key, &unhex(A), &sealed).unwrap();
        assert_eq!(opened.expose(), &unhex(P));
        // The same bytes with one bit of the tag, the AAD or the ciphertext flipped do not.
        for at in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&key, &unhex(A), &bad).is_none(), "byte {at}");
        }
        assert!(open(&key, &unhex(&A[2..]), &sealed).is_none());
    }

    #[test]
    fn seal_append_writes_nonce_ciphertext_tag() {
        // seal_append draws its own nonce, so it cannot be held to the known answer directly;
        // what it writes has the layout open() expects and opens to the plaintext.
        let key: [u8; 32] = unhex(K).try_into().unwrap();
        let mut out = Vec::new();
        seal_append(&key, &unhex(A), &unhex(P), &mut out).unwrap();
        assert_eq!(out.len(), NONCE_LEN + unhex(P).len() + TAG_LEN);
        assert_eq!(open(&key, &unhex(A), &out).unwrap().expose(), &unhex(P));
    }
}
