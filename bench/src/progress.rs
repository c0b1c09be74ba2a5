//! Progress lines on standard error, stamped with the time since the suite started.

use std::fmt;
use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// When the suite started (the first call fixes it).
pub fn started() -> Instant {
    *START.get_or_init(Instant::now)
}

/// A progress line on stderr, stamped with the time since the suite started.
pub fn progress(args: fmt::Arguments<'_>) {
    let t = started().elapsed().as_secs_f64();
    eprintln!("[{t:6.1}s] {args}");
}
