//! Typed, prefixed identifiers (`org_…`, `ws_…`, `ct_…`), Stripe style. The body is a ULID:
//! 128 bits, time-ordered, 80 of them random, written lower-case. Each kind is its own type,
//! so a contact id can never be passed where a workspace id is expected, and parsing checks
//! the prefix, so `ct_…` pasted into a workspace slot is rejected before any query runs.

use std::fmt;
use std::str::FromStr;

use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::{Generator, ULID_LEN, Ulid};

/// One generator per process, so ids made here strictly increase even within a millisecond
/// (cursor pagination lists in creation order). Across nodes, order is by millisecond.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

fn next_ulid() -> Ulid {
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The generator only fails after 2^80 ids in one millisecond; fall back to a random one.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

/// `id`'s body, lower-case, written into `buf`: ids are displayed on every request (bound into
/// queries, serialized, logged), so without allocating.
fn lower_body(id: Ulid, buf: &mut [u8; ULID_LEN]) -> &str {
    let text = id.array_to_str(buf);
    text.make_ascii_lowercase();
    text
}

/// The length of every id's body, the part after the prefix and underscore.
pub const ID_BODY_LEN: usize = ULID_LEN;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The prefix is missing or belongs to another kind of object.
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix {
        /// The prefix this kind of id carries.
        expected: &'static str,
    },
    /// The part after the prefix is not a valid ULID.
    #[error("malformed `{expected}_` id")]
    Malformed {
        /// The prefix this kind of id carries.
        expected: &'static str,
    },
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix written before the body, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id whose body sorts after ids made earlier (millisecond resolution).
            pub fn generate() -> Self {
                Self(next_ulid())
            }

            /// Parses `prefix_body`; the body is case-insensitive and is normalised.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let body = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(IdError::WrongPrefix { expected: $prefix })?;
                if body.len() != 26 {
                    return Err(IdError::Malformed { expected: $prefix });
                }
                Ulid::from_string(body)
                    .map(Self)
                    .map_err(|_| IdError::Malformed { expected: $prefix })
            }

            /// The lower-case body without the prefix (used inside API key strings).
            pub fn body(&self) -> String {
                lower_body(self.0, &mut [0; ULID_LEN]).to_owned()
            }

            /// The lower-case body without the prefix, written into `buf` (the audit chain's
            /// check writes ids for millions of events).
            pub fn body_in<'b>(&self, buf: &'b mut [u8; ID_BODY_LEN]) -> &'b str {
                lower_body(self.0, buf)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($prefix)?;
                f.write_str("_")?;
                f.write_str(lower_body(self.0, &mut [0; ULID_LEN]))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A provider credential (Twilio, SMTP, …) stored encrypted in a workspace.
    CredentialId,
    "cred"
);
typed_id!(
    /// An organization: the tenant that owns workspaces, a plan and a data key.
    OrgId,
    "org"
);
typed_id!(
    /// A workspace: one business inside an organization; every tenant row carries one.
    WorkspaceId,
    "ws"
);
typed_id!(
    /// A person who can sign in.
    UserId,
    "usr"
);
typed_id!(
    /// A contact (person or lead) inside a workspace.
    ContactId,
    "ct"
);
typed_id!(
    /// An API key, bound to one workspace and one role.
    ApiKeyId,
    "key"
);
typed_id!(
    /// A membership: one user's role in one workspace.
    MembershipId,
    "mem"
);
typed_id!(
    /// A signed-in browser session of one user.
    SessionId,
    "ses"
);
typed_id!(
    /// An invitation to join a workspace with a role.
    InvitationId,
    "inv"
);
typed_id!(
    /// A single-use emailed token: confirmation, password reset or magic link.
    AuthTokenId,
    "tok"
);
typed_id!(
    /// A job in the durable queue (`rampart-jobs`).
    JobId,
    "job"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_normalises_case() {
        let id = ContactId::generate();
        let text = id.to_string();
        assert!(text.starts_with("ct_"));
        assert_eq!(text.len(), 3 + 26);
        assert_eq!(ContactId::parse(&text), Ok(id));
        let upper = format!("ct_{}", id.body().to_ascii_uppercase());
        assert_eq!(ContactId::parse(&upper), Ok(id));
    }

    #[test]
    fn rejects_wrong_prefix_and_garbage() {
        let ws = WorkspaceId::generate().to_string();
        assert_eq!(
            ContactId::parse(&ws),
            Err(IdError::WrongPrefix { expected: "ct" })
        );
        assert_eq!(
            ContactId::parse("ct"),
            Err(IdError::WrongPrefix { expected: "ct" })
        );
        assert_eq!(
            ContactId::parse("ct_"),
            Err(IdError::Malformed { expected: "ct" })
        );
        assert_eq!(
            ContactId::parse("ct_0000000000000000000000000!"),
            Err(IdError::Malformed { expected: "ct" })
        );
        // 27 characters of valid alphabet is still not a ULID.
        assert!(ContactId::parse("ct_000000000000000000000000000").is_err());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let ids: Vec<String> = (0..1000)
            .map(|_| ContactId::generate().to_string())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing, even within a millisecond"
        );
    }

    #[test]
    fn serde_checks_the_prefix() {
        let ws = WorkspaceId::generate();
        let json = serde_json::to_string(&ws).unwrap_or_default();
        let back: WorkspaceId =
            serde_json::from_str(&json).unwrap_or_else(|_| WorkspaceId::generate());
        assert_eq!(back, ws);
        assert!(serde_json::from_str::<OrgId>(&json).is_err());
    }
}
