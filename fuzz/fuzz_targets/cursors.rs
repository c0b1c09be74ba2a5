//! List cursors (contacts and audit events): any text is a cursor or a 400, never a panic; a
//! cursor the server made reads back to the position it was made from, and any cursor that
//! reads is the one the server would have made for that position.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::routes::{audit_events, contacts};
use rampart_core::ContactId;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = contacts::decode_cursor(text) {
            let again = contacts::encode_cursor(id);
            assert_eq!(contacts::decode_cursor(&again).ok(), Some(id));
        }
        if let Ok(seq) = audit_events::decode_cursor(text) {
            let again = audit_events::encode_cursor(seq);
            assert_eq!(audit_events::decode_cursor(&again).ok(), Some(seq));
        }
    }
    if let Some(head) = data.get(..16) {
        let raw = u128::from_le_bytes(head.try_into().unwrap_or([0; 16]));
        let id: ContactId = format!("ct_{}", ulid::Ulid::from(raw)).parse().unwrap();
        let cursor = contacts::encode_cursor(id);
        assert_eq!(contacts::decode_cursor(&cursor).ok(), Some(id), "{cursor}");
    }
    if let Some(head) = data.get(..8) {
        let seq = i64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
        let cursor = audit_events::encode_cursor(seq);
        assert_eq!(
            audit_events::decode_cursor(&cursor).ok(),
            Some(seq),
            "{cursor}"
        );
    }
});
