//! spectask's durable store: every entity of the domain in SQLite (the zero-configuration default)
//! or PostgreSQL, behind one [`Store`] with identical behaviour on both.
//!
//! Architecture invariants:
//! - All SQL of the project lives in this crate, one module per aggregate, with named columns.
//! - Every status change is a compare-and-set against the domain's transition table
//!   ([`transition`]); zero rows updated is a conflict, never a silent overwrite.
//! - Every state change appends its event to `events` in the same transaction.
//! - Each backend has its own migrations folder with the same table and constraint names.
//! - The two backends share one body of code: every statement is built once with [`db`]'s
//!   builders and runs on a pool or an open [`db::Tx`], which picks the driver; the dialect
//!   differences ([`backend::Dialect`]: row locks, date comparison, notifications) are asked of
//!   the transaction or the backend where they matter.
//! - Every write transaction runs through `Store::write`: a member of the writer's group
//!   ([`group_commit`]; on PostgreSQL the group holds the event-order advisory lock before any row
//!   lock), answered after the group's commit, then the newest event it appended is announced.

mod agent_reports;
mod agent_tokens;
mod backend;
mod checks;
mod comments;
mod db;
mod entries;
mod error;
mod events;
mod group_commit;
mod ids;
mod implementation;
mod implementation_tasks;
mod imports;
mod instance_leases;
mod instance_threads;
mod permissions;
mod planning;
mod planning_agent;
mod reviews;
mod revisions;
mod rows;
mod sessions;
mod spec_tasks;
mod transition;
mod turn_output;
mod turns;
mod work_sessions;
mod workspaces;

pub use agent_tokens::{AgentGrant, AgentTokenState, TokenMint, hash_agent_token};
use backend::Backend;
pub use backend::ConnectOptions;
pub use checks::NewCheckRun;
pub use comments::NewComment;
pub use error::{StoreError, StoreResult};
pub use events::EventQuery;
pub use group_commit::WriteStats;
pub use implementation::{
    DispatchOutcome, ImplementationProgress, SpawnCaps, Spawned, WorkSessionPlan,
};
pub use implementation_tasks::NewImplementationTask;
pub use imports::ImportedSpecs;
pub use instance_leases::InstanceLeasing;
pub use permissions::NewPermissionRequest;
pub use planning::PlanningOutput;
pub use reviews::NewReview;
pub use revisions::{NewRevision, RevisionSummary};
pub use spec_tasks::{SpecTaskFilter, SpecTaskPage, SpecTaskPatch};
pub use turns::TurnClaim;
pub use work_sessions::{NewWorkSession, NewZedThread};
pub use workspaces::{SessionMerge, SessionWorktree, TaskBranch};

use std::sync::Arc;

use tokio::sync::broadcast;

/// The handle every other crate uses. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<Backend>,
    ids: Arc<ids::IdGenerator>,
    /// Nudged (with the newest event id) after every commit that appended events, so live
    /// streams wake at once instead of polling.
    committed: broadcast::Sender<i64>,
    /// Turn output waiting to be written together (`turn_output`).
    output: Arc<turn_output::OutputQueue>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str, options: ConnectOptions) -> StoreResult<Self> {
        let backend = Backend::connect(url, options).await?;
        let (committed, _) = broadcast::channel(1024);
        if let backend::Pools::Postgres(pool) = backend.pools() {
            events::forward_notifications(pool.clone(), committed.clone()).await?;
        }
        Ok(Self {
            backend: Arc::new(backend),
            ids: Arc::new(ids::IdGenerator::default()),
            committed,
            output: Arc::default(),
        })
    }

    /// Which database this store runs on: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Subscribes to commit nudges (the id of the newest event committed). A nudge may be missed
    /// by a slow receiver; readers must always re-read the events table from their cursor.
    pub fn subscribe_commits(&self) -> broadcast::Receiver<i64> {
        self.committed.subscribe()
    }

    /// How many writes this process committed, in how many commits (group commit's effect).
    pub fn write_stats(&self) -> WriteStats {
        self.backend.write_stats()
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.backend.ping().await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// The shape of every write that may append events: opens a write transaction (on
    /// PostgreSQL under the event-order lock), runs `body` in it, commits, and announces the
    /// newest event the transaction appended to live streams (nothing when it appended none). An
    /// error from `body` rolls back; a body that returns early having written nothing commits an
    /// empty transaction, which is the same as rolling back.
    async fn write<T>(
        &self,
        body: impl AsyncFnOnce(&mut db::Tx) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let tx = self.backend.begin_write().await?;
        self.write_in(tx, body).await
    }

    /// [`Store::write`] for streamed output, which yields to every other write.
    async fn write_bulk<T>(
        &self,
        body: impl AsyncFnOnce(&mut db::Tx) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let tx = self.backend.begin_bulk_write().await?;
        self.write_in(tx, body).await
    }

    async fn write_in<T>(
        &self,
        mut tx: db::Tx,
        body: impl AsyncFnOnce(&mut db::Tx) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let value = match body(&mut tx).await {
            Ok(value) => value,
            Err(err) => {
                tx.rollback().await?;
                return Err(err);
            }
        };
        let last_event = tx.last_event();
        tx.commit().await?;
        if let Some(last_event) = last_event {
            self.announce(last_event);
        }
        Ok(value)
    }

    /// Tells local subscribers that events up to `last_event_id` are committed.
    fn announce(&self, last_event_id: i64) {
        // No receivers is fine: nobody is streaming.
        let _ = self.committed.send(last_event_id);
    }
}
