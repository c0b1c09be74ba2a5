//! The threads password hashes run on: a few of their own, started once, each lowered in
//! scheduling priority (a higher nice value, Linux only) before its first hash.
//!
//! Why threads of their own: a thread can lower its own priority but, without privileges,
//! never raise it again, so hashing cannot borrow tokio's blocking pool (whose threads go on
//! to serve file and other blocking work). Why a lower priority: a sign-in flood is many hashes
//! of about 20 ms of CPU each; at the same priority as the request threads they take their
//! share of every core, and a read waits behind them. Below the request threads, a hash runs
//! on whatever the rest of the server leaves, and a read that wakes takes its core at once.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// One unit of work, run to completion on a hashing thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The highest nice value Linux accepts (the lowest priority short of `SCHED_IDLE`).
pub const MAX_NICE: u8 = 19;

/// Why a job did not produce its answer.
#[derive(Debug, thiserror::Error)]
pub enum ThreadsError {
    /// A hashing thread could not be started.
    #[error("starting a password-hashing thread: {0}")]
    Start(#[source] std::io::Error),
    /// Every hashing thread has gone (none is left to take the job).
    #[error("no password-hashing thread is running")]
    Gone,
    /// The job panicked; its thread carries on with the next one.
    #[error("a password-hashing job panicked")]
    Panicked,
}

/// A fixed set of hashing threads fed from one queue; dropping the last clone of the handle
/// lets them finish their current job and exit.
#[derive(Clone)]
pub struct HashThreads {
    jobs: Arc<Sender<Job>>,
    /// The nice value the threads reached, or why it could not be set.
    priority: Result<u8, String>,
}

impl HashThreads {
    /// Starts `count` threads (at least one), each raising its nice value to `nice` (at most
    /// [`MAX_NICE`]) before it takes a job; returns once every thread has done so.
    pub fn start(count: usize, nice: u8) -> Result<Self, ThreadsError> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready) = channel();
        let count = count.max(1);
        for i in 0..count {
            let rx = rx.clone();
            let ready_tx = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("rampart-hash-{i}"))
                .spawn(move || {
                    let _ = ready_tx.send(lower_priority(nice.min(MAX_NICE)));
                    drop(ready_tx);
                    take_jobs(&rx);
                })
                .map_err(ThreadsError::Start)?;
        }
        drop(ready_tx);
        let reports = (0..count)
            .map(|_| ready.recv().map_err(|_| ThreadsError::Gone))
            .collect::<Result<Vec<_>, _>>()?;
        // Every thread reports once: the first failure is the answer to show, if any.
        let priority = reports.into_iter().try_fold(0, |_, report| report);
        Ok(Self {
            jobs: Arc::new(tx),
            priority,
        })
    }

    /// Runs `work` on a hashing thread and waits for its answer without blocking the caller's
    /// async thread. Callers bound how many jobs they hand over at once (`Hasher`'s permits):
    /// the queue itself does not.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ThreadsError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic in one hash must not take its thread, or the pool would shrink.
            let answer = std::panic::catch_unwind(AssertUnwindSafe(work));
            let _ = tx.send(answer);
        });
        self.jobs.send(job).map_err(|_| ThreadsError::Gone)?;
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ThreadsError::Panicked),
            Err(_) => Err(ThreadsError::Gone),
        }
    }

    /// The nice value the threads run at, or why it could not be set.
    pub fn priority(&self) -> Result<u8, String> {
        self.priority.clone()
    }
}

fn take_jobs(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            // Every sender is gone: the hasher was dropped.
            Err(_) => return,
        }
    }
}

/// Sets the calling thread's nice value (Linux keeps one per thread) and reads it back.
#[cfg(target_os = "linux")]
fn lower_priority(nice: u8) -> Result<u8, String> {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = rustix::thread::gettid();
    setpriority_process(Some(tid), i32::from(nice)).map_err(|e| e.to_string())?;
    let now = getpriority_process(Some(tid)).map_err(|e| e.to_string())?;
    u8::try_from(now).map_err(|_| format!("nice value {now} after setting {nice}"))
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) -> Result<u8, String> {
    Err("thread priorities are only set on Linux".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_at_the_lowered_priority_and_the_caller_keeps_its_own() {
        let before = own_nice();
        let threads = HashThreads::start(2, 15).unwrap();
        let seen = threads.run(own_nice).await.unwrap();
        // Nice values only go up without privileges; a test runner already above 15 stays.
        assert_eq!(seen, before.max(15));
        assert_eq!(threads.priority(), Ok(u8::try_from(seen).unwrap()));
        assert_eq!(own_nice(), before, "the calling thread is untouched");
        let clamped = HashThreads::start(1, 200).unwrap();
        assert_eq!(clamped.run(own_nice).await.unwrap(), 19);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_keeps_working() {
        let threads = HashThreads::start(1, 0).unwrap();
        let boom = threads.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(boom, Err(ThreadsError::Panicked)), "{boom:?}");
        // The only thread survived its job's panic.
        assert_eq!(threads.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn jobs_run_side_by_side_on_separate_threads() {
        let threads = HashThreads::start(2, 0).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (a, b) = (barrier.clone(), barrier);
        // Each job waits for the other: this finishes only if both run at once.
        let (x, y) = tokio::join!(
            threads.run(move || a.wait().is_leader()),
            threads.run(move || b.wait().is_leader())
        );
        assert_ne!(x.unwrap(), y.unwrap(), "exactly one of two is the leader");
    }
}
