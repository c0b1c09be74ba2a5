//! Passwords: the policy a new password must meet, and hashing with argon2id at the OWASP
//! parameters (m = 19 MiB, t = 2, p = 1). Imported bcrypt hashes verify and are replaced by
//! argon2id on the next successful sign-in. Hashing runs on threads of its own
//! ([`super::hash_threads`]) at a lower scheduling priority than the request threads, behind a
//! semaphore sized to the machine's cores and a bounded queue, so a flood of sign-ins runs on
//! what the rest of the server leaves and can never queue without end.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use argon2::PasswordHash;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::password_hash::try_generate_salt;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rampart_core::Secret;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::hash_threads::{HashThreads, ThreadsError};

/// Why a password was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Shorter than the minimum.
    #[error("must be at least {0} characters")]
    TooShort(usize),
    /// Longer than the maximum (never silently cut).
    #[error("must be at most {0} characters")]
    TooLong(usize),
    /// Missing a required character class.
    #[error("must contain an uppercase letter, a lowercase letter and a digit")]
    Classes,
    /// Found in a breach corpus.
    #[error("appears in a list of breached passwords; choose another")]
    Breached,
    /// The breach check could not run and the settings say to refuse.
    #[error("the breached-password check is unavailable; try again later")]
    CheckUnavailable,
}

/// The password rules (`[auth.password]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// Maximum length in characters (at least 64).
    pub max_length: usize,
    /// Require an uppercase letter, a lowercase letter and a digit.
    pub require_classes: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 10,
            max_length: 256,
            require_classes: true,
        }
    }
}

impl PasswordPolicy {
    /// Checks length and character classes (the breach check is separate and asynchronous).
    pub fn check(&self, password: &str) -> Result<(), PolicyError> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(PolicyError::TooShort(self.min_length));
        }
        if chars > self.max_length.max(64) {
            return Err(PolicyError::TooLong(self.max_length.max(64)));
        }
        if self.require_classes
            && !(password.chars().any(char::is_uppercase)
                && password.chars().any(char::is_lowercase)
                && password.chars().any(|c| c.is_ascii_digit()))
        {
            return Err(PolicyError::Classes);
        }
        Ok(())
    }
}

/// Why hashing did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are queued: the caller should answer 503 and let the client retry.
    #[error("too many sign-ins in progress")]
    Busy,
    /// The hashing library failed (never for valid parameters).
    #[error("password hashing failed")]
    Failed,
    /// The hashing threads could not be started or are gone.
    #[error(transparent)]
    Threads(#[from] ThreadsError),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or an unparseable stored hash).
    No,
    /// Right password; the stored hash is current.
    Yes,
    /// Right password, but the stored hash is bcrypt or weaker argon2: store this instead.
    YesRehash(String),
}

/// The output length of a new hash (argon2's default, 32 bytes).
const OUTPUT_LEN: usize = 32;

/// argon2id at m = 19,456 KiB, t = 2, p = 1 (OWASP's first recommendation).
fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| HashError::Failed)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A new argon2id hash of `password` under a fresh salt, as `PasswordHasher::hash_password`
/// makes it (same parameters, same PHC string), computed in this thread's kept memory.
fn hash_now(password: &[u8]) -> Result<String, HashError> {
    let argon2 = argon2()?;
    // The salt comes from the OS CSPRNG, as the library's own `hash_password` draws it.
    let salt = try_generate_salt().map_err(|_| HashError::Failed)?;
    let mut out = [0u8; OUTPUT_LEN];
    in_kept_memory(argon2.params().block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, &salt, &mut out, memory)
    })
    .map_err(|_| HashError::Failed)?;
    phc_string(&argon2, &salt, &out)
}

/// The PHC string of an argon2id v19 hash (what [`argon2`] makes) with this salt and output.
fn phc_string(argon2: &Argon2<'_>, salt: &[u8], output: &[u8]) -> Result<String, HashError> {
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|_| HashError::Failed)?,
        salt: Some(Salt::new(salt).map_err(|_| HashError::Failed)?),
        hash: Some(Output::new(output).map_err(|_| HashError::Failed)?),
    };
    Ok(hash.to_string())
}

/// What unknown users' sign-ins are checked against: the production parameters, a random
/// salt and a random output, so each check costs exactly a real verification's work and no
/// password matches (finding one would mean inverting argon2). Nothing is hashed to make it:
/// a hash at start-up left its 19 MiB of working memory resident in an idle server.
fn dummy_hash() -> Result<String, HashError> {
    let salt = try_generate_salt().map_err(|_| HashError::Failed)?;
    let output: [u8; OUTPUT_LEN] =
        rampart_crypto::random::bytes().map_err(|_| HashError::Failed)?;
    phc_string(&argon2()?, &salt, &output)
}

fn is_current(hash: &PasswordHash) -> bool {
    hash.algorithm.as_str() == "argon2id"
        && Params::try_from(hash).is_ok_and(|p| p.m_cost() >= 19 * 1024 && p.t_cost() >= 2)
}

thread_local! {
    /// The working memory of this thread's verifications, kept from one to the next (each
    /// hashing thread has its own). Allocated afresh, 19 MiB came back from the kernel as new
    /// pages every time: about 1,270 page faults a verification, and 108 verifications a second
    /// on two threads where the machine hashes 150 (measured 2026-12-06).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Whether `password` is the one `stored` (argon2, any variant and parameters) was made from:
/// what `PasswordVerifier::verify_password` does (the hash's own algorithm, version,
/// parameters and salt, and the constant-time comparison of `Output`), with the working
/// memory reused and wiped after use rather than allocated for each verification.
fn verify_argon2(password: &[u8], stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = stored.version.map(Version::try_from).transpose() else {
        return false;
    };
    // Takes the output length from the stored hash.
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let hashed = in_kept_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password, salt, &mut *out, memory)
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(out).is_ok_and(|computed| computed == *expected)
}

/// Runs `work` on the first `blocks` blocks of this thread's kept memory, then wipes them.
fn in_kept_memory(
    blocks: usize,
    work: impl FnOnce(&mut [Block]) -> argon2::Result<()>,
) -> argon2::Result<()> {
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        let result = memory
            .get_mut(..blocks)
            .map_or(Err(argon2::Error::MemoryTooLittle), work);
        // What is left of the password's hash does not stay in memory between sign-ins, though
        // the wipe is about 0.8 ms of a 14 ms hash (measured 2026-12-06). What the last pass
        // leaves is worth more to an attacker than the stored hash: version 0x13 XORs each new
        // block into the old one, and the addressing can be replayed from the blocks that
        // remain, so the first pass can be recomputed back to the blocks drawn straight from
        // the password's pre-hash, against which a guess costs a few BLAKE2b calls, not a
        // memory-hard hash. After a failed attempt the same holds for what was typed, often a
        // near miss.
        memory.fill(Block::new());
        result
    })
}

fn verify_now(password: &[u8], stored: &str) -> Result<Verified, HashError> {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        // bcrypt reads at most 72 bytes; an imported hash can only be checked as bcrypt does.
        return match bcrypt::verify(password, stored) {
            Ok(true) => Ok(Verified::YesRehash(hash_now(password)?)),
            _ => Ok(Verified::No),
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Ok(Verified::No);
    };
    let ok = verify_argon2(password, &parsed);
    match (ok, is_current(&parsed)) {
        (false, _) => Ok(Verified::No),
        (true, true) => Ok(Verified::Yes),
        (true, false) => Ok(Verified::YesRehash(hash_now(password)?)),
    }
}

/// The nice value hashing threads run at unless `[auth] hash_nice` says otherwise: well
/// below the request threads (nice 0), so a read that wakes preempts a hash, yet not the
/// lowest, so sign-ins still get a share of a machine that is busy with other work.
pub const DEFAULT_NICE: u8 = 10;

/// Hashes and verifies passwords off the async threads, at most `concurrency` at a time.
#[derive(Clone)]
pub struct Hasher {
    threads: HashThreads,
    permits: Arc<Semaphore>,
    queue: Arc<Semaphore>,
    queue_wait: Duration,
    dummy: Arc<str>,
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once, on as many threads of their own
    /// at nice value `nice`, with up to `queue` more waiting at most `queue_wait` each.
    pub fn new(
        concurrency: usize,
        queue: usize,
        queue_wait: Duration,
        nice: u8,
    ) -> Result<Self, HashError> {
        let concurrency = concurrency.max(1);
        let threads = HashThreads::start(concurrency, nice)?;
        let dummy = dummy_hash()?;
        Ok(Self {
            threads,
            permits: Arc::new(Semaphore::new(concurrency)),
            queue: Arc::new(Semaphore::new(concurrency + queue)),
            queue_wait,
            dummy: dummy.into(),
        })
    }

    /// `threads` hashes at once (0: as many as the cores this process may use) at nice value
    /// `nice`, a queue of 64, waiting at most 5 s. What keeps a sign-in flood from starving
    /// every other request is the priority: below the request threads, hashes run on the CPU
    /// they leave (measured in `bench/`, scenario 4's flood rows).
    pub fn with_threads(threads: usize, nice: u8) -> Result<Self, HashError> {
        let threads = if threads == 0 {
            Self::default_threads()
        } else {
            threads
        };
        Self::new(threads, 64, Duration::from_secs(5), nice)
    }

    /// How many hashes run at once when `[auth] hash_threads` is 0: as many as the cores this
    /// process may use.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// The default: [`Hasher::with_threads`] with 0 and [`DEFAULT_NICE`].
    pub fn for_this_machine() -> Result<Self, HashError> {
        Self::with_threads(0, DEFAULT_NICE)
    }

    /// The nice value the hashing threads run at, or why it could not be set.
    pub fn priority(&self) -> Result<u8, String> {
        self.threads.priority()
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let queued = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let running = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        // The permits go with the job, not with this future: a caller that stops waiting (a
        // client that hung up) leaves its hash running, and its slot stays taken until the
        // hash ends, so abandoned sign-ins cannot pile work up behind the bound.
        self.threads
            .run(move || {
                let _held = (queued, running);
                work()
            })
            .await?
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&self, password: &Secret<String>) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move || hash_now(password.expose().as_bytes()))
            .await
    }

    /// Checks `password` against `stored`; with no stored hash (unknown user, no password
    /// set) checks against a dummy so the time spent does not tell the two apart.
    pub async fn verify(
        &self,
        password: &Secret<String>,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let password = password.clone();
        let (stored, real) = match stored {
            Some(s) => (Arc::<str>::from(s), true),
            None => (self.dummy.clone(), false),
        };
        let verdict = self
            .run(move || verify_now(password.expose().as_bytes(), &stored))
            .await?;
        Ok(if real { verdict } else { Verified::No })
    }

    /// Spends one verification's work and answers nothing (for refusals that must not be
    /// faster than a real check).
    pub async fn waste(&self, password: &Secret<String>) -> Result<(), HashError> {
        self.verify(password, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn policy_defaults() {
        let p = PasswordPolicy::default();
        assert_eq!(p.check("Short1a"), Err(PolicyError::TooShort(10)));
        assert_eq!(p.check("alllowercase1"), Err(PolicyError::Classes));
        assert_eq!(p.check("ALLUPPERCASE1"), Err(PolicyError::Classes));
        assert_eq!(p.check("NoDigitsHereAtAll"), Err(PolicyError::Classes));
        assert_eq!(p.check("Good1Password"), Ok(()));
        let long = format!("Aa1{}", "x".repeat(250));
        assert_eq!(p.check(&long), Ok(()), "253 characters are allowed");
        assert_eq!(p.check(&"Aa1".repeat(100)), Err(PolicyError::TooLong(256)));
    }

    /// The verification that reuses its memory answers exactly as the argon2 crate's own
    /// `PasswordVerifier` does, across variants, versions, parameters and output lengths, and
    /// leaves no trace of the hash in the memory it keeps.
    #[test]
    fn verifying_in_kept_memory_agrees_with_the_library() {
        let salt = b"rampart-test-salt";
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(64, 1, 1, Some(32)),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(256, 3, 2, Some(64)),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x13,
                Params::new(64, 2, 1, Some(16)),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x10,
                Params::new(128, 1, 1, Some(32)),
            ),
        ];
        for (algorithm, version, params) in cases {
            let argon2 = Argon2::new(algorithm, version, params.unwrap());
            let stored = argon2
                .hash_password_with_salt(b"right password", salt)
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&stored).unwrap();
            for (password, right) in [
                (&b"right password"[..], true),
                (b"right passworD", false),
                (b"", false),
            ] {
                let library = Argon2::default().verify_password(password, &parsed).is_ok();
                assert_eq!(library, right, "{stored}");
                assert_eq!(verify_argon2(password, &parsed), right, "{stored}");
            }
            kept_memory_is_wiped();
        }
        // A stored hash with no output, or an unknown algorithm, is not a match.
        let bare = PasswordHash::new("$argon2id$v=19$m=64,t=1,p=1$cmFtcGFydC10ZXN0").unwrap();
        assert!(!verify_argon2(b"right password", &bare));
        let scrypt = PasswordHash::new(
            "$scrypt$ln=4,r=8,p=1$cmFtcGFydC10ZXN0LXNhbHQ$ZXhhbXBsZS1vdXRwdXQtMzItYnl0ZXMtbG9uZy4uLg",
        )
        .unwrap();
        assert!(!verify_argon2(b"right password", &scrypt));
    }

    fn costs(hash: &PasswordHash) -> (u32, u32, u32) {
        let p = Params::try_from(hash).unwrap();
        (p.m_cost(), p.t_cost(), p.p_cost())
    }

    fn kept_memory_is_wiped() {
        MEMORY.with_borrow(|m| {
            assert!(!m.is_empty());
            assert!(
                m.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)),
                "wiped"
            );
        });
    }

    #[test]
    fn new_hashes_are_what_the_library_makes_and_its_verifier_accepts() {
        let stored = hash_now(b"Right1Password").unwrap();
        kept_memory_is_wiped();
        let parsed = PasswordHash::new(&stored).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(parsed.version, Some(0x13));
        assert_eq!(costs(&parsed), (19 * 1024, 2, 1));
        assert_eq!(parsed.salt.unwrap().as_ref().len(), 16);
        assert_eq!(parsed.hash.unwrap().len(), OUTPUT_LEN);
        assert!(is_current(&parsed));
        // The library, given the same password and salt, makes the same string.
        let salt = parsed.salt.unwrap();
        let library = argon2()
            .unwrap()
            .hash_password_with_salt(b"Right1Password", salt.as_ref())
            .unwrap();
        assert_eq!(library.to_string(), stored);
        assert!(
            Argon2::default()
                .verify_password(b"Right1Password", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"Right1Passwore", &parsed)
                .is_err()
        );
        // A fresh salt each time.
        assert_ne!(hash_now(b"Right1Password").unwrap(), stored);
    }

    #[test]
    fn the_dummy_costs_a_real_verification_and_matches_nothing() {
        let dummy = dummy_hash().unwrap();
        let parsed = PasswordHash::new(&dummy).unwrap();
        // The production parameters: checking an unknown user costs what checking a user does.
        assert!(is_current(&parsed));
        assert_eq!(costs(&parsed), (19 * 1024, 2, 1));
        assert!(!verify_argon2(b"", &parsed));
        assert!(!verify_argon2(b"Right1Password", &parsed));
        kept_memory_is_wiped();
        assert_ne!(
            dummy_hash().unwrap(),
            dummy,
            "salt and output are drawn afresh"
        );
    }

    #[tokio::test]
    async fn argon2id_at_owasp_parameters_and_no_truncation() {
        let h = Hasher::new(1, 4, Duration::from_secs(5), DEFAULT_NICE).unwrap();
        let long = format!("Aa1{}", "y".repeat(200));
        let stored = h.hash(&Secret::new(long.clone())).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(
            h.verify(&Secret::new(long.clone()), Some(&stored))
                .await
                .unwrap(),
            Verified::Yes
        );
        // Differs only after byte 72, where bcrypt would stop reading.
        let other = format!("{}z", &long[..long.len() - 1]);
        assert_eq!(
            h.verify(&Secret::new(other), Some(&stored)).await.unwrap(),
            Verified::No
        );
        assert_eq!(
            h.verify(&Secret::new(long), None).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn bcrypt_imports_verify_and_ask_for_rehash() {
        let h = Hasher::new(1, 4, Duration::from_secs(5), DEFAULT_NICE).unwrap();
        let imported = bcrypt::hash("Imported1Password", 4).unwrap();
        match h
            .verify(&Secret::new("Imported1Password".into()), Some(&imported))
            .await
            .unwrap()
        {
            Verified::YesRehash(new) => assert!(new.starts_with("$argon2id$")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(
            h.verify(&Secret::new("Wrong1Password".into()), Some(&imported))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn an_abandoned_hash_keeps_its_slot_until_it_ends() {
        let h = Hasher::new(1, 0, Duration::from_millis(1), DEFAULT_NICE).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let abandoned = h.run(move || {
            let _ = held.recv();
            Ok(())
        });
        // The caller gives up while its job is still running (the job waits to be released).
        assert!(
            tokio::time::timeout(Duration::from_millis(50), abandoned)
                .await
                .is_err()
        );
        // Busy at once; a bug that freed the slot would queue this behind the blocked job,
        // hence the timeout rather than a hang.
        let second = tokio::time::timeout(Duration::from_secs(5), h.run(|| Ok(()))).await;
        assert!(
            matches!(second, Ok(Err(HashError::Busy))),
            "one slot, and the abandoned job still holds it: {second:?}"
        );
        release.send(()).unwrap();
        // Once the job ends its slot is free again (polled: the thread finishes on its own).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match h.run(|| Ok(())).await {
                Ok(()) => break,
                Err(HashError::Busy) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("the slot never came back: {e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy() {
        let h = Hasher::new(1, 0, Duration::from_millis(1), DEFAULT_NICE).unwrap();
        let pw = Secret::new("Good1Password".to_owned());
        let (a, b) = tokio::join!(h.hash(&pw), h.hash(&pw));
        // One slot and no queue: exactly one of two simultaneous hashes runs.
        assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
        assert!(matches!(a, Err(HashError::Busy)) || matches!(b, Err(HashError::Busy)));
    }
}
