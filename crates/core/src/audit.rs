//! An audit event and its canonical encoding: the bytes each link of an organization's hash
//! chain is computed over. The encoding is specified in `docs/audit-chain.md` precisely
//! enough for an independent verifier; change it only with a new version tag.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{OrgId, WorkspaceId};

/// The version tag that starts every canonical encoding.
pub const CANONICAL_VERSION: &str = "rampart.audit.v1";

/// The hash before the first event of a chain.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One recorded request, as stored in the ledger. `args` is redacted JSON text, kept as the
/// exact bytes that were hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// The organization whose ledger holds the event.
    pub org: OrgId,
    /// Position in that ledger, from 1, without gaps.
    pub seq: i64,
    /// The workspace the request acted in or from.
    pub workspace: Option<WorkspaceId>,
    /// When it was recorded (UTC, microseconds).
    pub at: DateTime<Utc>,
    /// `key_…`, `usr_…`, `operator` or `anonymous`.
    pub actor: String,
    /// `api_key`, `session`, `cli`, or none when unauthenticated.
    pub auth_method: Option<String>,
    /// HTTP method, or `CLI`.
    pub method: String,
    /// Request path (no query string), or the CLI command.
    pub path: String,
    /// The manifest's action name, e.g. `contact.delete`.
    pub action: String,
    /// The object acted on, when there is one.
    pub target: Option<String>,
    /// Arguments with personal data hashed and secrets redacted, as JSON text.
    pub args: String,
    /// HTTP status of the outcome.
    pub status: u16,
    /// The error code, for failures.
    pub error_code: Option<String>,
    /// Time spent, in milliseconds.
    pub duration_ms: i64,
    /// The `Idempotency-Key` sent, if any.
    pub idempotency_key: Option<String>,
    /// The request id.
    pub request_id: String,
    /// Client address with the host part dropped (last IPv4 octet, last 80 IPv6 bits).
    pub client_ip: Option<String>,
}

/// The canonical form of a time: RFC 3339, UTC, exactly six fractional digits, `Z`.
pub fn canonical_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(v) => {
            // Fields are bounded far below 4 GiB (bodies are capped at 1 MiB).
            let len = u32::try_from(v.len()).unwrap_or(u32::MAX - 1);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

impl AuditEvent {
    /// The canonical bytes: the version tag then every field in a fixed order, each as a
    /// 4-byte big-endian length and its UTF-8 bytes, an absent field as `FF FF FF FF`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.args.len());
        let workspace = self.workspace.map(|w| w.to_string());
        field(&mut out, Some(CANONICAL_VERSION));
        field(&mut out, Some(&self.org.to_string()));
        field(&mut out, Some(&self.seq.to_string()));
        field(&mut out, workspace.as_deref());
        field(&mut out, Some(&canonical_time(&self.at)));
        field(&mut out, Some(&self.actor));
        field(&mut out, self.auth_method.as_deref());
        field(&mut out, Some(&self.method));
        field(&mut out, Some(&self.path));
        field(&mut out, Some(&self.action));
        field(&mut out, self.target.as_deref());
        field(&mut out, Some(&self.args));
        field(&mut out, Some(&self.status.to_string()));
        field(&mut out, self.error_code.as_deref());
        field(&mut out, Some(&self.duration_ms.to_string()));
        field(&mut out, self.idempotency_key.as_deref());
        field(&mut out, Some(&self.request_id));
        field(&mut out, self.client_ip.as_deref());
        out
    }

    /// This event's link: `SHA-256(prev ‖ canonical bytes)`.
    pub fn chain_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(self.canonical_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            org: "org_01jdv0000000000000000000aa".parse().unwrap(),
            seq: 1,
            workspace: None,
            at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            actor: "operator".into(),
            auth_method: Some("cli".into()),
            method: "CLI".into(),
            path: "rampart admin create-org".into(),
            action: "org.create".into(),
            target: None,
            args: "{}".into(),
            status: 200,
            error_code: None,
            duration_ms: 3,
            idempotency_key: None,
            request_id: "req_x".into(),
            client_ip: None,
        }
    }

    #[test]
    fn canonical_form_is_length_prefixed_and_absent_is_distinct_from_empty() {
        let e = event();
        let bytes = e.canonical_bytes();
        assert_eq!(&bytes[..4], &(CANONICAL_VERSION.len() as u32).to_be_bytes());
        assert_eq!(canonical_time(&e.at), "2026-11-23T10:00:00.500000Z");
        let mut empty = e.clone();
        empty.target = Some(String::new());
        assert_ne!(empty.canonical_bytes(), bytes);
        // Moving a character from one field to the next changes the bytes.
        let mut a = e.clone();
        a.method = "CLIx".into();
        a.path = "rampart".into();
        let mut b = e.clone();
        b.method = "CLI".into();
        b.path = "xrampart".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn the_hash_covers_every_field_and_the_previous_link() {
        let e = event();
        let h = e.chain_hash(&GENESIS);
        assert_ne!(e.chain_hash(&[1u8; 32]), h);
        let mut changed = e.clone();
        changed.status = 201;
        assert_ne!(changed.chain_hash(&GENESIS), h);
        // Known answer computed by the independent Python verifier in docs/audit-chain.md.
        assert_eq!(
            hex_of(&h),
            "59a2fc83a99c660152df3e8484ec631185b295cd511264a163ba3bf9e4af4a7f"
        );
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
