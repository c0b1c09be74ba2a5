//! Whose data key protects a value: one organization's, or the platform's (secrets that belong
//! to users, who are not inside any one organization, such as TOTP secrets).

use std::fmt;
use std::str::FromStr;

use rampart_core::OrgId;

/// The owner of a data key; bound into every wrapped key and every sealed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// An organization's data (destroyed with the organization).
    Org(OrgId),
    /// User-level secrets that belong to no single organization.
    Platform,
}

/// The text of [`KeyScope::Platform`]; organization ids always start with `org_`, so the two
/// never collide.
const PLATFORM: &str = "platform";

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Org(org) => write!(f, "{org}"),
            Self::Platform => f.write_str(PLATFORM),
        }
    }
}

/// A stored scope that is neither `platform` nor an organization id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a key scope (`platform` or an organization id)")]
pub struct BadScope;

impl FromStr for KeyScope {
    type Err = BadScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == PLATFORM {
            return Ok(Self::Platform);
        }
        s.parse().map(Self::Org).map_err(|_| BadScope)
    }
}

impl From<OrgId> for KeyScope {
    fn from(org: OrgId) -> Self {
        Self::Org(org)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_text() {
        let org = OrgId::generate();
        for scope in [KeyScope::Org(org), KeyScope::Platform] {
            assert_eq!(scope.to_string().parse::<KeyScope>(), Ok(scope));
        }
        assert_eq!("org_x".parse::<KeyScope>(), Err(BadScope));
        assert_ne!(
            KeyScope::Org(org).to_string(),
            KeyScope::Platform.to_string()
        );
    }
}
