//! Inbound SMS keywords: whole message, trimmed, any case, trailing punctuation ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_comply::keyword::{Keyword, classify};

#[test]
fn opt_out_words() {
    for body in [
        "STOP",
        "stop",
        "Stop!",
        "  stop  ",
        "STOP.",
        "stop!!!",
        "Stop ?",
        "\u{FEFF}STOP\u{200B}",
        "STOPALL",
        "stop all",
        "UNSUBSCRIBE",
        "Cancel",
        "end",
        "QUIT.",
        "revoke",
        "OPTOUT",
        "opt out",
        "Opt-Out!",
        "OPT  OUT",
        "opt_out",
        "stop\n",
        "STOP…",
        "\"STOP\"",
        "¿stop?",
        "'Stop'",
    ] {
        assert_eq!(classify(body), Some(Keyword::OptOut), "{body:?}");
    }
}

#[test]
fn help_and_opt_in_words() {
    for body in ["HELP", "help?", "Info", "INFO."] {
        assert_eq!(classify(body), Some(Keyword::Help), "{body:?}");
    }
    for body in ["START", "start!", "Unstop", "UNSTOP."] {
        assert_eq!(classify(body), Some(Keyword::OptIn), "{body:?}");
    }
}

#[test]
fn anything_else_is_not_a_keyword() {
    for body in [
        "",
        "   ",
        "!!!",
        "please stop",
        "stop it",
        "STOPP",
        "don't stop",
        "stop please",
        "STOP 🛑",
        "yes",
        "helpful",
        "restart",
        "S T O P",
        "opt",
        "out",
        "endless",
        &"stop ".repeat(40),
    ] {
        assert_eq!(classify(body), None, "{body:?}");
    }
}

#[test]
fn serde_names() {
    assert_eq!(
        serde_json::to_value(Keyword::OptOut).unwrap(),
        serde_json::json!("opt_out")
    );
    assert_eq!(
        serde_json::to_value(Keyword::OptIn).unwrap(),
        serde_json::json!("opt_in")
    );
}
