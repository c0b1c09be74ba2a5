//! The one rule for text Rampart accepts: every string a request or an import hands in must be
//! storable as it is on both backends. PostgreSQL's `text` and `jsonb` cannot hold U+0000
//! (SQLite can), so a NUL is refused where input is validated, with the same answer on both
//! backends, instead of failing at the database. Everything else Unicode allows passes: Rust's
//! `str` already excludes lone surrogates, and `serde_json` refuses them in escapes.

use std::borrow::Cow;

use crate::contact::FieldError;

/// The character no backend-independent store can hold.
pub const NUL: char = '\0';

/// Why a text was refused, for a field's error message.
pub const NUL_REFUSED: FieldError = FieldError("cannot contain the NUL character (U+0000)");

/// Accepts `s` when every backend can store it as it is.
pub fn check(s: &str) -> Result<(), FieldError> {
    if s.contains(NUL) {
        Err(NUL_REFUSED)
    } else {
        Ok(())
    }
}

/// `s` in a form every backend can store: each NUL replaced by U+FFFD. Only for records of what
/// arrived (the ledger records refused input too, and must never fail to); input that is kept
/// as data is refused with [`check`] instead.
pub fn storable(s: &str) -> Cow<'_, str> {
    if s.contains(NUL) {
        Cow::Owned(s.replace(NUL, "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_and_everything_else_passes() {
        assert_eq!(check("a\0b"), Err(NUL_REFUSED));
        for ok in [
            "",
            "plain",
            "\u{202E}rtl",
            "tab\there",
            "\u{1F600}",
            "\u{FFFD}",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn storable_replaces_only_nul() {
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(storable("clean"), Cow::Borrowed("clean")));
    }
}
