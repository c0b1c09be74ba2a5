//! The audit room. The ledger itself (append, hash chain, append-only triggers) lives in
//! `rampart-store`, and the canonical encoding in `rampart_core::audit`; this crate holds what
//! is done *with* a ledger: what may be recorded ([`redact`]), proving it intact
//! ([`verify`]), and reading it out ([`export`]).

pub mod export;
pub mod redact;
pub mod retention;
pub mod verify;

pub use redact::{redact_args, truncate_ip};
pub use verify::{VerifyError, VerifyReport, verify_org};
