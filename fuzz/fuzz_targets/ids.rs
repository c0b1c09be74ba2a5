//! Typed ids (`rampart_core` `FromStr`/`Deserialize`): any text parses or is refused without a
//! panic; an id that parses prints in its canonical form and parses back to itself; and any
//! 128-bit body printed with its prefix parses back to the same id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::{
    ApiKeyId, AuthTokenId, ContactId, CredentialId, InvitationId, MembershipId, OrgId, SessionId,
    UserId, WorkspaceId,
};

macro_rules! check {
    ($text:expr, $raw:expr, $($t:ty),+) => {$(
        let parsed = $text.parse::<$t>();
        let via_serde = serde_json::from_value::<$t>(serde_json::Value::from($text));
        assert_eq!(parsed.clone().ok(), via_serde.ok(), "FromStr and Deserialize agree on {:?}", $text);
        if let Ok(id) = parsed {
            let shown = id.to_string();
            assert_eq!(shown.parse::<$t>(), Ok(id), "{shown} parses back");
            assert_eq!(shown, shown.to_ascii_lowercase(), "ids print lower-case");
            assert!(
                shown.strip_prefix(<$t>::PREFIX).is_some_and(|r| r.starts_with('_') && r.len() == 27),
                "{shown} is prefix_ and 26 characters"
            );
        }
        let made = format!("{}_{}", <$t>::PREFIX, ulid::Ulid::from($raw));
        let id = made.parse::<$t>().unwrap_or_else(|e| panic!("{made}: {e}"));
        assert_eq!(id.to_string(), made.to_ascii_lowercase());
        assert_eq!(id.body(), made[<$t>::PREFIX.len() + 1..].to_ascii_lowercase());
    )+};
}

fuzz_target!(|data: &[u8]| {
    let (raw, rest) = if data.len() >= 16 {
        let (head, rest) = data.split_at(16);
        (
            u128::from_le_bytes(head.try_into().unwrap_or([0; 16])),
            rest,
        )
    } else {
        (0, data)
    };
    let text = String::from_utf8_lossy(rest);
    let text: &str = &text;
    check!(
        text,
        raw,
        OrgId,
        WorkspaceId,
        UserId,
        ContactId,
        ApiKeyId,
        MembershipId,
        SessionId,
        InvitationId,
        AuthTokenId,
        CredentialId
    );
});
