//! The threads scripts run on, off the async runtimes' threads.
//!
//! A script is ordinary blocking code (rhai, and `command()` blocking on the bus), so it must not
//! run on a request thread. Tokio's `spawn_blocking` guards its pool with one mutex that every
//! spawning request thread and every idling pool thread contend for: under load the handover
//! costs about as much as a short script. A fixed set of threads fed by a lock-free channel hands a
//! script over without a lock, and a busy thread takes the next script without sleeping in between.
//!
//! A script run from a script thread must not wait for another script thread (a fixed pool could
//! deadlock): the commands that would run a script refuse to run from a script
//! (`Context::refuse_in_script`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_channel::{Sender, unbounded};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running scripts; they stop when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct ScriptThreads {
    jobs: Sender<Job>,
}

/// The script threads stopped, or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the script thread stopped before the script finished")]
pub struct ScriptThreadGone;

impl ScriptThreads {
    /// Starts `count` threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let (jobs, queue) = unbounded::<Job>();
        for index in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("hookbus-script-{index}")).spawn(move || {
                for job in queue {
                    // A panicking job drops its answer channel, which its caller sees; the thread
                    // goes on.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a script thread and waits for its result without blocking this thread.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ScriptThreadGone> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(job());
            }))
            .map_err(|_| ScriptThreadGone)?;
        answered.await.map_err(|_| ScriptThreadGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let threads = ScriptThreads::start(2).expect("threads");
        assert_eq!(threads.run(|| 6 * 7).await.ok(), Some(42));
        let name = threads.run(|| std::thread::current().name().map(str::to_owned)).await.ok().flatten();
        assert!(name.is_some_and(|name| name.starts_with("hookbus-script-")));
        assert!(threads.run(|| -> u8 { panic!("a broken job") }).await.is_err());
        assert_eq!(threads.run(|| "still here").await.ok(), Some("still here"));
    }
}
