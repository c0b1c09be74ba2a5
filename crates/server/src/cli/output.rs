//! What an operator command prints: a sentence for a person, or one JSON line under `--json`
//! (errors included, so a script never has to parse prose).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use rampart_core::{Plan, Role};

/// The `--json` flag every command that reports a result takes.
#[derive(Debug, clap::Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print machine-readable JSON (errors too).
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as one JSON line, or `text`.
pub fn emit(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// Prints a failed command's error on standard error: `{"error":{"message":…}}` under
/// `--json`, `error: …` otherwise.
pub fn emit_error(json: bool, message: &str) {
    if json {
        eprintln!("{}", serde_json::json!({"error": {"message": message}}));
    } else {
        eprintln!("error: {message}");
    }
}

/// Parses `--plan`, listing the plans in `--help` and in the error for a wrong one.
pub fn plan_parser() -> impl TypedValueParser<Value = Plan> {
    PossibleValuesParser::new(Plan::ALL.map(Plan::as_str)).try_map(|s| s.parse::<Plan>())
}

/// Parses `--role`, listing the roles in `--help` and in the error for a wrong one.
pub fn role_parser() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str)).try_map(|s| s.parse::<Role>())
}
