//! The delivery engine: the lanes this instance owns (one per subscription it sends for), fed by
//! publishers in memory and by a poller from the queue; a bounded pool of senders taking work
//! from the lanes in turn; a writer that records outcomes in batches; and an announcer that
//! publishes hookbus's own operational events.

mod error;
mod job;
mod lanes;
mod operations;
mod poller;
mod record;
mod retry;
mod send;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use hookbus_core::CommandError;
use hookbus_store::Store;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

pub(crate) use error::EngineError;
pub use job::DeliveryBody;
pub(crate) use job::{EventBody, Job, Target};
pub(crate) use record::Outcome;
pub(crate) use send::Probe;
pub use send::Sender;

use self::lanes::{Lanes, Next};
use crate::{Outbound, OutboundSettings, catalog, entity::subscription};

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

/// This instance's share of delivery: the lanes it owns, and its senders.
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) lanes: Arc<Lanes>,
    /// This instance, as lane owner.
    pub(crate) instance: Uuid,
    /// Attempts under way, and outcomes not yet written: what a graceful stop waits for.
    in_flight: Arc<AtomicUsize>,
    /// Set when the instance stops: senders start nothing new.
    closing: Arc<AtomicBool>,
    /// Woken when work finishes here: a batch of outcomes written, a poll done.
    activity: Arc<Notify>,
    /// Wakes the poller before its next tick.
    poll_now: Arc<Notify>,
    started: Arc<AtomicBool>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("instance", &self.instance)
            .field("held", &self.lanes.held())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

impl Dispatcher {
    pub fn new(settings: &OutboundSettings) -> Self {
        Self {
            lanes: Arc::new(Lanes::new(settings)),
            instance: Uuid::new_v4(),
            in_flight: Arc::default(),
            closing: Arc::default(),
            activity: Arc::default(),
            poll_now: Arc::default(),
            started: Arc::default(),
        }
    }

    /// For a graceful stop: starts no new attempt, then waits (up to `limit`) for the attempts
    /// under way to finish and their outcomes to be written. Notifications not started keep their
    /// lease and are taken over when it runs out.
    pub async fn drain(&self, limit: std::time::Duration) {
        self.closing.store(true, Ordering::SeqCst);
        self.lanes.close();
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
    /// instance). Retries due later, and notifications held for an unhealthy endpoint's next
    /// probe, do not count. Woken by the engine's own progress, not by a timer.
    pub async fn settled(&self, store: &Store) -> Result<(), sea_orm::DbErr> {
        loop {
            let activity = self.activity.notified();
            tokio::pin!(activity);
            activity.as_mut().enable();
            let idle = self.lanes.held() == 0 && self.in_flight.load(Ordering::SeqCst) == 0;
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

    /// Asks the poller to run now (work was queued for lanes this instance does not hold).
    pub(crate) fn poll_now(&self) {
        self.poll_now.notify_one();
    }

    /// Starts the senders, the outcome writer and the poller. They stop when the runtime does.
    /// A second call starts nothing.
    pub(crate) fn spawn(&self, store: Store, outbound: Outbound) -> Vec<tokio::task::JoinHandle<()>> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let operations = operations::Announcer::spawn(store.clone(), outbound.clone());
        let (writer, writer_task) =
            record::Writer::spawn(store.clone(), outbound.clone(), self.clone(), operations.clone());
        let poller = poller::Poller {
            dispatcher: self.clone(),
            store,
            outbound: outbound.clone(),
            writer: writer.clone(),
            operations,
            poll_now: Arc::clone(&self.poll_now),
        };
        let senders = tokio::spawn(senders(self.clone(), outbound, writer));
        vec![senders, writer_task, poller.spawn()]
    }
}

/// Takes work from the lanes whenever a sender is free, and sends it.
async fn senders(dispatcher: Dispatcher, outbound: Outbound, writer: record::Writer) {
    let permits = Arc::new(Semaphore::new(outbound.settings.concurrency.max(1)));
    let lanes = Arc::clone(&dispatcher.lanes);
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let job = loop {
            if dispatcher.closing.load(Ordering::SeqCst) {
                return;
            }
            let ready = lanes.ready();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match lanes.next(hookbus_core::now()) {
                Next::Job(job) => break job,
                Next::Wait(Some(at)) => {
                    tokio::select! {
                        () = &mut ready => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                Next::Wait(None) => ready.await,
            }
        };
        // Counted until its outcome is written (the writer takes it off).
        dispatcher.in_flight.fetch_add(1, Ordering::SeqCst);
        let (writer, outbound, lanes, dispatcher) =
            (writer.clone(), outbound.clone(), Arc::clone(&lanes), dispatcher.clone());
        tokio::spawn(async move {
            let outcome = outbound.sender.deliver(&job, &outbound).await;
            if let Some(change) = lanes.attempted(&job, &outcome, hookbus_core::now()) {
                lanes.changed(change);
                dispatcher.poll_now();
            }
            writer.record(outcome);
            drop(permit);
        });
    }
}
