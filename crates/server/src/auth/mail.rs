//! Outgoing mail through one transport chosen by configuration: `file:DIR` writes one `.eml`
//! per message (development and tests), `smtp://` and `smtps://` speak SMTP through lettre
//! (STARTTLS required on `smtp://` unless `?tls=none` is given for a loopback test server).

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Why mail could not be configured or sent; never includes the message body.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The transport URL is not one we understand.
    #[error("mail transport must be `file:DIR`, `smtp://…` or `smtps://…`")]
    BadTransport,
    /// An address did not parse.
    #[error("invalid mail address")]
    BadAddress,
    /// Building the message failed.
    #[error("could not build the message")]
    Build,
    /// The transport could not be set up (a mail directory, a relay name).
    #[error("setting up the mail transport failed: {0}")]
    Setup(String),
    /// The transport failed in a way that may pass (no connection, a timeout, an SMTP 4xx):
    /// worth another attempt. The text names the class of failure and the SMTP code, never
    /// the server's words, which may quote the address.
    #[error("sending mail failed for now: {0}")]
    Transient(String),
    /// The server refused the message for good (an SMTP 5xx): another attempt would fail too.
    #[error("the mail server refused the message: {0}")]
    Refused(String),
    /// No transport is configured.
    #[error("no mail transport is configured")]
    Unconfigured,
}

#[derive(Clone)]
enum Transport {
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    None,
}

/// A configured mail sender; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Option<Mailbox>,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Mailer {
    /// A mailer that refuses to send (no transport configured).
    pub fn unconfigured() -> Self {
        Self {
            transport: Transport::None,
            from: None,
        }
    }

    /// Parses `file:DIR`, `smtp://[user:pass@]host[:port][?tls=none]` or `smtps://…`.
    pub fn from_url(url: &str, from: &str) -> Result<Self, MailError> {
        let from: Mailbox = from.parse().map_err(|_| MailError::BadAddress)?;
        let transport = if let Some(dir) = url.strip_prefix("file:") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).map_err(|e| MailError::Setup(e.to_string()))?;
            Transport::File(AsyncFileTransport::new(dir))
        } else if url.starts_with("smtp://") || url.starts_with("smtps://") {
            let parsed = url::Url::parse(url).map_err(|_| MailError::BadTransport)?;
            let host = parsed.host_str().ok_or(MailError::BadTransport)?.to_owned();
            let plain = parsed.query_pairs().any(|(k, v)| k == "tls" && v == "none");
            let mut builder = if parsed.scheme() == "smtps" {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                    .map_err(|e| MailError::Setup(e.to_string()))?
            } else if plain {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            } else {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                    .map_err(|e| MailError::Setup(e.to_string()))?
            };
            if let Some(port) = parsed.port() {
                builder = builder.port(port);
            }
            if !parsed.username().is_empty() {
                let user = percent_decode(parsed.username());
                let pass = percent_decode(parsed.password().unwrap_or_default());
                builder = builder.credentials(Credentials::new(user, pass));
            }
            Transport::Smtp(builder.build())
        } else {
            return Err(MailError::BadTransport);
        };
        Ok(Self {
            transport,
            from: Some(from),
        })
    }

    /// Sends one plain-text message.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let from = self.from.clone().ok_or(MailError::Unconfigured)?;
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::BadAddress)?;
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        #[cfg(feature = "test-seams")]
        let builder = builder.header(test_seams::Sequence::next());
        let message = builder
            .body(mail.body.clone())
            .map_err(|_| MailError::Build)?;
        match &self.transport {
            Transport::File(t) => t
                .send(message)
                .await
                .map(|_| ())
                // A full disk or a missing directory may be fixed by the operator.
                .map_err(|_| MailError::Transient("writing the message file failed".into())),
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| smtp_error(&e)),
            Transport::None => Err(MailError::Unconfigured),
        }
    }
}

/// The order messages were handed to the transport in, for the test suite (feature
/// `test-seams` only): the file transport names files at random and stamps a `Date` in whole
/// seconds, so without this a test cannot tell which of two messages came last.
#[cfg(feature = "test-seams")]
mod test_seams {
    use std::sync::atomic::{AtomicU64, Ordering};

    use lettre::message::header::{Header, HeaderName, HeaderValue};

    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// `X-Rampart-Test-Sequence`: a number that grows with every message this process sends.
    #[derive(Debug, Clone, Copy)]
    pub struct Sequence(u64);

    impl Sequence {
        pub fn next() -> Self {
            Self(NEXT.fetch_add(1, Ordering::SeqCst))
        }
    }

    impl Header for Sequence {
        fn name() -> HeaderName {
            HeaderName::new_from_ascii_str("X-Rampart-Test-Sequence")
        }

        fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
            Ok(Self(s.trim().parse()?))
        }

        fn display(&self) -> HeaderValue {
            HeaderValue::new(Self::name(), self.0.to_string())
        }
    }
}

/// Classifies an SMTP failure without the server's text (a rejection often quotes the
/// recipient's address): a 5xx is final, everything else (4xx, no connection, a timeout, TLS)
/// may pass.
fn smtp_error(e: &lettre::transport::smtp::Error) -> MailError {
    match e.status() {
        Some(code) if e.is_permanent() => MailError::Refused(format!("SMTP {code}")),
        Some(code) => MailError::Transient(format!("SMTP {code}")),
        None if e.is_timeout() => MailError::Transient("the SMTP server timed out".into()),
        None if e.is_tls() => MailError::Transient("TLS with the SMTP server failed".into()),
        None => MailError::Transient("no usable connection to the SMTP server".into()),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
