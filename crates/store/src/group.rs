//! Group commit: writers that arrive together share one transaction.
//!
//! A commit costs the same whatever it holds: on PostgreSQL a round trip and a WAL flush, on
//! SQLite a writer turn and a WAL append of every page it touched. Callers that each commit on
//! their own spend most of their time in commits under load; callers that share them do not.
//!
//! Leader and followers, without a timer: a caller that finds no commit in progress (or fewer
//! than the writer allows at once, [`GroupWrite::in_flight`]) starts one at once with whatever is
//! waiting (often only its own write, so a lone write is never delayed); callers that arrive while
//! it commits wait, and the next commit takes all of them together. Each caller is answered when
//! the commit holding its write is done, never before. When a shared commit fails, its writes are
//! written again one by one, so a write the database refuses (a unique key taken, say) fails only
//! its own caller.
//!
//! The commits run in a task of their own rather than in the first caller's future, so a caller
//! that goes away (its client hung up) cannot abandon the others' commit halfway.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use sea_orm::DbErr;
use tokio::sync::oneshot;

/// `/metrics` figures of every group commit, by the kind of write: commits, and the writes they
/// held (the two divided: the average group).
#[derive(Debug, Clone, Default)]
pub struct GroupCommitMetrics {
    commits: Family<KindLabels, Counter>,
    writes: Family<KindLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    writes: &'static str,
}

impl GroupCommitMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "group_commits",
            "Transactions of writes that arrive together, by kind of write (publish, intake, outcome)",
            self.commits.clone(),
        );
        registry.register(
            "group_commit_writes",
            "Writes committed in groups, by kind of write; divided by group_commits, the average group",
            self.writes.clone(),
        );
    }
}

/// How a kind of write is written many at a time.
pub trait GroupWrite: Send + Sync + 'static {
    /// One caller's write.
    type Item: Send + Sync + 'static;

    /// What one commit may hold, in the unit of [`weight`](Self::weight).
    const BUDGET: usize;

    /// Commits under way at once. One lets the most writes share each commit; on PostgreSQL,
    /// whose commits run side by side, a second keeps the server busy while the first waits for
    /// its WAL flush.
    fn in_flight(&self) -> usize {
        1
    }

    /// What `item` takes of a commit's budget (bound parameters, say: PostgreSQL takes at most
    /// 65,535 per statement). An item heavier than the budget goes in a commit of its own.
    fn weight(&self, item: &Self::Item) -> usize;

    /// Writes `items` in one transaction: all of them or none, except those a writer leaves out
    /// on purpose (an insert whose unique key is taken: `ON CONFLICT DO NOTHING`). Returns, item by
    /// item, whether it was written; the caller of one left out gets [`DbErr::RecordNotInserted`].
    fn write(&self, items: &[Arc<Self::Item>]) -> impl Future<Output = Result<Vec<bool>, DbErr>> + Send;
}

/// Writes of one kind, committed in groups (see the module's documentation).
pub struct GroupCommit<W: GroupWrite> {
    shared: Arc<Shared<W>>,
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<W: GroupWrite> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("GroupCommit")
            .field("committing", &state.committing)
            .field("waiting", &state.waiting.len())
            .finish()
    }
}

struct Shared<W: GroupWrite> {
    writer: W,
    state: Mutex<State<W::Item>>,
    commits: Counter,
    writes: Counter,
}

struct State<I> {
    waiting: VecDeque<Waiter<I>>,
    /// Commits under way: at [`GroupWrite::in_flight`], new writes wait for the next one.
    committing: usize,
}

struct Waiter<I> {
    item: Arc<I>,
    answer: oneshot::Sender<Result<(), DbErr>>,
}

impl<W: GroupWrite> GroupCommit<W> {
    /// Writes with `writer`, counted in `metrics` under `kind`.
    pub fn new(writer: W, metrics: &GroupCommitMetrics, kind: &'static str) -> Self {
        let state = Mutex::new(State { waiting: VecDeque::new(), committing: 0 });
        let kind = KindLabels { writes: kind };
        let commits = metrics.commits.get_or_create(&kind).clone();
        let writes = metrics.writes.get_or_create(&kind).clone();
        Self { shared: Arc::new(Shared { writer, state, commits, writes }) }
    }

    /// Writes `item`, with whatever other writes wait beside it; returns once it is committed
    /// (or has failed).
    pub async fn write(&self, item: Arc<W::Item>) -> Result<(), DbErr> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut state = self.shared.lock();
            state.waiting.push_back(Waiter { item, answer });
            let lead = state.committing < self.shared.writer.in_flight();
            if lead {
                state.committing += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(Arc::clone(&self.shared).commit_while_waiting());
        }
        answered.await.unwrap_or_else(|_| Err(DbErr::Custom("the group commit stopped before this write".into())))
    }
}

impl<W: GroupWrite> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W::Item>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits what waits, group after group, until nothing does.
    async fn commit_while_waiting(self: Arc<Self>) {
        let mut leading = Leading { shared: &self, done: false };
        while let Some(group) = self.next_group() {
            self.commit(group).await;
        }
        leading.done = true;
    }

    /// The writes that wait, up to the budget; none (and no commit in progress any more) when
    /// nothing waits.
    fn next_group(&self) -> Option<Vec<Waiter<W::Item>>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.committing -= 1;
            return None;
        }
        let mut group = Vec::new();
        let mut spent = 0;
        while let Some(next) = state.waiting.front() {
            let weight = self.writer.weight(&next.item);
            if !group.is_empty() && spent + weight > W::BUDGET {
                break;
            }
            spent += weight;
            group.extend(state.waiting.pop_front());
        }
        Some(group)
    }

    async fn commit(&self, group: Vec<Waiter<W::Item>>) {
        let items: Vec<Arc<W::Item>> = group.iter().map(|waiter| Arc::clone(&waiter.item)).collect();
        let together = self.writer.write(&items).await;
        self.commits.inc();
        match together {
            Ok(written) => {
                for (waiter, written) in group.into_iter().zip(written.into_iter().chain(std::iter::repeat(false))) {
                    self.answer(waiter, Ok(written));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(waiter) = group.into_iter().next() {
                    self.answer(waiter, Err(error));
                }
            }
            Err(_) => {
                for waiter in group {
                    let alone = self.writer.write(std::slice::from_ref(&waiter.item)).await;
                    self.commits.inc();
                    self.answer(waiter, alone.map(|written| written.first().copied().unwrap_or(false)));
                }
            }
        }
    }

    fn answer(&self, waiter: Waiter<W::Item>, written: Result<bool, DbErr>) {
        let answer = match written {
            Ok(true) => {
                self.writes.inc();
                Ok(())
            }
            Ok(false) => Err(DbErr::RecordNotInserted),
            Err(error) => Err(error),
        };
        // A caller that went away needs no answer.
        let _ = waiter.answer.send(answer);
    }
}

/// Ends the leader's turn if its task stops early (a panic in a write, the runtime shutting down):
/// when no other leader is left, the waiting writes fail instead of waiting for ever, and the next
/// write leads again.
struct Leading<'a, W: GroupWrite> {
    shared: &'a Shared<W>,
    done: bool,
}

impl<W: GroupWrite> Drop for Leading<'_, W> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.shared.lock();
            state.committing -= 1;
            if state.committing == 0 {
                state.waiting.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Records each commit's items; refuses a commit holding the item `13`, leaves out `7`.
    #[derive(Default)]
    struct Recorder {
        commits: Mutex<Vec<Vec<u32>>>,
        started: AtomicUsize,
        release: tokio::sync::Notify,
        hold_first: bool,
        in_flight: usize,
    }

    impl GroupWrite for Arc<Recorder> {
        type Item = u32;
        const BUDGET: usize = 10;

        fn in_flight(&self) -> usize {
            self.in_flight.max(1)
        }

        fn weight(&self, item: &u32) -> usize {
            if *item >= 100 { 11 } else { 1 }
        }

        async fn write(&self, items: &[Arc<u32>]) -> Result<Vec<bool>, DbErr> {
            if self.started.fetch_add(1, Ordering::SeqCst) == 0 && self.hold_first {
                self.release.notified().await;
            }
            self.commits.lock().expect("the recorder is not poisoned").push(items.iter().map(|item| **item).collect());
            if items.iter().any(|item| **item == 13) {
                return Err(DbErr::Custom("refused".into()));
            }
            Ok(items.iter().map(|item| **item != 7).collect())
        }
    }

    /// Starts writing `1` and returns once its commit has begun (and, with `hold_first`, hangs).
    async fn first_write_held(
        group: &GroupCommit<Arc<Recorder>>,
        recorder: &Recorder,
    ) -> tokio::task::JoinHandle<Result<(), DbErr>> {
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.write(Arc::new(1)).await }
        });
        while recorder.started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first
    }

    #[tokio::test]
    async fn a_lone_write_commits_at_once() {
        let recorder = Arc::new(Recorder::default());
        let group = GroupCommit::new(Arc::clone(&recorder), &GroupCommitMetrics::default(), "test");
        group.write(Arc::new(1)).await.expect("committed");
        group.write(Arc::new(2)).await.expect("committed");
        assert_eq!(*recorder.commits.lock().expect("the recorder is not poisoned"), vec![vec![1], vec![2]]);
    }

    /// Writes arriving while a commit is under way share the next one, within the budget; a
    /// refused write fails alone (its companions are written one by one and succeed), and a write
    /// left out fails alone without holding back its group.
    #[tokio::test]
    async fn writes_arriving_during_a_commit_share_the_next_and_a_refused_one_fails_alone() {
        let recorder = Arc::new(Recorder { hold_first: true, ..Recorder::default() });
        let group = GroupCommit::new(Arc::clone(&recorder), &GroupCommitMetrics::default(), "test");
        let first = first_write_held(&group, &recorder).await;
        let mut followers = Vec::new();
        for item in [2, 13, 4, 100, 5, 7, 8] {
            let writer = group.clone();
            followers.push(tokio::spawn(async move { (item, writer.write(Arc::new(item)).await) }));
            // Queued in this order.
            while group.shared.lock().waiting.len() < followers.len() {
                tokio::task::yield_now().await;
            }
        }
        recorder.release.notify_one();
        first.await.expect("the first write ran").expect("the first commits");
        for follower in followers {
            let (item, result) = follower.await.expect("the write ran");
            match item {
                13 => assert!(matches!(result, Err(DbErr::Custom(_))), "{result:?}"),
                7 => assert!(matches!(result, Err(DbErr::RecordNotInserted)), "{result:?}"),
                _ => assert!(result.is_ok(), "item {item}: {result:?}"),
            }
        }
        let commits = recorder.commits.lock().expect("the recorder is not poisoned").clone();
        assert_eq!(
            commits,
            vec![vec![1], vec![2, 13, 4], vec![2], vec![13], vec![4], vec![100], vec![5, 7, 8]],
            "the group stops before a write over the budget, which goes alone"
        );
    }

    /// With two commits allowed at once, a write arriving while the first commit hangs starts the
    /// second at once; the third waits for one of them.
    #[tokio::test]
    async fn a_second_commit_may_run_beside_the_first() {
        let recorder = Arc::new(Recorder { hold_first: true, in_flight: 2, ..Recorder::default() });
        let group = GroupCommit::new(Arc::clone(&recorder), &GroupCommitMetrics::default(), "test");
        let first = first_write_held(&group, &recorder).await;
        group.write(Arc::new(2)).await.expect("the second commits while the first hangs");
        assert_eq!(*recorder.commits.lock().expect("the recorder is not poisoned"), vec![vec![2]]);
        recorder.release.notify_one();
        first.await.expect("the first write ran").expect("the first commits");
        assert_eq!(group.shared.lock().committing, 0, "no commit is left under way");
    }
}
