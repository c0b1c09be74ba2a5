//! Phone numbers (`rampart_core::contact::Phone`, libphonenumber): any text is a number or a
//! refusal, never a panic; what is accepted is E.164 (`+` and at most 15 digits) and reads back
//! as itself, so a stored number is normalized once and for all.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::Phone;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(phone) = Phone::parse(&text) {
        let e164 = phone.as_str();
        let digits = e164
            .strip_prefix('+')
            .unwrap_or_else(|| panic!("{e164:?} has no +"));
        assert!(
            (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
            "{text:?} became {e164:?}, not E.164"
        );
        assert_eq!(
            Phone::parse(e164).ok(),
            Some(phone.clone()),
            "{text:?} -> {e164:?}"
        );
    }
});
