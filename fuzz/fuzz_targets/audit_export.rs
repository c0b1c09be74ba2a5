//! The audit export (`rampart audit export --format ndjson`) read back by the independent
//! verifier of docs/audit-chain.md: for any event (any text in its fields, any time the ledger
//! can hold), the exported line carries the fields and links the chain hash was computed over,
//! so the verifier finds the same link. And the redaction every recorded request body goes
//! through takes any bytes without a panic and gives JSON.

#![no_main]

use chrono::DateTime;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rampart_audit::redact_args;
use rampart_core::audit::{AuditEvent, CANONICAL_VERSION};
use rampart_core::{OrgId, WorkspaceId};
use rampart_store::audit::StoredEvent;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The times the ledger holds: years 1 to 9999 (PostgreSQL's check on `at`), in microseconds.
const FIRST_MICROS: i64 = -62_135_596_800_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

const FIELDS: [&str; 17] = [
    "org",
    "seq",
    "workspace",
    "at",
    "actor",
    "auth_method",
    "method",
    "path",
    "action",
    "target",
    "args",
    "status",
    "error_code",
    "duration_ms",
    "idempotency_key",
    "request_id",
    "client_ip",
];

/// The verifier's `field()`: absent is FF FF FF FF, anything else its `str()` in UTF-8 behind a
/// 4-byte big-endian length (numbers in decimal, as Python's `str(int)` writes them).
fn field(out: &mut Vec<u8>, value: &Value) {
    let text = match value {
        Value::Null => {
            out.extend_from_slice(&[0xff; 4]);
            return;
        }
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => panic!("a field the verifier cannot read: {other}"),
    };
    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn id(u: &mut Unstructured<'_>, prefix: &str) -> Result<String> {
    Ok(format!(
        "{prefix}_{}",
        ulid::Ulid::from(u.arbitrary::<u128>()?)
    ))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let body: Vec<u8> = u.arbitrary()?;
    let args = redact_args(&body);
    serde_json::from_str::<Value>(&args)
        .unwrap_or_else(|e| panic!("redacted args are not JSON ({e}): {args}"));

    let org: OrgId = id(u, "org")?.parse().unwrap_or_else(|e| panic!("{e}"));
    let workspace: Option<WorkspaceId> = if u.arbitrary()? {
        Some(id(u, "ws")?.parse().unwrap_or_else(|e| panic!("{e}")))
    } else {
        None
    };
    let micros = u.int_in_range(FIRST_MICROS..=LAST_MICROS)?;
    let event = AuditEvent {
        org,
        seq: u.arbitrary()?,
        workspace,
        at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        actor: u.arbitrary()?,
        auth_method: u.arbitrary()?,
        method: u.arbitrary()?,
        path: u.arbitrary()?,
        action: u.arbitrary()?,
        target: u.arbitrary()?,
        args: if u.arbitrary()? { args } else { u.arbitrary()? },
        status: u.arbitrary()?,
        error_code: u.arbitrary()?,
        duration_ms: u.arbitrary()?,
        idempotency_key: u.arbitrary()?,
        request_id: u.arbitrary()?,
        client_ip: u.arbitrary()?,
    };
    let prev: [u8; 32] = u.arbitrary()?;
    let link = event.chain_hash(&prev);
    let line = serde_json::to_string(&StoredEvent {
        event: event.clone(),
        prev_hash: hex::encode(prev),
        hash: hex::encode(link),
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // The verifier's side: only the line.
    let read: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(read["prev_hash"], Value::from(hex::encode(prev)), "{line}");
    let mut canonical = Vec::new();
    field(&mut canonical, &Value::from(CANONICAL_VERSION));
    for name in FIELDS {
        field(&mut canonical, &read[name]);
    }
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(&canonical);
    let verified = hex::encode(hasher.finalize());
    assert_eq!(
        Value::from(verified),
        read["hash"],
        "the exported line does not verify: {line}\nthe chain hashed {:?}",
        String::from_utf8_lossy(&event.canonical_bytes())
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
