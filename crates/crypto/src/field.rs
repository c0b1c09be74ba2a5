//! Field encryption: one column value of one row, sealed with the organization's data key.
//!
//! Stored form (all integers big-endian):
//!
//! ```text
//! offset  len  content
//! 0       1    format version (FORMAT_V1 = 0x01)
//! 1       4    data key version (u32)
//! 5       12   nonce, fresh from the OS CSPRNG for every seal
//! 17      n    AES-256-GCM ciphertext (n = plaintext length)
//! 17+n    16   GCM tag
//! ```
//!
//! The GCM associated data is the 5-byte header followed by the canonical encoding of
//! [`FieldAad`] (scope: organization or platform, table, column, row id), so a value copied to another row,
//! column, table or organization, or relabelled with another key version, does not open.

use rampart_core::Secret;

use crate::data_key::{DataKey, DataKeys};
use crate::encode::push_len_prefixed;
use crate::gcm::{self, NONCE_LEN, SealError, TAG_LEN};
use crate::random::RandomError;
use crate::scope::KeyScope;

/// The only stored-form version written today; its first byte.
pub const FORMAT_V1: u8 = 1;
/// Bytes before the nonce: format version and key version.
const HEADER_LEN: usize = 1 + 4;
/// The length of a sealed empty value; anything shorter is malformed.
pub const MIN_STORED_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Separates field associated data from every other use of AES-GCM in Rampart.
const DOMAIN: &[u8] = b"rampart.field.v1";

/// Why a field value could not be sealed or opened; never says more than which of these.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Not a stored value of a known format (too short, or an unknown format version).
    #[error("malformed encrypted value")]
    Malformed,
    /// Sealed with a data key version that was not offered.
    #[error("encrypted value uses unknown data key version {0}")]
    UnknownKeyVersion(u32),
    /// Did not authenticate: wrong key, wrong row/column/table/organization, or altered bytes.
    #[error("cannot decrypt value")]
    CannotDecrypt,
    /// The plaintext is longer than AES-GCM can seal in one message.
    #[error("value too long to encrypt")]
    TooLong,
    /// The OS random source failed, so no nonce could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl From<SealError> for CryptoError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Random(e) => Self::Random(e),
            SealError::TooLong => Self::TooLong,
        }
    }
}

/// Where a value lives; sealing binds it here, so it opens only at the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAad<'a> {
    /// Whose key seals it: an organization, or the platform (user-level secrets).
    pub scope: KeyScope,
    /// The table name.
    pub table: &'a str,
    /// The column name.
    pub column: &'a str,
    /// The row's id, as stored (for example `ct_…`).
    pub row: &'a str,
}

impl FieldAad<'_> {
    /// The canonical bytes: a domain label and each part, each preceded by its length, so
    /// distinct locations never encode alike (`("ab", "c")` differs from `("a", "bc")`).
    pub fn encode(&self) -> Vec<u8> {
        let org = self.scope.to_string();
        let mut out = Vec::with_capacity(
            5 * 8
                + DOMAIN.len()
                + org.len()
                + self.table.len()
                + self.column.len()
                + self.row.len(),
        );
        for part in [
            DOMAIN,
            org.as_bytes(),
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.row.as_bytes(),
        ] {
            push_len_prefixed(&mut out, part);
        }
        out
    }
}

/// The GCM associated data: the stored header, then the location.
fn associated_data(header: &[u8; HEADER_LEN], aad: &FieldAad<'_>) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(&aad.encode());
    out
}

fn header(key_version: u32) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0] = FORMAT_V1;
    out[1..].copy_from_slice(&key_version.to_be_bytes());
    out
}

/// Encrypts `plaintext` for the location `aad` under `key` with a fresh random nonce and
/// returns the versioned stored form; equal plaintexts never seal to equal bytes.
pub fn seal(key: &DataKey, aad: &FieldAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let header = header(key.version());
    let mut out = Vec::with_capacity(MIN_STORED_LEN + plaintext.len());
    out.extend_from_slice(&header);
    gcm::seal_append(
        key.bytes(),
        &associated_data(&header, aad),
        plaintext,
        &mut out,
    )?;
    Ok(out)
}

/// The data key version a stored value was sealed with (for lazy re-encryption after a
/// rotation); checks the format, not the authenticity.
pub fn key_version(stored: &[u8]) -> Result<u32, CryptoError> {
    let (header, _) = stored
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(CryptoError::Malformed)?;
    if header[0] != FORMAT_V1 || stored.len() < MIN_STORED_LEN {
        return Err(CryptoError::Malformed);
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&header[1..]);
    Ok(u32::from_be_bytes(version))
}

/// Authenticates and decrypts a stored value sealed for `aad`, choosing the key from `keys`
/// by the version recorded in it; the plaintext comes back in a zeroizing wrapper.
pub fn open<K: DataKeys + ?Sized>(
    keys: &K,
    aad: &FieldAad<'_>,
    stored: &[u8],
) -> Result<Secret<Vec<u8>>, CryptoError> {
    let version = key_version(stored)?;
    let key = keys
        .by_version(version)
        .ok_or(CryptoError::UnknownKeyVersion(version))?;
    let (header, sealed) = stored
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(CryptoError::Malformed)?;
    gcm::open(key.bytes(), &associated_data(header, aad), sealed).ok_or(CryptoError::CannotDecrypt)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rampart_core::OrgId;

    use super::*;

    const SECRET: &[u8] = b"4111 1111 1111 1111";

    fn place<'a>(org: OrgId, row: &'a str) -> FieldAad<'a> {
        FieldAad {
            scope: KeyScope::Org(org),
            table: "contacts",
            column: "card_number",
            row,
        }
    }

    fn nonce_range() -> std::ops::Range<usize> {
        HEADER_LEN..HEADER_LEN + NONCE_LEN
    }

    #[test]
    fn round_trip() {
        let key = DataKey::generate(3).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        for plaintext in [&b""[..], b"x", SECRET, &[0u8; 4096]] {
            let stored = seal(&key, &aad, plaintext).unwrap();
            assert_eq!(stored.len(), MIN_STORED_LEN + plaintext.len());
            assert_eq!(stored[0], FORMAT_V1);
            assert_eq!(stored[1..5], 3u32.to_be_bytes());
            assert_eq!(key_version(&stored).unwrap(), 3);
            assert_eq!(open(&key, &aad, &stored).unwrap().expose(), plaintext);
        }
    }

    #[test]
    fn plaintext_is_not_in_the_stored_form_and_repeats_differ() {
        let key = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let a = seal(&key, &aad, SECRET).unwrap();
        let b = seal(&key, &aad, SECRET).unwrap();
        assert_ne!(a, b);
        assert!(!a.windows(SECRET.len()).any(|w| w == SECRET));
    }

    #[test]
    fn tampering_with_any_byte_fails_with_the_right_kind_of_error() {
        let key = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let stored = seal(&key, &aad, SECRET).unwrap();
        let tag_start = stored.len() - TAG_LEN;
        for i in 0..stored.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = stored.clone();
                bad[i] ^= flip;
                let err = open(&key, &aad, &bad).unwrap_err();
                match i {
                    0 => assert!(
                        matches!(err, CryptoError::Malformed),
                        "format byte: {err:?}"
                    ),
                    1..5 => assert!(
                        matches!(err, CryptoError::UnknownKeyVersion(v) if v != 1),
                        "key version byte {i}: {err:?}"
                    ),
                    _ => assert!(
                        matches!(err, CryptoError::CannotDecrypt),
                        "{} byte {i}: {err:?}",
                        if nonce_range().contains(&i) {
                            "nonce"
                        } else if i >= tag_start {
                            "tag"
                        } else {
                            "ciphertext"
                        }
                    ),
                }
            }
        }
    }

    #[test]
    fn relabelling_the_key_version_fails_even_when_that_version_exists() {
        let one = DataKey::generate(1).unwrap();
        // Same key bytes under another version label: only the header binding stops it.
        let two = DataKey::from_secret(2, Secret::new(*one.bytes()));
        let aad = place(OrgId::generate(), "ct_1");
        let mut stored = seal(&one, &aad, SECRET).unwrap();
        stored[1..5].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            open(&two, &aad, &stored),
            Err(CryptoError::CannotDecrypt)
        ));
    }

    #[test]
    fn wrong_key_fails() {
        let key = DataKey::generate(1).unwrap();
        let other = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let stored = seal(&key, &aad, SECRET).unwrap();
        assert!(matches!(
            open(&other, &aad, &stored),
            Err(CryptoError::CannotDecrypt)
        ));
    }

    #[test]
    fn moving_a_ciphertext_to_another_row_column_table_or_org_fails() {
        let key = DataKey::generate(1).unwrap();
        let org = OrgId::generate();
        let aad = place(org, "ct_01");
        let stored = seal(&key, &aad, SECRET).unwrap();
        let elsewhere = [
            FieldAad {
                row: "ct_02",
                ..aad
            },
            FieldAad {
                column: "notes",
                ..aad
            },
            FieldAad {
                table: "contacts_archive",
                ..aad
            },
            FieldAad {
                scope: KeyScope::Org(OrgId::generate()),
                ..aad
            },
            FieldAad {
                scope: KeyScope::Platform,
                ..aad
            },
        ];
        for moved in elsewhere {
            assert!(
                matches!(open(&key, &moved, &stored), Err(CryptoError::CannotDecrypt)),
                "{moved:?}"
            );
        }
        assert_eq!(open(&key, &aad, &stored).unwrap().expose(), SECRET);
    }

    #[test]
    fn aad_encoding_is_unambiguous() {
        let org = OrgId::generate();
        let a = FieldAad {
            scope: KeyScope::Org(org),
            table: "t",
            column: "ab",
            row: "c",
        };
        let b = FieldAad {
            column: "a",
            row: "bc",
            ..a
        };
        let c = FieldAad {
            table: "ta",
            column: "b",
            ..a
        };
        assert_ne!(a.encode(), b.encode());
        assert_ne!(a.encode(), c.encode());
        // The exact bytes, written out by hand from the documented layout (each part preceded
        // by its length as a big-endian u64): a change of the encoding would make every stored
        // value unreadable, so it must not pass unnoticed.
        let org_text = org.to_string();
        let mut want = Vec::new();
        for part in [
            &b"rampart.field.v1"[..],
            org_text.as_bytes(),
            b"t",
            b"ab",
            b"c",
        ] {
            want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, u8::try_from(part.len()).unwrap()]);
            want.extend_from_slice(part);
        }
        assert_eq!(a.encode(), want);
        let platform = FieldAad {
            scope: KeyScope::Platform,
            table: "users",
            column: "totp",
            row: "",
        };
        assert_eq!(
            platform.encode(),
            b"\0\0\0\0\0\0\0\x10rampart.field.v1\0\0\0\0\0\0\0\x08platform\
              \0\0\0\0\0\0\0\x05users\0\0\0\0\0\0\0\x04totp\0\0\0\0\0\0\0\0"
        );
        let key = DataKey::generate(1).unwrap();
        let stored = seal(&key, &a, SECRET).unwrap();
        assert!(open(&key, &b, &stored).is_err());
    }

    #[test]
    fn unknown_key_version_is_reported_as_such() {
        let old = DataKey::generate(1).unwrap();
        let new = DataKey::generate(2).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let stored = seal(&old, &aad, SECRET).unwrap();
        assert!(matches!(
            open(&new, &aad, &stored),
            Err(CryptoError::UnknownKeyVersion(1))
        ));
        // During a rotation both versions are offered and both kinds of value open.
        let ring = vec![new.clone(), old];
        let fresh = seal(&new, &aad, SECRET).unwrap();
        assert_eq!(open(&ring, &aad, &stored).unwrap().expose(), SECRET);
        assert_eq!(open(&ring[..], &aad, &fresh).unwrap().expose(), SECRET);
    }

    #[test]
    fn truncated_or_foreign_input_is_a_typed_error() {
        let key = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let stored = seal(&key, &aad, SECRET).unwrap();
        for len in 0..stored.len() {
            let err = open(&key, &aad, &stored[..len]).unwrap_err();
            if len < MIN_STORED_LEN {
                assert!(matches!(err, CryptoError::Malformed), "len {len}: {err:?}");
            } else {
                assert!(
                    matches!(err, CryptoError::CannotDecrypt),
                    "len {len}: {err:?}"
                );
            }
        }
        let mut future = stored.clone();
        future[0] = 2;
        assert!(matches!(
            open(&key, &aad, &future),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(key_version(&[]), Err(CryptoError::Malformed)));
    }

    #[test]
    fn errors_and_plaintext_wrappers_print_nothing_secret() {
        let key = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let stored = seal(&key, &aad, SECRET).unwrap();
        let opened = open(&key, &aad, &stored).unwrap();
        assert_eq!(format!("{opened:?}"), "[redacted]");
        assert_eq!(format!("{opened}"), "[redacted]");
        assert!(format!("{key:?}").contains("[redacted]"));
        assert_eq!(
            CryptoError::CannotDecrypt.to_string(),
            "cannot decrypt value"
        );
    }

    #[test]
    fn nonces_are_unique_across_a_million_seals() {
        const SEALS: usize = 1_000_000;
        let key = DataKey::generate(1).unwrap();
        let aad = place(OrgId::generate(), "ct_1");
        let mut seen = HashSet::with_capacity(SEALS);
        for _ in 0..SEALS {
            let stored = seal(&key, &aad, b"x").unwrap();
            let nonce: [u8; NONCE_LEN] = stored[nonce_range()].try_into().unwrap();
            assert!(
                seen.insert(nonce),
                "nonce repeated after {} seals",
                seen.len()
            );
        }
        assert_eq!(seen.len(), SEALS);
    }
}
