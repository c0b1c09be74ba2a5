//! The breached-password check, three sources behind one call: the built-in corpus (see
//! `data/README.md`), an operator's Pwned Passwords directory (one `XXXXX.txt` per 5-hex SHA-1
//! prefix holding `SUFFIX:COUNT` lines, as the official downloader writes it) for air-gapped
//! installs, and the online HaveIBeenPwned range API (only the 5-character prefix leaves the
//! machine, with `Add-Padding: true`). What happens when the online API cannot be reached is
//! a setting, never an accident.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Django's list of 20,000 common passwords and zxcvbn's 30,000 most frequent passwords
/// (sources and licences in `data/README.md`), both lower-cased.
static CORPUS_TEXTS: [&str; 2] = [
    include_str!("../../data/common-passwords.txt"),
    include_str!("../../data/zxcvbn-passwords.txt"),
];

fn corpus() -> &'static [&'static str] {
    static SORTED: OnceLock<Vec<&'static str>> = OnceLock::new();
    SORTED.get_or_init(|| {
        let mut v: Vec<&str> = CORPUS_TEXTS
            .iter()
            .flat_map(|t| t.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// How many passwords the built-in corpus holds.
pub fn corpus_len() -> usize {
    corpus().len()
}

/// What to do when the online API does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnreachable {
    /// Accept the password (the offline sources still applied).
    #[default]
    Allow,
    /// Refuse to set the password until the API answers.
    Refuse,
}

/// `[auth.breach_check]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreachSettings {
    /// Check the built-in corpus.
    pub builtin: bool,
    /// A Pwned Passwords range directory; empty means none.
    pub directory: PathBuf,
    /// Ask the online range API.
    pub online: bool,
    /// Its base URL (the prefix is appended).
    pub online_url: String,
    /// Timeout for one online request, in milliseconds.
    pub online_timeout_ms: u64,
    /// Policy when the online API fails.
    pub when_unreachable: WhenUnreachable,
}

impl Default for BreachSettings {
    fn default() -> Self {
        Self {
            builtin: true,
            directory: PathBuf::new(),
            online: false,
            online_url: "https://api.pwnedpasswords.com/range/".to_owned(),
            online_timeout_ms: 3000,
            when_unreachable: WhenUnreachable::Allow,
        }
    }
}

/// The check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not found in any source consulted.
    Clean,
    /// Found.
    Breached,
    /// The online source failed and the policy refuses.
    Unavailable,
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<axum::body::Bytes>,
>;

/// An HTTP(S) client with rustls (ring) and the Mozilla root store; no proxy is consulted.
fn https_client() -> Result<HttpsClient, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// Runs the configured sources in order, cheapest first.
#[derive(Clone)]
pub struct BreachCheck {
    settings: BreachSettings,
    http: Option<HttpsClient>,
}

fn sha1_hex(password: &str) -> String {
    hex::encode_upper(Sha1::digest(password.as_bytes()))
}

/// Whether a range body (`SUFFIX:COUNT` lines) lists `suffix` with a count above zero
/// (padding lines carry count 0).
fn range_lists(body: &str, suffix: &str) -> bool {
    body.lines().any(|line| {
        let mut parts = line.trim().splitn(2, ':');
        let (Some(s), Some(count)) = (parts.next(), parts.next()) else {
            return false;
        };
        s.eq_ignore_ascii_case(suffix) && count.trim().parse::<u64>().is_ok_and(|c| c > 0)
    })
}

impl BreachCheck {
    /// A checker for these settings.
    pub fn new(settings: BreachSettings) -> Self {
        let http = settings.online.then(https_client).and_then(|c| {
            c.map_err(
                |e| tracing::error!(error = %e, "cannot build the pwned-passwords HTTP client"),
            )
            .ok()
        });
        Self { settings, http }
    }

    /// Looks `password` up in every configured source.
    pub async fn check(&self, password: &str) -> Verdict {
        if self.settings.builtin
            && corpus()
                .binary_search(&password.to_lowercase().as_str())
                .is_ok()
        {
            return Verdict::Breached;
        }
        let digest = sha1_hex(password);
        let (prefix, suffix) = digest.split_at(5);
        if !self.settings.directory.as_os_str().is_empty() {
            let file = self.settings.directory.join(format!("{prefix}.txt"));
            match tokio::fs::read_to_string(&file).await {
                Ok(body) if range_lists(&body, suffix) => return Verdict::Breached,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "pwned-passwords range file unreadable")
                }
            }
        }
        if self.settings.online {
            match self.online(prefix).await {
                Ok(body) if range_lists(&body, suffix) => return Verdict::Breached,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "pwned-passwords API unreachable");
                    if self.settings.when_unreachable == WhenUnreachable::Refuse {
                        return Verdict::Unavailable;
                    }
                }
            }
        }
        Verdict::Clean
    }

    async fn online(&self, prefix: &str) -> Result<String, String> {
        use http_body_util::BodyExt;
        let http = self.http.as_ref().ok_or("no HTTP client")?;
        let request = axum::http::Request::get(format!("{}{prefix}", self.settings.online_url))
            .header("Add-Padding", "true")
            .header("User-Agent", "rampart")
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_millis(self.settings.online_timeout_ms);
        let fetch = async {
            let response = http.request(request).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| "timed out".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn corpus_is_large_enough() {
        assert!(corpus_len() >= 20_000, "{}", corpus_len());
    }

    #[tokio::test]
    async fn builtin_corpus_case_insensitive() {
        let c = BreachCheck::new(BreachSettings::default());
        assert_eq!(c.check("Password1").await, Verdict::Breached);
        assert_eq!(c.check("qwerty").await, Verdict::Breached);
        assert_eq!(c.check("Vx9-unlikely-Quokka-7").await, Verdict::Clean);
    }

    #[test]
    fn sha1_prefixes_match_published_examples() {
        // From shared/reference/vectors/hibp_examples.json (HIBP's documented examples).
        for (password, sha1, prefix) in [
            (
                "password",
                "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8",
                "5BAA6",
            ),
            (
                "123456",
                "7C4A8D09CA3762AF61E59520943DC26494F8941B",
                "7C4A8",
            ),
            (
                "P@ssw0rd",
                "21BD12DC183F740EE76F27B78EB39C8AD972A757",
                "21BD1",
            ),
        ] {
            let digest = sha1_hex(password);
            assert_eq!(digest, sha1);
            assert_eq!(&digest[..5], prefix);
        }
    }

    #[test]
    fn padding_lines_do_not_count() {
        let body =
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\r\n0018A45C4D1DEF81644B54AB7F969B88D65:3\r\n";
        assert!(!range_lists(body, "1E4C9B93F3F0682250B6CF8331B7EE68FD8"));
        assert!(range_lists(body, "0018a45c4d1def81644b54ab7f969b88d65"));
    }
}
