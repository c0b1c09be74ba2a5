//! Logging to stderr, as text or JSON lines. Log lines carry ids, routes, statuses and
//! timings; handlers never log headers, bodies, tokens or personal data.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `filter` is an `EnvFilter` directive such as `info`.
pub fn init(filter: &str, json: bool) {
    // sqlx logs every statement at info; that is noise (and statement text is not for logs).
    let directive = format!("{filter},sqlx=warn");
    let env = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Fails only if a subscriber is already installed (tests), which is fine.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
