//! Inbound SMS keywords: opt-out, help and opt-in words, matched on the whole message.
//!
//! A message is a keyword when, after trimming whitespace (and invisible format characters such
//! as a zero-width space or a byte-order mark) from both ends, dropping trailing punctuation
//! (and leading punctuation too, so that `"STOP"` in quotes and `¿STOP?` still opt out),
//! folding ASCII case and reading any run of spaces, hyphens or underscores between two words as
//! one space, it is exactly one of the words below. "Stop!", " stop ", "STOP." and "Opt-Out"
//! are keywords; "please stop", "stop it" and "stopp" are not (a person may still be asking to
//! stop: those messages go to a human, which is the caller's business).
//!
//! - Opt-out: STOP, STOPALL (also "STOP ALL"), UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT,
//!   "OPT OUT" (the carriers' list plus the words the FCC's 2025 revocation rule treats as
//!   revocation per se).
//! - Help: HELP, INFO.
//! - Opt-in: START, UNSTOP.
//!
//! Opt-out is deliberately the widest match: reading a borderline message as an opt-out costs a
//! customer one recipient, reading an opt-out as nothing breaks the law.

use serde::{Deserialize, Serialize};

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    /// Stop messaging me (suppress the sender for SMS in the workspace).
    OptOut,
    /// Send the help text.
    Help,
    /// Messages may resume (lifts a keyword suppression only).
    OptIn,
}

const OPT_OUT: [&str; 10] = [
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
];
const HELP: [&str; 2] = ["HELP", "INFO"];
const OPT_IN: [&str; 2] = ["START", "UNSTOP"];

/// The longest keyword is 11 characters; anything much longer cannot match.
const MAX_LEN: usize = 64;

fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
        )
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '…' | '¡'
                | '¿'
                | '。'
                | '！'
                | '？'
                | '．'
                | '，'
                | '、'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
        )
}

/// The keyword the whole message is, if any.
pub fn classify(body: &str) -> Option<Keyword> {
    let body = body.trim_matches(|c| is_punctuation(c) || is_invisible(c));
    if body.is_empty() || body.len() > MAX_LEN {
        return None;
    }
    // Fold case and separators: "Opt-Out", "opt  out" and "OPT_OUT" read as "OPT OUT".
    let mut norm = String::with_capacity(body.len());
    let mut pending_space = false;
    for c in body.chars() {
        if c.is_whitespace() || c == '-' || c == '_' {
            pending_space = true;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            return None;
        }
        if pending_space && !norm.is_empty() {
            norm.push(' ');
        }
        pending_space = false;
        norm.push(c.to_ascii_uppercase());
    }
    let word = norm.as_str();
    if OPT_OUT.contains(&word) {
        Some(Keyword::OptOut)
    } else if HELP.contains(&word) {
        Some(Keyword::Help)
    } else if OPT_IN.contains(&word) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}
