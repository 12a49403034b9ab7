//! The lanes this instance owns, in memory, and the order senders take their work in.
//!
//! Each owned lane holds a short buffer of its subscription's due notifications. Senders take
//! work round robin over the lanes that may send now, one notification per turn, so a
//! subscription's backlog delays another subscription's fresh notification by at most one turn.
//! A lane may send when:
//! - fewer than its `maxConcurrency` attempts are in flight (one, for a FIFO lane);
//! - its rate limit has a token (a bucket of one second's worth, starting with one token);
//! - its endpoint is healthy, or unhealthy with a probe due and none under way.
//!
//! A lane counts its endpoint's consecutive timeouts and connection failures; at
//! `outbound.breaker_failures` the endpoint is unhealthy: the buffered notifications go back to
//! the queue untried, and one probe is sent after a cool-down that doubles up to
//! `outbound.breaker_max_cooldown_secs`. An answered probe makes it healthy again.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::Duration,
};

use chrono::Duration as Span;
use hookbus_core::Timestamp;
use tokio::{sync::Notify, time::Instant};
use uuid::Uuid;

use super::{Job, Outcome};
use crate::{OutboundSettings, lane::Health, queue::Fill, status::Ordering};

/// What an attempt changed that must be written or announced.
#[derive(Debug, Clone)]
pub(crate) enum LaneChange {
    /// The endpoint's breaker opened, stayed open after a failed probe, or closed.
    Health { subscription_id: Uuid, health: Health, previous: Health, failures: u32 },
}

/// Why notifications were held back, for `hookbus_deliveries_held_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HeldReason {
    /// Taken back from memory when the endpoint became unhealthy.
    Unhealthy,
    /// Waited for the subscription's rate limit.
    RateLimit,
    /// Taken back behind a failed notification of a FIFO subscription.
    Ordering,
}

impl HeldReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Unhealthy => "unhealthy",
            Self::RateLimit => "rate_limit",
            Self::Ordering => "ordering",
        }
    }
}

/// The breaker's knobs, from the settings.
#[derive(Debug, Clone, Copy)]
struct Breaker {
    failures: u32,
    cooldown_secs: u32,
    max_cooldown_secs: u32,
}

/// How many notifications a lane of `limit` concurrent attempts buffers: enough to keep its
/// attempts busy, and to catch up on a backlog, while the poller reads more; bounded, so that the
/// instance's `queue_capacity` is shared by many lanes.
fn buffer_of(limit: usize) -> usize {
    (limit * 16).clamp(16, 512)
}

#[derive(Debug)]
struct Lane {
    /// Until when this instance holds the lane.
    lease_until: Timestamp,
    limit: usize,
    rate: Option<f64>,
    fifo: bool,
    jobs: VecDeque<Job>,
    in_flight: usize,
    /// Notifications in memory: buffered, in flight, or with their outcome not yet written. The
    /// queue reads skip them, so none is taken twice.
    held: HashSet<Uuid>,
    /// Room promised to publishers that have not handed their jobs over yet.
    reserved: usize,
    health: Health,
    failures: u32,
    probing: bool,
    tokens: f64,
    refilled: Instant,
    in_ring: bool,
    /// The first buffered job was counted as waiting for the rate limit.
    rate_counted: bool,
    /// The last read of its queue found less than it asked for: a buffer running low does not
    /// call the poller until new work is signalled (or the next regular poll).
    drained: bool,
    /// The poller was asked to read more for it.
    fill_asked: bool,
    /// A FIFO lane whose notification waits for a retry: nothing more is read until its outcome
    /// is written.
    blocked: bool,
    /// When the lane last had nothing in memory; released after a while of that.
    idle_since: Option<Instant>,
    /// Being released: it takes no more work.
    releasing: bool,
    /// Counts the times the lane's buffer was taken back (its endpoint became unhealthy, a FIFO
    /// lane's notification failed): a read of its queue that began before is stale, and what it
    /// found goes back.
    generation: u64,
}

impl Lane {
    fn new(lease_until: Timestamp, health: Health, defaults: usize) -> Self {
        Self {
            lease_until,
            limit: defaults,
            rate: None,
            fifo: false,
            jobs: VecDeque::new(),
            in_flight: 0,
            held: HashSet::new(),
            reserved: 0,
            health,
            failures: 0,
            probing: false,
            tokens: 1.0,
            refilled: Instant::now(),
            in_ring: false,
            rate_counted: false,
            drained: false,
            fill_asked: false,
            blocked: false,
            idle_since: Some(Instant::now()),
            releasing: false,
            generation: 0,
        }
    }

    fn limit(&self) -> usize {
        if self.fifo { 1 } else { self.limit }
    }

    fn room(&self) -> usize {
        buffer_of(self.limit()).saturating_sub(self.jobs.len() + self.reserved)
    }

    /// Takes a rate token if there is one; else the time one is ready.
    fn take_token(&mut self, now: Instant) -> Result<(), Instant> {
        let Some(rate) = self.rate else { return Ok(()) };
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// A lane taken from the database.
#[derive(Debug, Clone)]
pub(crate) struct Adopted {
    pub subscription_id: Uuid,
    pub lease_until: Timestamp,
    pub health: Health,
    pub max_concurrency: Option<i32>,
    pub rate_limit_per_second: Option<i32>,
    pub ordering: Ordering,
}

/// Every lane this instance owns.
#[derive(Debug)]
pub(crate) struct Lanes {
    state: Mutex<State>,
    /// Woken when a lane may have become able to send.
    ready: Notify,
    /// Woken when a lane's buffer runs low and its queue may hold more.
    fill_wanted: Notify,
    breaker: Breaker,
    default_limit: usize,
    /// No attempt starts unless its notification stays leased for this long.
    margin: Span,
}

#[derive(Debug, Default)]
struct State {
    lanes: HashMap<Uuid, Lane>,
    ring: VecDeque<Uuid>,
    /// Jobs in memory across lanes, and the most there may be.
    held: usize,
    capacity: usize,
    /// The earliest time a rate-limited lane gets its next token.
    wake_at: Option<Instant>,
    /// Notifications to give back to the queue (their lease released), with why.
    give_back: Vec<(Uuid, Option<HeldReason>)>,
    /// Waits counted for the metrics, not yet reported.
    held_counts: HashMap<HeldReason, u64>,
    /// Health changes not yet written.
    changes: Vec<LaneChange>,
}

/// What a sender gets from [`Lanes::next`].
pub(crate) enum Next {
    Job(Job),
    /// Nothing may start now; try again when woken or at this time.
    Wait(Option<Instant>),
}

impl Lanes {
    pub fn new(settings: &OutboundSettings) -> Self {
        let to_u32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            state: Mutex::new(State { capacity: settings.queue_capacity.max(1), ..State::default() }),
            ready: Notify::new(),
            fill_wanted: Notify::new(),
            breaker: Breaker {
                failures: settings.breaker_failures.max(1),
                cooldown_secs: to_u32(settings.breaker_cooldown_secs.max(1)),
                max_cooldown_secs: to_u32(
                    settings.breaker_max_cooldown_secs.max(settings.breaker_cooldown_secs).max(1),
                ),
            },
            default_limit: settings.per_subscription_concurrency.max(1),
            // An attempt's time and a second, but never more than half the lease, which is
            // renewed when half spent.
            margin: Span::milliseconds(
                (i64::try_from(settings.timeout_ms).unwrap_or(i64::MAX / 4) + 1_000)
                    .min(i64::try_from(settings.lease_secs.saturating_mul(500)).unwrap_or(i64::MAX / 4)),
            ),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bookkeeping behind; carry on with it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Owns a lane until `lease_until`, with its subscription's settings; a lane already owned
    /// keeps what it knows of its endpoint.
    pub fn adopt(&self, adopted: Adopted) {
        let mut state = self.state();
        let default = self.default_limit;
        let lane = state
            .lanes
            .entry(adopted.subscription_id)
            .and_modify(|lane| lane.lease_until = lane.lease_until.max(adopted.lease_until))
            .or_insert_with(|| Lane::new(adopted.lease_until, adopted.health, default));
        lane.limit = adopted.max_concurrency.map_or(default, |n| usize::try_from(n).unwrap_or(1)).max(1);
        lane.rate = adopted.rate_limit_per_second.map(f64::from);
        lane.fifo = adopted.ordering == Ordering::Fifo;
    }

    /// The owned lanes whose lease ends before `before`: to renew.
    pub fn expiring(&self, before: Timestamp) -> Vec<Uuid> {
        self.state().lanes.iter().filter(|(_, lane)| lane.lease_until < before).map(|(id, _)| *id).collect()
    }

    /// The renewal of `renewed` until `lease_until`; the other lanes of `asked` were lost to
    /// another instance: their buffered notifications are dropped (the new owner sends them).
    pub fn renewed(&self, asked: &[Uuid], renewed: &[Uuid], lease_until: Timestamp) {
        let mut state = self.state();
        let kept: HashSet<&Uuid> = renewed.iter().collect();
        for id in asked {
            if kept.contains(id) {
                if let Some(lane) = state.lanes.get_mut(id) {
                    lane.lease_until = lease_until;
                }
            } else {
                tracing::warn!(subscription_id = %id, "delivery lane taken over by another instance");
                drop_lane(&mut state, *id);
            }
        }
    }

    /// Owned lanes with nothing in memory for `idle` or longer, marked as being released: they
    /// take no more work until [`released`](Self::released) forgets them (or
    /// [`kept`](Self::kept) takes the mark back).
    pub fn idle(&self, idle: Duration) -> Vec<Uuid> {
        let now = Instant::now();
        let mut state = self.state();
        let mut releasing = Vec::new();
        for (id, lane) in &mut state.lanes {
            let quiet = lane.held.is_empty() && lane.reserved == 0;
            if quiet && lane.idle_since.is_some_and(|since| now.duration_since(since) >= idle) {
                lane.releasing = true;
                releasing.push(*id);
            }
        }
        releasing
    }

    /// Forgets lanes given up in the database.
    pub fn released(&self, lanes: &[Uuid]) {
        let mut state = self.state();
        for id in lanes {
            drop_lane(&mut state, *id);
        }
    }

    /// Takes back the release mark of lanes whose release failed.
    pub fn kept(&self, lanes: &[Uuid]) {
        let mut state = self.state();
        for id in lanes {
            if let Some(lane) = state.lanes.get_mut(id) {
                lane.releasing = false;
            }
        }
    }

    /// What each owned lane wants from the queue now, the emptiest lanes first, within the room
    /// left in memory.
    pub fn fills(&self, now: Timestamp) -> Vec<Fill> {
        let mut state = self.state();
        let mut room_left = state.capacity.saturating_sub(state.held);
        let mut wanting: Vec<(usize, Uuid)> = state
            .lanes
            .iter()
            .filter(|(_, lane)| lane.lease_until > now + self.margin && !lane.blocked && !lane.releasing)
            .map(|(id, lane)| (lane.jobs.len(), *id))
            .collect();
        wanting.sort_unstable();
        let mut fills = Vec::new();
        let mut probes_due = Vec::new();
        for (_, id) in wanting {
            if room_left == 0 {
                break;
            }
            let Some(lane) = state.lanes.get_mut(&id) else { continue };
            let room = match &lane.health {
                Health::Healthy => lane.room(),
                // One probe, when it is due, and nothing else.
                Health::Unhealthy { next_probe_at, .. } => {
                    let due = *next_probe_at <= now && !lane.probing;
                    if due && !lane.jobs.is_empty() {
                        // Its probe is buffered already: back in the senders' turns.
                        probes_due.push(id);
                    }
                    usize::from(due && lane.held.is_empty())
                }
            };
            lane.fill_asked = false;
            if room == 0 {
                continue;
            }
            let room = room.min(room_left);
            room_left -= room;
            let held = lane.held.iter().copied().collect();
            fills.push(Fill { subscription_id: id, room, fifo: lane.fifo, held, generation: lane.generation });
        }
        if !probes_due.is_empty() {
            for id in probes_due {
                enqueue(&mut state, id);
            }
            drop(state);
            self.ready.notify_one();
        }
        fills
    }

    /// The reads of `fills` found `found` notifications per lane: lanes that got less than they
    /// asked for wait for a signal before asking again.
    pub fn filled(&self, fills: &[Fill], found: &HashMap<Uuid, usize>) {
        let mut state = self.state();
        for fill in fills {
            if let Some(lane) = state.lanes.get_mut(&fill.subscription_id) {
                lane.drained = found.get(&fill.subscription_id).copied().unwrap_or(0) < fill.room;
            }
        }
    }

    /// Work was queued in the database for owned lanes (not handed over in memory).
    pub fn queued(&self, subscriptions: &[Uuid]) {
        let mut state = self.state();
        let mut wake = false;
        for id in subscriptions {
            if let Some(lane) = state.lanes.get_mut(id) {
                lane.drained = false;
                wake = true;
            }
        }
        drop(state);
        if wake {
            self.fill_wanted.notify_one();
        }
    }

    /// Resolves when a lane asks for more work.
    pub fn fill_wanted(&self) -> &Notify {
        &self.fill_wanted
    }

    /// Room in owned lanes for jobs a publisher is about to queue: `Some(lease_until)` per
    /// subscription whose lane takes its notification in memory (owned, healthy, unordered, with
    /// room); the room is held until [`Lanes::hand_over`] or [`Lanes::cancel`].
    pub fn reserve(&self, subscriptions: &[Uuid], now: Timestamp) -> Vec<Option<Timestamp>> {
        let mut state = self.state();
        let mut room_left = state.capacity.saturating_sub(state.held);
        let margin = self.margin;
        let reserved: Vec<Option<Timestamp>> = subscriptions
            .iter()
            .map(|id| {
                let lane = state.lanes.get_mut(id)?;
                let takes = room_left > 0
                    && !lane.releasing
                    && !lane.fifo
                    && lane.health == Health::Healthy
                    && lane.lease_until > now + margin
                    && lane.room() > 0;
                takes.then(|| {
                    lane.reserved += 1;
                    lane.idle_since = None;
                    room_left -= 1;
                    lane.lease_until
                })
            })
            .collect();
        state.held += reserved.iter().flatten().count();
        reserved
    }

    /// Gives back reservations that were not used (publishing failed).
    pub fn cancel(&self, subscriptions: &[Uuid]) {
        let mut state = self.state();
        for id in subscriptions {
            if let Some(lane) = state.lanes.get_mut(id) {
                lane.reserved = lane.reserved.saturating_sub(1);
            }
            state.held = state.held.saturating_sub(1);
        }
    }

    /// Hands reserved jobs to their lanes. A job whose lane is gone meanwhile is given back.
    pub fn hand_over(&self, jobs: Vec<Job>) {
        let mut state = self.state();
        for job in jobs {
            let id = job.target.id;
            match state.lanes.get_mut(&id) {
                Some(lane) => {
                    lane.reserved = lane.reserved.saturating_sub(1);
                    configure(lane, &job, self.default_limit);
                    lane.held.insert(job.notification_id);
                    lane.jobs.push_back(job);
                    enqueue(&mut state, id);
                }
                None => {
                    state.held = state.held.saturating_sub(1);
                    state.give_back.push((job.notification_id, None));
                }
            }
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Adds jobs read from the queue for `fills` to their lanes (in the order given). A lane that
    /// took its buffer back meanwhile makes its read stale: those jobs go back to the queue.
    pub fn push(&self, jobs: Vec<Job>, fills: &[Fill]) {
        let generations: HashMap<Uuid, u64> =
            fills.iter().map(|fill| (fill.subscription_id, fill.generation)).collect();
        let mut state = self.state();
        for job in jobs {
            let id = job.target.id;
            let current = state.lanes.get(&id).map(|lane| lane.generation);
            let Some(lane) = state.lanes.get_mut(&id).filter(|_| current == generations.get(&id).copied()) else {
                state.give_back.push((job.notification_id, None));
                continue;
            };
            if !lane.held.insert(job.notification_id) {
                continue;
            }
            configure(lane, &job, self.default_limit);
            lane.idle_since = None;
            lane.jobs.push_back(job);
            state.held += 1;
            enqueue(&mut state, id);
        }
        drop(state);
        self.ready.notify_waiters();
        self.ready.notify_one();
    }

    /// The next job a sender may start, round robin over the lanes that may send.
    pub fn next(&self, now: Timestamp) -> Next {
        let mut state = self.state();
        let clock = Instant::now();
        let mut wake_at: Option<Instant> = None;
        let turns = state.ring.len();
        for _ in 0..turns {
            let Some(id) = state.ring.pop_front() else { break };
            let state = &mut *state;
            let Some(lane) = state.lanes.get_mut(&id) else { continue };
            lane.in_ring = false;
            // Buffered jobs whose lease will not outlast an attempt go back to the queue.
            if lane.lease_until <= now + self.margin {
                while let Some(job) = lane.jobs.pop_front() {
                    lane.held.remove(&job.notification_id);
                    state.held = state.held.saturating_sub(1);
                    state.give_back.push((job.notification_id, None));
                }
                continue;
            }
            if lane.jobs.is_empty() || lane.in_flight >= lane.limit() {
                continue;
            }
            let probe = match &lane.health {
                Health::Healthy => false,
                Health::Unhealthy { next_probe_at, .. } if *next_probe_at <= now && !lane.probing => true,
                Health::Unhealthy { .. } => continue,
            };
            if let Err(ready_at) = lane.take_token(clock) {
                if !std::mem::replace(&mut lane.rate_counted, true) {
                    *state.held_counts.entry(HeldReason::RateLimit).or_default() += 1;
                }
                wake_at = Some(wake_at.map_or(ready_at, |at| at.min(ready_at)));
                // Back in the ring: it may send once the token is there.
                lane.in_ring = true;
                state.ring.push_back(id);
                continue;
            }
            let Some(job) = lane.jobs.pop_front() else { continue };
            lane.rate_counted = false;
            lane.in_flight += 1;
            lane.probing |= probe;
            let low = lane.jobs.len() < buffer_of(lane.limit()) / 2;
            if low && !lane.drained && !lane.fill_asked && lane.health == Health::Healthy {
                lane.fill_asked = true;
                self.fill_wanted.notify_one();
            }
            if !lane.jobs.is_empty() && lane.in_flight < lane.limit() {
                lane.in_ring = true;
                state.ring.push_back(id);
            }
            return Next::Job(job);
        }
        state.wake_at = wake_at;
        Next::Wait(wake_at)
    }

    /// Resolves when a lane may have become able to send.
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Wakes every waiting sender (the instance is stopping).
    pub fn close(&self) {
        self.ready.notify_waiters();
    }

    /// Keeps a change of an endpoint's health for the poller to write and announce.
    pub fn changed(&self, change: LaneChange) {
        self.state().changes.push(change);
    }

    /// Health changes not yet written.
    pub fn take_changes(&self) -> Vec<LaneChange> {
        std::mem::take(&mut self.state().changes)
    }

    /// Records what an attempt saw; returns the change of its endpoint's health, if any.
    pub fn attempted(&self, job: &Job, outcome: &Outcome, now: Timestamp) -> Option<LaneChange> {
        let mut state = self.state();
        let state = &mut *state;
        let id = job.target.id;
        let lane = state.lanes.get_mut(&id)?;
        lane.in_flight = lane.in_flight.saturating_sub(1);
        let was_probe = std::mem::take(&mut lane.probing) && matches!(lane.health, Health::Unhealthy { .. });
        let mut change = None;
        let attempted = outcome.attempt.is_some();
        if outcome.unreachable {
            lane.failures = lane.failures.saturating_add(1);
            let reason = outcome.error.clone().unwrap_or_else(|| "the endpoint did not answer".to_owned());
            match lane.health.clone() {
                Health::Healthy if lane.failures >= self.breaker.failures => {
                    let cooldown = self.breaker.cooldown_secs;
                    let health = Health::Unhealthy {
                        since: now,
                        next_probe_at: now + Span::seconds(i64::from(cooldown)),
                        cooldown_secs: i32::try_from(cooldown).unwrap_or(i32::MAX),
                        reason,
                    };
                    change = Some(LaneChange::Health {
                        subscription_id: id,
                        previous: std::mem::replace(&mut lane.health, health.clone()),
                        health,
                        failures: lane.failures,
                    });
                    // The buffer goes back to the queue untried, and so does what a read under way
                    // finds.
                    lane.generation += 1;
                    let taken: Vec<Uuid> = lane.jobs.drain(..).map(|job| job.notification_id).collect();
                    for notification in &taken {
                        lane.held.remove(notification);
                    }
                    state.held = state.held.saturating_sub(taken.len());
                    *state.held_counts.entry(HeldReason::Unhealthy).or_default() += taken.len() as u64;
                    state.give_back.extend(taken.into_iter().map(|n| (n, Some(HeldReason::Unhealthy))));
                }
                Health::Unhealthy { since, cooldown_secs, .. } if was_probe => {
                    let doubled = u32::try_from(cooldown_secs).unwrap_or(0).saturating_mul(2);
                    let cooldown = doubled.clamp(self.breaker.cooldown_secs, self.breaker.max_cooldown_secs);
                    let health = Health::Unhealthy {
                        since,
                        next_probe_at: now + Span::seconds(i64::from(cooldown)),
                        cooldown_secs: i32::try_from(cooldown).unwrap_or(i32::MAX),
                        reason,
                    };
                    change = Some(LaneChange::Health {
                        subscription_id: id,
                        previous: std::mem::replace(&mut lane.health, health.clone()),
                        health,
                        failures: lane.failures,
                    });
                }
                _ => {}
            }
        } else if attempted {
            // The endpoint answered: it is reachable, whatever it said.
            lane.failures = 0;
            if matches!(lane.health, Health::Unhealthy { .. }) {
                change = Some(LaneChange::Health {
                    subscription_id: id,
                    previous: std::mem::replace(&mut lane.health, Health::Healthy),
                    health: Health::Healthy,
                    failures: 0,
                });
            }
        }
        // A FIFO lane whose notification waits for a retry sends nothing after it meanwhile.
        if lane.fifo && outcome.next_attempt_at.is_some() {
            lane.blocked = true;
            lane.generation += 1;
            let taken: Vec<Uuid> = lane.jobs.drain(..).map(|job| job.notification_id).collect();
            for notification in &taken {
                lane.held.remove(notification);
            }
            state.held = state.held.saturating_sub(taken.len());
            *state.held_counts.entry(HeldReason::Ordering).or_default() += taken.len() as u64;
            state.give_back.extend(taken.into_iter().map(|n| (n, Some(HeldReason::Ordering))));
        }
        if !lane.jobs.is_empty() {
            enqueue(state, id);
        }
        self.ready.notify_one();
        change
    }

    /// The outcomes of `notifications` are written: they leave memory.
    pub fn written(&self, notifications: &[(Uuid, Uuid)]) {
        let mut state = self.state();
        let mut freed = 0;
        for (subscription_id, notification_id) in notifications {
            if let Some(lane) = state.lanes.get_mut(subscription_id)
                && lane.held.remove(notification_id)
            {
                freed += 1;
                if lane.held.is_empty() {
                    // Its failed notification is written with its retry time: the queue says
                    // what comes next.
                    lane.blocked = false;
                    if lane.reserved == 0 {
                        lane.idle_since = Some(Instant::now());
                    }
                }
            }
        }
        state.held = state.held.saturating_sub(freed);
    }

    /// Notifications whose reservation was cancelled after they were queued leased: back to the
    /// queue.
    pub fn give_back(&self, notifications: impl IntoIterator<Item = Uuid>) {
        self.state().give_back.extend(notifications.into_iter().map(|id| (id, None)));
    }

    /// Notifications to give back to the queue, with why (taken out of memory).
    pub fn take_give_back(&self) -> Vec<(Uuid, Option<HeldReason>)> {
        std::mem::take(&mut self.state().give_back)
    }

    /// Waits counted since the last call, by reason.
    pub fn take_held_counts(&self) -> HashMap<HeldReason, u64> {
        std::mem::take(&mut self.state().held_counts)
    }

    /// Notifications in memory.
    pub fn held(&self) -> usize {
        self.state().held
    }
}

/// A lane follows its subscription's settings, as of the newest job.
fn configure(lane: &mut Lane, job: &Job, default_limit: usize) {
    let target = &job.target;
    lane.limit = target.max_concurrency.map_or(default_limit, |n| usize::try_from(n).unwrap_or(1)).max(1);
    lane.rate = target.rate_limit_per_second.map(f64::from);
    lane.fifo = target.ordering == Ordering::Fifo;
}

/// Puts a lane in the senders' ring unless it is there.
fn enqueue(state: &mut State, id: Uuid) {
    if let Some(lane) = state.lanes.get_mut(&id)
        && !lane.in_ring
    {
        lane.in_ring = true;
        state.ring.push_back(id);
    }
}

/// Forgets a lane: its buffered notifications go back to the queue (their leases released, for
/// whichever instance owns the lane now); outcomes of its attempts still in flight are written as
/// usual.
fn drop_lane(state: &mut State, id: Uuid) {
    if let Some(lane) = state.lanes.remove(&id) {
        state.held = state.held.saturating_sub(lane.held.len() + lane.reserved);
        state.give_back.extend(lane.jobs.into_iter().map(|job| (job.notification_id, None)));
    }
}
