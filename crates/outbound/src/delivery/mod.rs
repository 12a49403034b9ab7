//! The delivery engine: in-memory hand-off of freshly published notifications, a poller for the
//! rest of the queue, a bounded pool of senders, and a writer that records outcomes in batches.

mod claim;
mod error;
mod job;
mod record;
mod retry;
mod send;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use hookbus_core::CommandError;
use hookbus_store::Store;
use tokio::sync::{Notify, Semaphore, mpsc};

pub(crate) use error::EngineError;
pub(crate) use job::{EventBody, Job, Target};
pub(crate) use record::Outcome;
pub(crate) use send::Probe;
pub use send::Sender;

use crate::{Outbound, catalog, entity::subscription};

/// Sends a signed `ping` event to `subscription` now, outside the queue, and reports what its
/// endpoint answered; nothing is recorded.
pub(crate) async fn ping(outbound: &Outbound, subscription: &subscription::Model) -> Result<Probe, CommandError> {
    let now = hookbus_core::now();
    let id = uuid::Uuid::now_v7();
    let ping = crate::entity::event::Model {
        id,
        event_key: id.to_string(),
        event_name: catalog::PING.to_owned(),
        resource: None,
        data: serde_json::json!({"subscriptionId": subscription.id}),
        changed_attributes: None,
        simulated: false,
        notifications: 1,
        occurred_at: now,
    };
    let job = Job {
        notification_id: id,
        attempts: 0,
        event: EventBody::of(&ping)?,
        target: Target::of(outbound, subscription, now)?,
    };
    Ok(outbound.sender.probe(&job, outbound).await)
}

/// This instance's share of the queue: jobs waiting for a sender, and the senders.
#[derive(Clone)]
pub struct Dispatcher {
    jobs: mpsc::UnboundedSender<Job>,
    receiver: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>>,
    /// Jobs handed over and not yet finished (waiting or in flight).
    backlog: Arc<AtomicUsize>,
    capacity: usize,
    /// Attempts under way, and outcomes not yet written: what a graceful stop waits for.
    in_flight: Arc<AtomicUsize>,
    /// Set when the instance stops: senders start nothing new.
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// Woken when work finishes here: a batch of outcomes written, a poll done.
    activity: Arc<Notify>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("backlog", &self.backlog.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Dispatcher {
    pub fn new(capacity: usize) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        Self {
            jobs,
            receiver: Arc::new(std::sync::Mutex::new(Some(receiver))),
            backlog: Arc::default(),
            capacity: capacity.max(1),
            in_flight: Arc::default(),
            closing: Arc::default(),
            activity: Arc::default(),
        }
    }

    /// For a graceful stop: starts no new attempt, then waits (up to `limit`) for the attempts
    /// under way to finish and their outcomes to be written. Notifications not started keep their
    /// lease and are taken over when it runs out.
    pub async fn drain(&self, limit: std::time::Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let finished = async {
            loop {
                let activity = self.activity.notified();
                tokio::pin!(activity);
                activity.as_mut().enable();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                activity.await;
            }
        };
        let _ = tokio::time::timeout(limit, finished).await;
    }

    /// Waits until this instance has nothing to do for now: no notification in memory or in
    /// flight, no outcome unwritten, and in the queue nothing due and nothing being sent (by any
    /// instance). Retries due later do not count. Woken by the engine's own progress, not by a
    /// timer.
    pub async fn settled(&self, store: &Store) -> Result<(), sea_orm::DbErr> {
        loop {
            let activity = self.activity.notified();
            tokio::pin!(activity);
            activity.as_mut().enable();
            let idle = self.backlog.load(Ordering::SeqCst) == 0 && self.in_flight.load(Ordering::SeqCst) == 0;
            if idle && !crate::queue::busy(store.db(), hookbus_core::now()).await? {
                return Ok(());
            }
            activity.await;
        }
    }

    /// Tells whoever waits for this instance to settle that work finished.
    pub(crate) fn progressed(&self) {
        self.activity.notify_waiters();
    }

    /// `attempts` attempts are over and their outcomes written.
    pub(crate) fn finished(&self, attempts: usize) {
        self.in_flight.fetch_sub(attempts, Ordering::SeqCst);
        self.progressed();
    }

    /// Reserves room for `count` jobs. Without room, the notifications are left in the queue for
    /// the poller (of this or another instance) to claim later.
    pub(crate) fn reserve(&self, count: usize) -> bool {
        self.backlog
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + count <= self.capacity).then_some(held + count)
            })
            .is_ok()
    }

    /// Room left, for the poller.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.backlog.load(Ordering::Acquire))
    }

    /// Gives back a reservation that was not used.
    pub(crate) fn release(&self, count: usize) {
        self.backlog.fetch_sub(count, Ordering::AcqRel);
    }

    /// Hands reserved jobs to the senders.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            if self.jobs.send(job).is_err() {
                // The engine stopped; the notification's lease runs out and it is claimed again.
                self.release(1);
            }
        }
    }

    /// Starts the senders, the outcome writer and the poller. They stop when the runtime does.
    /// A second call starts nothing: the jobs have one receiver.
    pub(crate) fn spawn(&self, store: Store, outbound: Outbound) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(mut receiver) = self.receiver.lock().ok().and_then(|mut slot| slot.take()) else {
            return Vec::new();
        };
        let (writer, writer_task) = record::Writer::spawn(store.clone(), outbound.clone(), self.clone());
        let sender = outbound.sender.clone();
        let permits = Arc::new(Semaphore::new(outbound.settings.concurrency.max(1)));
        let backlog = Arc::clone(&self.backlog);
        let poller =
            claim::Poller { dispatcher: self.clone(), store, outbound: outbound.clone(), writer: writer.clone() };
        let in_flight = Arc::clone(&self.in_flight);
        let closing = Arc::clone(&self.closing);
        let senders = tokio::spawn(async move {
            while let Some(job) = receiver.recv().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                if closing.load(Ordering::SeqCst) {
                    break;
                }
                // Counted until its outcome is written (the writer takes it off).
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (sender, writer, outbound, backlog) =
                    (sender.clone(), writer.clone(), outbound.clone(), Arc::clone(&backlog));
                tokio::spawn(async move {
                    let outcome = sender.deliver(&job, &outbound).await;
                    writer.record(outcome);
                    backlog.fetch_sub(1, Ordering::AcqRel);
                    drop(permit);
                });
            }
        });
        vec![senders, writer_task, poller.spawn()]
    }
}
