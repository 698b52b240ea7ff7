//! Group commit: every write transaction of this process runs on one writer connection, and the
//! transactions that queue for it while one group commits are committed together.
//!
//! Why: a durable commit costs an fsync (`synchronous=FULL` on SQLite, the WAL flush on
//! PostgreSQL), and event-appending writes are serialised anyway (SQLite has one writer; on
//! PostgreSQL the event-order advisory lock), so one commit per write caps writes at the disk's
//! fsync rate. Here each write (a *member*) runs inside a `SAVEPOINT` of the group's open
//! transaction; when it is done it either leaves the transaction open for the writers already
//! queued behind it (and waits for their commit) or, when nobody is queued or the group is
//! full or old, commits the group and answers every member. A caller is answered only after
//! the commit that holds its write, so an acknowledged write is as durable as before.
//!
//! A member's failure rolls back to its savepoint and touches nobody else's work. A failed
//! commit fails every member of the group (none was answered yet).
//!
//! Cancellation: a caller's future may be dropped at any await (an HTTP client hangs up). Every
//! statement on the writer connection other than the member's own body runs in a spawned task,
//! so it completes whatever happens to the caller; a member dropped in the middle of its body
//! leaves its savepoint open, which the next holder of the writer (or a flush spawned by the
//! drop) rolls back; a member waiting for its group's commit commits the group itself if the
//! commit does not come within [`MAX_GROUP_AGE`] (the writer that was to lead it went away).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use crate::db::{Exec, Target};
use crate::error::{StoreError, StoreResult};

/// Most members in one group: bounds how long the first waits for the last.
const MAX_GROUP_MEMBERS: usize = 256;
/// Oldest a group gets before its next finishing member commits it, queue or not.
pub(crate) const MAX_GROUP_AGE: Duration = Duration::from_millis(4);

/// PostgreSQL's group begins under the event-order advisory lock (see `events`) and opens its
/// first member's savepoint, in one round trip.
static BEGIN_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock({}); SAVEPOINT member",
        crate::events::EVENT_LOCK_KEY
    )
});

/// Where the writer connection comes from (and goes back to on close).
#[derive(Debug, Clone)]
pub(crate) enum WriterPool {
    /// SQLite's one-connection writer pool.
    Sqlite(sqlx::SqlitePool),
    /// The PostgreSQL pool (the writer keeps one of its connections).
    Postgres(sqlx::PgPool),
}

#[derive(Debug)]
enum WriterConn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// The single writer of this process, shared by every write.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Arc<Mutex<WriterState>>,
    /// Writers waiting for the state lock (or for the bulk gate): a finishing member leaves the
    /// group open for them.
    queued: AtomicUsize,
    /// Bulk writers (streamed output) pass this gate one at a time before queueing for the
    /// writer, so at most one of them is ever ahead of a control write (a claim, a status change,
    /// an approval) in the writer's FIFO queue.
    bulk_gate: Mutex<()>,
    pool: WriterPool,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct WriterState {
    /// The writer connection; `None` before the first write, after a broken connection (the
    /// next write takes a fresh one from the pool) and after close.
    conn: Option<WriterConn>,
    closed: bool,
    /// The open group transaction, if any.
    group: Option<OpenGroup>,
    /// The `member` savepoint inside the group transaction.
    savepoint: Savepoint,
    counters: Arc<Counters>,
}

/// The state of the one savepoint a group has at a time, named `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// None is open.
    None,
    /// Open and empty: the previous member opened it for the next in the same round trip as its
    /// own release.
    Ready,
    /// A member's work is in it. Seen by the next holder of the writer, the member went away
    /// mid-body, and its work is rolled back.
    InUse,
}

/// How many writes were committed, in how many commits.
#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
}

/// How many writes this process committed, in how many commits (the writes per commit is the
/// effect of group commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes committed (each a transaction that kept its work).
    pub writes: u64,
    /// Commits that held them.
    pub commits: u64,
}

#[derive(Debug)]
struct OpenGroup {
    began: Instant,
    /// Members that kept their work.
    kept: u64,
    /// Members done with their work, waiting for the group's commit.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

/// A write in progress: holds the writer until [`Member::finish`].
#[derive(Debug)]
pub(crate) struct Member {
    guard: Option<OwnedMutexGuard<WriterState>>,
    shared: Arc<Shared>,
}

/// Decrements the queue count however the wait for the lock ends.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GroupCommit {
    pub(crate) fn new(pool: WriterPool) -> Self {
        let counters = Arc::new(Counters::default());
        Self {
            shared: Arc::new(Shared {
                state: Arc::new(Mutex::new(WriterState {
                    conn: None,
                    closed: false,
                    group: None,
                    savepoint: Savepoint::None,
                    counters: counters.clone(),
                })),
                queued: AtomicUsize::new(0),
                bulk_gate: Mutex::new(()),
                pool,
                counters,
            }),
        }
    }

    /// Starts a write: waits for the writer, joins (or opens) the group transaction and opens the
    /// member's savepoint.
    ///
    /// A `bulk` write (streamed output, of which hundreds of turns may have one waiting) queues
    /// behind the bulk gate first: under a flood of output, a control write then waits for at
    /// most one bulk write ahead of it instead of every one.
    pub(crate) async fn join(&self, bulk: bool) -> StoreResult<Member> {
        let guard = {
            let _queued = Queued::enter(&self.shared.queued);
            if bulk {
                let _gate = self.shared.bulk_gate.lock().await;
                self.shared.state.clone().lock_owned().await
            } else {
                self.shared.state.clone().lock_owned().await
            }
        };
        let shared = self.shared.clone();
        // Spawned: if the caller goes away meanwhile, the returned member is dropped, which
        // schedules the flush that rolls its savepoint back.
        let member = Member {
            guard: Some(guard),
            shared,
        };
        tokio::spawn(member.open())
            .await
            .map_err(|err| StoreError::CommitFailed(format!("the writer task failed: {err}")))?
    }

    /// What was committed so far.
    pub(crate) fn stats(&self) -> WriteStats {
        let counters = &self.shared.counters;
        WriteStats {
            writes: counters.writes.load(Ordering::Relaxed),
            commits: counters.commits.load(Ordering::Relaxed),
        }
    }

    /// Commits an open group nobody will finish, and closes the writer connection.
    pub(crate) async fn close(&self) {
        let shared = self.shared.clone();
        let _ = tokio::spawn(async move {
            let mut state = shared.state.clone().lock_owned().await;
            state.flush().await;
            state.closed = true;
            if let Some(conn) = state.conn.take() {
                drop(conn);
            }
        })
        .await;
        match &self.shared.pool {
            WriterPool::Sqlite(pool) => pool.close().await,
            WriterPool::Postgres(pool) => pool.close().await,
        }
    }
}

impl Member {
    fn state(&mut self) -> StoreResult<&mut WriterState> {
        self.guard
            .as_deref_mut()
            .ok_or_else(|| StoreError::CommitFailed("the write already finished".into()))
    }

    async fn open(mut self) -> StoreResult<Member> {
        let pool = self.shared.pool.clone();
        let state = self.state()?;
        state.repair().await;
        if state.closed {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        if state.conn.is_none() {
            state.conn = Some(match &pool {
                WriterPool::Sqlite(pool) => WriterConn::Sqlite(pool.acquire().await?),
                WriterPool::Postgres(pool) => WriterConn::Postgres(pool.acquire().await?),
            });
        }
        if state.group.is_none() {
            state.begin().await?;
        } else if state.savepoint == Savepoint::None
            && let Err(err) = state.run("SAVEPOINT member").await
        {
            state.fail_group(&err.to_string()).await;
            return Err(err);
        }
        state.savepoint = Savepoint::InUse;
        Ok(self)
    }

    /// The connection the member's statements run on.
    pub(crate) fn exec(&mut self) -> Exec<'_> {
        match self.guard.as_deref_mut().and_then(|s| s.conn.as_mut()) {
            Some(WriterConn::Sqlite(conn)) => Exec::Sqlite(Target::Conn(&mut **conn)),
            Some(WriterConn::Postgres(conn)) => Exec::Postgres(Target::Conn(&mut **conn)),
            None => Exec::Closed,
        }
    }

    /// Ends the member: keeps its work (`keep`) or rolls it back, then either leaves the group
    /// open for queued writers and waits for its commit, or commits the group. With `keep`, the
    /// answer is whether the work is durable; without, it is always `Ok`.
    pub(crate) async fn finish(self, keep: bool) -> StoreResult<()> {
        let shared = self.shared.clone();
        let waiting = tokio::spawn(self.end(keep))
            .await
            .map_err(|err| StoreError::CommitFailed(format!("the writer task failed: {err}")))??;
        let Some(mut receiver) = waiting else {
            return Ok(());
        };
        loop {
            match tokio::time::timeout(MAX_GROUP_AGE * 4, &mut receiver).await {
                Ok(Ok(result)) => return result.map_err(StoreError::CommitFailed),
                Ok(Err(_)) => {
                    return Err(StoreError::CommitFailed(
                        "the group's commit was abandoned".into(),
                    ));
                }
                // The writer expected to commit the group went away: commit it from here (an
                // early commit of a group others are still joining is harmless).
                Err(_) => {
                    let shared = shared.clone();
                    let _ = tokio::spawn(async move {
                        let mut state = shared.state.clone().lock_owned().await;
                        state.flush().await;
                    })
                    .await;
                }
            }
        }
    }

    /// The writer-side half of [`Member::finish`]; returns the receiver to wait on when the group
    /// stays open for others.
    async fn end(
        mut self,
        keep: bool,
    ) -> StoreResult<Option<oneshot::Receiver<Result<(), String>>>> {
        let queued = self.shared.queued.load(Ordering::SeqCst);
        let mut guard = self
            .guard
            .take()
            .ok_or_else(|| StoreError::CommitFailed("the write already finished".into()))?;
        let state = &mut *guard;
        let Some(group) = state.group.as_mut() else {
            state.savepoint = Savepoint::None;
            return Ok(None);
        };
        if keep {
            group.kept += 1;
        }
        let full = group.waiting.len() + 1 >= MAX_GROUP_MEMBERS;
        let leave_open = queued > 0 && !full && group.began.elapsed() < MAX_GROUP_AGE;
        // One round trip each: the member's end, and either the next member's savepoint or the
        // group's commit (which commits the savepoint's work with it).
        let sql = match (keep, leave_open) {
            (true, true) => "RELEASE member; SAVEPOINT member",
            (false, true) => "ROLLBACK TO member",
            (true, false) => "COMMIT",
            (false, false) => "ROLLBACK TO member; COMMIT",
        };
        if !leave_open {
            return state.commit(sql).await.map(|()| None);
        }
        if let Err(err) = state.run(sql).await {
            state.fail_group(&err.to_string()).await;
            return Err(err);
        }
        state.savepoint = Savepoint::Ready;
        if !keep {
            return Ok(None);
        }
        let (sender, receiver) = oneshot::channel();
        if let Some(group) = state.group.as_mut() {
            group.waiting.push(sender);
        }
        Ok(Some(receiver))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Dropped while holding the writer (the caller went away mid-body): the savepoint is rolled
        // back and the group committed by a flush, in case no other writer comes.
        if let Some(guard) = self.guard.take() {
            let shared = self.shared.clone();
            drop(guard);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let mut state = shared.state.clone().lock_owned().await;
                    state.flush().await;
                });
            }
        }
    }
}

impl WriterState {
    /// Runs `sql` (one or more statements, no parameters) on the writer connection.
    async fn run(&mut self, sql: &'static str) -> StoreResult<()> {
        match self.conn.as_mut() {
            Some(WriterConn::Sqlite(conn)) => {
                sqlx::raw_sql(sql).execute(&mut **conn).await?;
            }
            Some(WriterConn::Postgres(conn)) => {
                sqlx::raw_sql(sql).execute(&mut **conn).await?;
            }
            None => return Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
        Ok(())
    }

    /// Opens the group transaction and its first member's savepoint, in one round trip.
    async fn begin(&mut self) -> StoreResult<()> {
        let sql = match self.conn {
            // The event-order lock, before any row lock (see `events`).
            Some(WriterConn::Postgres(_)) => BEGIN_POSTGRES.as_str(),
            // IMMEDIATE: take the write lock now, not at the first write of some later member.
            _ => "BEGIN IMMEDIATE; SAVEPOINT member",
        };
        if let Err(err) = self.run(sql).await {
            self.fail_group(&err.to_string()).await;
            return Err(err);
        }
        self.group = Some(OpenGroup {
            began: Instant::now(),
            kept: 0,
            waiting: Vec::new(),
        });
        self.savepoint = Savepoint::Ready;
        Ok(())
    }

    /// Rolls back the work of a member that went away mid-body (its savepoint stays, empty).
    async fn repair(&mut self) {
        if self.savepoint == Savepoint::InUse {
            match self.run("ROLLBACK TO member").await {
                Ok(()) => self.savepoint = Savepoint::Ready,
                Err(err) => self.fail_group(&err.to_string()).await,
            }
        }
    }

    /// Rolls back a dropped member's work and commits the open group, if any.
    async fn flush(&mut self) {
        self.repair().await;
        if self.group.is_some() {
            let _ = self.commit("COMMIT").await;
        }
    }

    /// Ends the group with `sql` (a `COMMIT`, perhaps after a member's rollback) and answers its
    /// waiting members.
    async fn commit(&mut self, sql: &'static str) -> StoreResult<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        match self.run(sql).await {
            Ok(()) => {
                self.savepoint = Savepoint::None;
                self.counters
                    .writes
                    .fetch_add(group.kept, Ordering::Relaxed);
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                for member in group.waiting {
                    let _ = member.send(Ok(()));
                }
                Ok(())
            }
            Err(err) => {
                self.group = Some(group);
                self.fail_group(&err.to_string()).await;
                Err(err)
            }
        }
    }

    /// Rolls the group back and tells its waiting members; a connection that cannot even roll
    /// back is dropped, and the next write takes a fresh one.
    async fn fail_group(&mut self, why: &str) {
        let waiting = self.group.take().map(|g| g.waiting).unwrap_or_default();
        self.savepoint = Savepoint::None;
        if self.run("ROLLBACK").await.is_err()
            && let Some(conn) = self.conn.take()
        {
            match conn {
                WriterConn::Sqlite(conn) => {
                    let _ = conn.close().await;
                }
                WriterConn::Postgres(conn) => {
                    let _ = conn.close().await;
                }
            }
        }
        for member in waiting {
            let _ = member.send(Err(format!("the write's group failed to commit: {why}")));
        }
    }
}
