//! Operator commands that live outside `main.rs`: encrypted backups and verified restores.
//!
//! Files here are sync I/O (the `age` crate streams through `std::io`); the async commands run
//! that part on a blocking thread.

pub mod backup;
pub mod restore;

mod files;

use std::io::IsTerminal;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// Reads the passphrase from the environment variable the operator named (never from a flag,
/// which would land in shell history and `ps`).
fn passphrase_from_env(var: &str) -> Result<age::secrecy::SecretString> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(age::secrecy::SecretString::from(p)),
        Ok(_) => bail!("--passphrase-env {var}: the variable is empty"),
        Err(_) => bail!("--passphrase-env {var}: the variable is not set (or not UTF-8)"),
    }
}

/// A byte-count progress bar on standard error when it is a terminal; hidden otherwise, so logs
/// and scripts see only the final line.
fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Resolves on Ctrl-C or SIGTERM, so a command can drop its temporary files before exiting.
async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Prints `value` as one JSON line, or `text`.
fn emit(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
