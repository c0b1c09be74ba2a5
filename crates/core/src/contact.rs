//! Validated contact fields. Each type can only be built by parsing, so a value that reached
//! the store has already been checked and normalised (parse, don't validate).

use std::fmt;

use serde::Serialize;

/// A field value failed validation; the message is safe to show (it never echoes the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub &'static str);

/// An email address checked against RFC 5322 (via `email_address`), trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses and trims an address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.len() > 254 {
            return Err(FieldError("must be at most 254 characters"));
        }
        let parsed: email_address::EmailAddress = trimmed
            .parse()
            .map_err(|_| FieldError("must be a valid email address"))?;
        // `email_address` accepts display-name forms ("Ann <a@b.c>"); a contact holds the bare address.
        if parsed.email() != trimmed || !parsed.domain().contains('.') {
            return Err(FieldError("must be a valid email address"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness and lookups use: lower-cased.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// The most digits an E.164 number has, country code included.
const E164_MAX_DIGITS: usize = 15;

/// A phone number, validated by libphonenumber's metadata and stored as E.164 (`+14155552671`).
/// Numbers without a country code are read as US numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses a number in any common notation and normalises it to E.164.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 32 {
            return Err(FieldError("must be a valid phone number"));
        }
        let number = phonenumber::parse(Some(phonenumber::country::Id::US), trimmed)
            .map_err(|_| FieldError("must be a valid phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(FieldError("must be a valid phone number"));
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        // libphonenumber's metadata accepts some national numbers (German ones) long enough to
        // make 16 or 17 digits in all; E.164 allows 15.
        if e164.len() > 1 + E164_MAX_DIGITS {
            return Err(FieldError("must be a valid phone number"));
        }
        Ok(Self(e164))
    }

    /// Loads libphonenumber's metadata and compiles its North American patterns now, so that
    /// the first request carrying a phone number does not wait for them: about 90 ms of CPU and
    /// 10 MB, once per process (`serve` calls it as it starts; bench scenario 7 measures it).
    /// Another country's patterns still compile on the first number from it, a few ms each.
    /// `false` if the metadata refused the (valid) number it loads with.
    pub fn load_metadata() -> bool {
        Self::parse("+1 415 555 2671").is_ok()
    }

    /// Reads back a stored E.164 value.
    pub fn from_stored(e164: String) -> Self {
        Self(e164)
    }

    /// The E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// A US state, district or territory as its USPS two-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UsState(&'static str);

impl UsState {
    /// Parses a two-letter USPS code, case-insensitively.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let upper = raw.trim().to_ascii_uppercase();
        US_STATES
            .iter()
            .find(|s| **s == upper)
            .map(|s| Self(s))
            .ok_or(FieldError("must be a two-letter US state code such as CA"))
    }

    /// The code.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// A tag: 1–64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// Most tags one contact can carry.
    pub const MAX_PER_CONTACT: usize = 50;

    /// Parses and trims a tag.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let t = raw.trim();
        if t.is_empty() || t.chars().count() > 64 {
            return Err(FieldError("each tag must be 1 to 64 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(FieldError("tags cannot contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: 1–200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Parses and trims a name.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let t = raw.trim();
        if t.is_empty() || t.chars().count() > 200 {
            return Err(FieldError("must be 1 to 200 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(FieldError("cannot contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A contact field that failed its check: which field, and why (never the input itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidContact {
    /// The field's name on the wire (`email`, `tags`, …; `body` for a rule over several).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidContact {
    fn of(field: &'static str) -> impl Fn(FieldError) -> Self {
        move |e| Self {
            field,
            message: e.0.to_owned(),
        }
    }
}

/// A contact's fields as text, however they arrived (an API body, a CSV row). Checking them
/// here, once, is why the API and the import accept exactly the same contacts.
#[derive(Debug, Default, Clone)]
pub struct ContactText<'a> {
    /// Display name.
    pub name: Option<&'a str>,
    /// Email address.
    pub email: Option<&'a str>,
    /// Phone number in any common notation.
    pub phone: Option<&'a str>,
    /// USPS state code.
    pub us_state: Option<&'a str>,
    /// Tags.
    pub tags: Vec<&'a str>,
}

/// A contact's checked fields: at least one of name, email and phone, each parsed, and at
/// most [`Tag::MAX_PER_CONTACT`] tags.
#[derive(Debug, Clone)]
pub struct ContactFields {
    /// Display name.
    pub name: Option<PersonName>,
    /// Email.
    pub email: Option<Email>,
    /// Phone, E.164.
    pub phone: Option<Phone>,
    /// State.
    pub us_state: Option<UsState>,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl ContactText<'_> {
    /// Checks every field, answering with the first that fails.
    pub fn validate(&self) -> Result<ContactFields, InvalidContact> {
        let fields = ContactFields {
            name: self
                .name
                .map(PersonName::parse)
                .transpose()
                .map_err(InvalidContact::of("name"))?,
            email: self
                .email
                .map(Email::parse)
                .transpose()
                .map_err(InvalidContact::of("email"))?,
            phone: self
                .phone
                .map(Phone::parse)
                .transpose()
                .map_err(InvalidContact::of("phone"))?,
            us_state: self
                .us_state
                .map(UsState::parse)
                .transpose()
                .map_err(InvalidContact::of("us_state"))?,
            tags: tags(self.tags.iter().copied())?,
        };
        if fields.name.is_none() && fields.email.is_none() && fields.phone.is_none() {
            return Err(InvalidContact {
                field: "body",
                message: "a contact needs at least a name, an email or a phone".to_owned(),
            });
        }
        Ok(fields)
    }
}

/// Parses a contact's tags: at most [`Tag::MAX_PER_CONTACT`], each a valid [`Tag`].
pub fn tags<'a>(raw: impl ExactSizeIterator<Item = &'a str>) -> Result<Vec<Tag>, InvalidContact> {
    if raw.len() > Tag::MAX_PER_CONTACT {
        return Err(InvalidContact {
            field: "tags",
            message: format!("at most {} tags", Tag::MAX_PER_CONTACT),
        });
    }
    raw.map(Tag::parse)
        .collect::<Result<_, _>>()
        .map_err(InvalidContact::of("tags"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_for_every_door() {
        let ok = ContactText {
            email: Some(" Ann@Example.com "),
            tags: vec!["lead", " vip "],
            ..ContactText::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            ok.email.map(|e| e.normalized()),
            Some("ann@example.com".to_owned())
        );
        assert_eq!(ok.tags.len(), 2);
        let empty = ContactText::default().validate().unwrap_err();
        assert_eq!(empty.field, "body");
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        let too_many = ContactText {
            name: Some("Ann"),
            tags: many.iter().map(String::as_str).collect(),
            ..ContactText::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(too_many.to_string(), "tags: at most 50 tags");
        let bad = ContactText {
            name: Some("Ann"),
            phone: Some("12"),
            ..ContactText::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(bad.field, "phone");
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ann@Example.com ").map(|e| e.normalized()),
            Ok("ann@example.com".into())
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "Ann <ann@example.com>",
            "ann@localhost",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_normalise_to_e164() {
        for (raw, want) in [
            ("+1 (415) 555-2671", "+14155552671"),
            ("415.555.2671", "+14155552671"),
            ("+44 20 7946 0958", "+442079460958"),
        ] {
            assert_eq!(
                Phone::parse(raw).map(|p| p.as_str().to_owned()),
                Ok(want.to_owned()),
                "{raw}"
            );
        }
        for bad in ["", "12", "+1 000 000 0000", "call me", "+999 1234567"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `phone` fuzz target: libphonenumber's German metadata takes national numbers
    /// long enough that the whole number has 16 or 17 digits, more than E.164 allows (15).
    #[test]
    fn numbers_longer_than_e164_allows_are_refused() {
        assert_eq!(
            Phone::parse("+49 30 1120 33301 12").map(|p| p.as_str().to_owned()),
            Ok("+493011203330112".to_owned()),
            "15 digits are E.164"
        );
        for long in [
            "+4930112033301121",
            "+49321121111211111",
            "+493b11b1111b1111",
        ] {
            assert!(Phone::parse(long).is_err(), "{long}");
        }
    }

    /// `serve` warms the metadata with this call before it listens; it only warns when the call
    /// answers `false`, so this is where a metadata update that refused the number would show.
    #[test]
    fn loading_the_metadata_accepts_its_own_number() {
        assert!(Phone::load_metadata());
    }

    #[test]
    fn states_and_tags() {
        assert_eq!(UsState::parse("ca").map(|s| s.as_str()), Ok("CA"));
        assert!(UsState::parse("California").is_err());
        assert!(UsState::parse("ZZ").is_err());
        assert!(Tag::parse("  vip ").is_ok_and(|t| t.as_str() == "vip"));
        assert!(Tag::parse(" ").is_err());
        assert!(Tag::parse(&"x".repeat(65)).is_err());
        assert!(Tag::parse("a\nb").is_err());
    }
}
