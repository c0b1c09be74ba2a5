//! Envelope encryption of organization data keys: a DEK is stored only wrapped by the master
//! key (KEK) with AES-256-GCM, labelled with the KEK's id so several KEKs can coexist while
//! a rotation rewraps every DEK.
//!
//! Wrapped bytes: `WRAP_FORMAT_V1 (1) ‖ nonce (12) ‖ encrypted DEK (32) ‖ tag (16)`, 61 bytes.
//! The GCM associated data binds a domain label, the format version, the organization id,
//! the DEK version and the KEK id (each length-prefixed), so a wrapped key moved to another
//! organization, relabelled with another version or attributed to another KEK does not open.

use rampart_core::Secret;
use zeroize::Zeroize;

use crate::data_key::DataKey;
use crate::encode::push_len_prefixed;
use crate::gcm::{self, NONCE_LEN, SealError, TAG_LEN};
use crate::master_key::MasterKey;
use crate::random::RandomError;
use crate::scope::KeyScope;

/// The only wrapped-key format written today; its first byte.
pub const WRAP_FORMAT_V1: u8 = 1;
const DEK_LEN: usize = 32;
/// The exact length of [`WrappedKey::bytes`] in format 1.
pub const WRAPPED_LEN: usize = 1 + NONCE_LEN + DEK_LEN + TAG_LEN;
/// Separates DEK wrapping from every other use of AES-GCM in Rampart.
const DOMAIN: &[u8] = b"rampart.dek-wrap.v1";

/// Why a data key could not be wrapped or unwrapped; never says more than which of these.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The key was wrapped by another master key than the one offered.
    #[error("data key is wrapped by master key {wrapped_by}, not by {offered}")]
    OtherKek {
        /// The id recorded with the wrapped key.
        wrapped_by: String,
        /// The id of the master key that was offered.
        offered: String,
    },
    /// Not a wrapped key of a known format (wrong length or format version).
    #[error("malformed wrapped data key")]
    Malformed,
    /// Did not authenticate: wrong master key, wrong organization or version, altered bytes.
    #[error("cannot unwrap data key")]
    CannotUnwrap,
    /// The OS random source failed, so no nonce could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A data key as stored: encrypted under the master key `kek_id`; safe to print and store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// [`MasterKey::id`] of the master key that wrapped it.
    pub kek_id: String,
    /// The data key's version ([`DataKey::version`]), authenticated by the wrapping.
    pub dek_version: u32,
    /// The wrapped form, [`WRAPPED_LEN`] bytes.
    pub bytes: Vec<u8>,
}

fn associated_data(scope: KeyScope, dek_version: u32, kek_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push_len_prefixed(&mut out, DOMAIN);
    out.push(WRAP_FORMAT_V1);
    push_len_prefixed(&mut out, scope.to_string().as_bytes());
    out.extend_from_slice(&dek_version.to_be_bytes());
    push_len_prefixed(&mut out, kek_id.as_bytes());
    out
}

/// Encrypts `dek` for `scope` under `kek` with a fresh random nonce; only the result is stored.
pub fn wrap_dek(
    kek: &MasterKey,
    scope: KeyScope,
    dek: &DataKey,
) -> Result<WrappedKey, KeyringError> {
    let kek_id = kek.id();
    let mut bytes = Vec::with_capacity(WRAPPED_LEN);
    bytes.push(WRAP_FORMAT_V1);
    gcm::seal_append(
        kek.bytes(),
        &associated_data(scope, dek.version(), &kek_id),
        dek.bytes(),
        &mut bytes,
    )
    .map_err(|e| match e {
        SealError::Random(e) => KeyringError::Random(e),
        // A 32-byte key is far below the AES-GCM length limit.
        SealError::TooLong => KeyringError::Malformed,
    })?;
    Ok(WrappedKey {
        kek_id,
        dek_version: dek.version(),
        bytes,
    })
}

/// Recovers the data key of `scope` from its wrapped form, provided `kek` is the master key
/// that wrapped it and nothing (organization, version, KEK id, bytes) was altered.
pub fn unwrap_dek(
    kek: &MasterKey,
    scope: KeyScope,
    wrapped: &WrappedKey,
) -> Result<DataKey, KeyringError> {
    let offered = kek.id();
    if wrapped.kek_id != offered {
        return Err(KeyringError::OtherKek {
            wrapped_by: wrapped.kek_id.clone(),
            offered,
        });
    }
    let (format, sealed) = wrapped.bytes.split_first().ok_or(KeyringError::Malformed)?;
    if *format != WRAP_FORMAT_V1 || wrapped.bytes.len() != WRAPPED_LEN {
        return Err(KeyringError::Malformed);
    }
    let plain = gcm::open(
        kek.bytes(),
        &associated_data(scope, wrapped.dek_version, &wrapped.kek_id),
        sealed,
    )
    .ok_or(KeyringError::CannotUnwrap)?;
    let mut key = [0u8; DEK_LEN];
    if plain.expose().len() != DEK_LEN {
        return Err(KeyringError::CannotUnwrap);
    }
    key.copy_from_slice(plain.expose());
    let secret = Secret::new(key);
    key.zeroize();
    Ok(DataKey::from_secret(wrapped.dek_version, secret))
}

/// Re-encrypts a wrapped data key of `scope` from the master key `old` to `new` (master key
/// rotation); the data key itself, and so every value sealed with it, is unchanged.
pub fn rewrap_dek(
    old: &MasterKey,
    new: &MasterKey,
    scope: KeyScope,
    wrapped: &WrappedKey,
) -> Result<WrappedKey, KeyringError> {
    wrap_dek(new, scope, &unwrap_dek(old, scope, wrapped)?)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use rampart_core::OrgId;

    use super::*;
    use crate::field::{self, FieldAad};

    fn org_scope() -> KeyScope {
        KeyScope::Org(OrgId::generate())
    }

    fn new_kek() -> MasterKey {
        MasterKey::from_base64(
            &STANDARD.encode(crate::random::bytes::<32>().unwrap()),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn wrap_unwrap_round_trip_keeps_key_and_version() {
        let kek = new_kek();
        let org = org_scope();
        let dek = DataKey::generate(4).unwrap();
        let wrapped = wrap_dek(&kek, org, &dek).unwrap();
        assert_eq!(wrapped.kek_id, kek.id());
        assert_eq!(wrapped.dek_version, 4);
        assert_eq!(wrapped.bytes.len(), WRAPPED_LEN);
        assert_eq!(wrapped.bytes[0], WRAP_FORMAT_V1);
        assert!(!wrapped.bytes.windows(DEK_LEN).any(|w| w == dek.bytes()));
        let back = unwrap_dek(&kek, org, &wrapped).unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        assert_eq!(back.version(), 4);

        // A value sealed before wrapping opens with the unwrapped key.
        let aad = FieldAad {
            scope: org,
            table: "contacts",
            column: "ssn",
            row: "ct_1",
        };
        let stored = field::seal(&dek, &aad, b"078-05-1120").unwrap();
        assert_eq!(
            field::open(&back, &aad, &stored).unwrap().expose(),
            b"078-05-1120"
        );
    }

    #[test]
    fn each_wrap_uses_a_fresh_nonce() {
        let kek = new_kek();
        let org = org_scope();
        let dek = DataKey::generate(1).unwrap();
        let a = wrap_dek(&kek, org, &dek).unwrap();
        let b = wrap_dek(&kek, org, &dek).unwrap();
        assert_ne!(a.bytes, b.bytes);
    }

    #[test]
    fn wrong_kek_fails_even_with_a_forged_kek_id() {
        let kek = new_kek();
        let other = new_kek();
        let org = org_scope();
        let wrapped = wrap_dek(&kek, org, &DataKey::generate(1).unwrap()).unwrap();
        assert!(matches!(
            unwrap_dek(&other, org, &wrapped),
            Err(KeyringError::OtherKek { ref wrapped_by, ref offered })
                if *wrapped_by == kek.id() && *offered == other.id()
        ));
        let forged = WrappedKey {
            kek_id: other.id(),
            ..wrapped.clone()
        };
        assert!(matches!(
            unwrap_dek(&other, org, &forged),
            Err(KeyringError::CannotUnwrap)
        ));
        // Claiming the right KEK but relabelling the id the wrap was bound to also fails.
        assert!(matches!(
            unwrap_dek(&kek, org, &forged),
            Err(KeyringError::OtherKek { .. })
        ));
    }

    #[test]
    fn wrong_org_or_version_fails() {
        let kek = new_kek();
        let org = org_scope();
        let wrapped = wrap_dek(&kek, org, &DataKey::generate(1).unwrap()).unwrap();
        assert!(matches!(
            unwrap_dek(&kek, org_scope(), &wrapped),
            Err(KeyringError::CannotUnwrap)
        ));
        assert!(matches!(
            unwrap_dek(&kek, KeyScope::Platform, &wrapped),
            Err(KeyringError::CannotUnwrap)
        ));
        let relabelled = WrappedKey {
            dek_version: 2,
            ..wrapped
        };
        assert!(matches!(
            unwrap_dek(&kek, org, &relabelled),
            Err(KeyringError::CannotUnwrap)
        ));
    }

    #[test]
    fn tampered_or_truncated_wraps_fail_with_typed_errors() {
        let kek = new_kek();
        let org = org_scope();
        let wrapped = wrap_dek(&kek, org, &DataKey::generate(1).unwrap()).unwrap();
        for i in 0..wrapped.bytes.len() {
            let mut bad = wrapped.clone();
            bad.bytes[i] ^= 0x01;
            let err = unwrap_dek(&kek, org, &bad).unwrap_err();
            if i == 0 {
                assert!(matches!(err, KeyringError::Malformed), "{err:?}");
            } else {
                assert!(
                    matches!(err, KeyringError::CannotUnwrap),
                    "byte {i}: {err:?}"
                );
            }
        }
        for len in 0..wrapped.bytes.len() {
            let short = WrappedKey {
                bytes: wrapped.bytes[..len].to_vec(),
                ..wrapped.clone()
            };
            assert!(matches!(
                unwrap_dek(&kek, org, &short),
                Err(KeyringError::Malformed)
            ));
        }
        let mut long = wrapped.clone();
        long.bytes.push(0);
        assert!(matches!(
            unwrap_dek(&kek, org, &long),
            Err(KeyringError::Malformed)
        ));
    }

    #[test]
    fn rewrap_moves_a_dek_to_the_new_kek_unchanged() {
        let old = new_kek();
        let new = new_kek();
        let org = org_scope();
        let dek = DataKey::generate(2).unwrap();
        let wrapped = wrap_dek(&old, org, &dek).unwrap();
        let rewrapped = rewrap_dek(&old, &new, org, &wrapped).unwrap();
        assert_eq!(rewrapped.kek_id, new.id());
        assert_eq!(rewrapped.dek_version, 2);
        assert_eq!(
            unwrap_dek(&new, org, &rewrapped).unwrap().bytes(),
            dek.bytes()
        );
        assert!(unwrap_dek(&old, org, &rewrapped).is_err());
    }

    #[test]
    fn unwrapped_keys_print_redacted() {
        let kek = new_kek();
        let org = org_scope();
        let dek = DataKey::generate(1).unwrap();
        let back = unwrap_dek(&kek, org, &wrap_dek(&kek, org, &dek).unwrap()).unwrap();
        assert_eq!(
            format!("{back:?}"),
            "DataKey { version: 1, key: [redacted] }"
        );
        assert_eq!(format!("{kek:?}"), "MasterKey([redacted])");
    }
}
