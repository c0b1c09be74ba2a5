//! Job kinds, their handlers and the registry a worker runs them from.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rampart_core::JobId;
use rampart_store::StoreError;
use rampart_store::jobs::JobSubject;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of job: its payload type, its stable name and its retry policy.
///
/// The payload is stored in the database, which is backed up: it carries **ids only** (which
/// user, which organization, which kind of mail), never an address, a token, a secret or
/// other personal data. The handler reads what it needs when it runs, through the ordinary
/// doors (a tenant transaction, an organization's ledger).
///
/// Jobs run **at least once**: a worker that dies mid-job, or is stopped after the shutdown
/// grace, leaves the job to run again from the start. A handler must therefore be safe to run
/// twice (check before acting, or act idempotently).
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name stored with each job; never reuse one for another payload shape.
    const KIND: &'static str;
    /// Attempts (runs that failed or whose worker stopped) before the job is dead.
    const MAX_ATTEMPTS: u32 = 5;

    /// Whom the job acts for: a tenant, a person, or the platform (the default).
    fn subject(&self) -> JobSubject {
        JobSubject::Platform
    }
}

/// Why a run failed. The message is stored as the job's `last_error` and shown to an operator
/// (`rampart jobs list`): write it for them, and never put a secret, a token or personal data
/// (an address, a name) in it; ids are fine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    message: String,
    permanent: bool,
}

impl JobError {
    /// A failure that may pass (a service unreachable, a timeout): the job is retried after a
    /// backoff until it runs out of attempts.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that another attempt cannot fix (a payload that no longer makes sense): the
    /// job is dead at once, for an operator to look at.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }

    /// Whether another attempt is pointless.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

/// What a handler is told about the run it is doing.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The job.
    pub id: JobId,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Whom the job acts for.
    pub subject: JobSubject,
}

/// Runs jobs of kind `J`.
pub trait Handler<J: Job>: Send + Sync + 'static {
    /// Does the job's work. Cancelled (dropped) if the worker loses the job's lease or stops
    /// after the shutdown grace, in which case the job runs again later.
    fn handle(&self, job: J, run: RunInfo) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A boxed, sendable future (the registry's handlers are of many types).
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A handler with its payload type erased.
trait Erased: Send + Sync {
    fn run(&self, payload: &str, run: RunInfo) -> BoxFuture<Result<(), JobError>>;
}

struct Typed<J, H> {
    handler: Arc<H>,
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J: Job, H: Handler<J>> Erased for Typed<J, H> {
    fn run(&self, payload: &str, run: RunInfo) -> BoxFuture<Result<(), JobError>> {
        let handler = self.handler.clone();
        let job = serde_json::from_str::<J>(payload);
        Box::pin(async move {
            // The serde message may quote the payload; the category and place are enough.
            let job = job.map_err(|e| {
                JobError::permanent(format!(
                    "the stored payload is not a valid `{}` job ({:?} error at line {} column {})",
                    J::KIND,
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            })?;
            handler.handle(job, run).await
        })
    }
}

/// The job kinds a worker runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Erased>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// No kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobs of kind `J` with `handler` (replacing an earlier handler of that kind).
    pub fn register<J: Job, H: Handler<J>>(&mut self, handler: H) -> &mut Self {
        self.handlers.insert(
            J::KIND,
            Arc::new(Typed::<J, H> {
                handler: Arc::new(handler),
                _job: std::marker::PhantomData,
            }),
        );
        self
    }

    /// The kinds registered: a worker claims only these, so a node that does not know a kind
    /// (an older version mid-deploy) leaves its jobs to one that does.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// The run of one claimed job; `None` for a kind not registered.
    pub(crate) fn start(
        &self,
        kind: &str,
        payload: &str,
        run: RunInfo,
    ) -> Option<BoxFuture<Result<(), JobError>>> {
        self.handlers.get(kind).map(|h| h.run(payload, run))
    }
}

/// Longest serialized payload, in bytes (the table refuses longer): a payload holds ids.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Why a job could not be enqueued or looked at.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job could not be serialized.
    #[error("the `{kind}` job could not be serialized")]
    Payload {
        /// The job kind.
        kind: &'static str,
    },
    /// The payload is larger than ids make: something that is not an id was put in it.
    #[error(
        "the `{kind}` job's payload is over {MAX_PAYLOAD_BYTES} bytes: a job carries ids, not data"
    )]
    PayloadTooLarge {
        /// The job kind.
        kind: &'static str,
    },
}

/// The serialized payload of `job`.
pub(crate) fn payload<J: Job>(job: &J) -> Result<String, QueueError> {
    let text = serde_json::to_string(job).map_err(|_| QueueError::Payload { kind: J::KIND })?;
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(QueueError::PayloadTooLarge { kind: J::KIND });
    }
    Ok(text)
}
