//! spectask's workflows: the services that move tasks through their lifecycle by combining the
//! store (durable state) with the runtimes (planners and agents).
//!
//! Today: planning. Starting, revising and approving are transactions in the store; the planning
//! itself runs as durable turns that a background worker claims under a lease
//! ([`worker`]), so a crash or restart re-runs a turn in the same session rather than
//! losing it or starting a second one.
//!
//! Architecture invariant: the engine writes state only through the store's transactional
//! operations and never keeps anything needed for recovery in memory.

pub mod agent_tools;
mod agent_turn;
mod error;
pub mod implementation;
pub mod permissions;
pub mod planners;
pub mod planning;
mod projection;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use spectask_runtimes::agent::AgentRuntime;
use spectask_store::Store;
use tokio::sync::{Notify, Semaphore};

pub use error::EngineError;
pub use permissions::PermissionDesk;
pub use planners::{PlannerProfile, PlannerRegistry};

/// Tunables of the background work.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a claimed turn stays this worker's without a heartbeat.
    pub turn_lease: Duration,
    /// How often the worker looks for work when nothing wakes it.
    pub poll_interval: Duration,
    /// Planning turns running at once in this process.
    pub max_concurrent_turns: usize,
    /// Claims per turn before it fails (each crash or restart mid-turn costs one). Generous:
    /// interruptions are not the agent's fault, but a turn that keeps killing its server must stop.
    pub max_turn_attempts: i32,
    /// This replica's stable name. Turns still marked running under this name when the worker
    /// starts belonged to a previous incarnation of this replica (which crashed), so they are
    /// requeued at once instead of waiting for their lease to expire. Replicas sharing one
    /// database must have different names.
    pub replica_id: String,
    /// How long streamed output is batched before it is written.
    pub flush_interval: Duration,
    /// Threads running at once in one instance (one SpecTask).
    pub max_parallel_threads: usize,
    /// Instances (SpecTasks in implementation) dispatching at once on this server.
    pub max_active_instances: usize,
    /// An implementation turn with no agent event for this long is cancelled and counted as a
    /// failure.
    pub turn_timeout: Duration,
    /// Failed implementation turns of one work session retried before it fails for good.
    pub max_turn_retries: i32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            turn_lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_concurrent_turns: 4,
            max_turn_attempts: 10,
            replica_id: "local".to_owned(),
            flush_interval: Duration::from_millis(100),
            max_parallel_threads: 4,
            max_active_instances: 8,
            turn_timeout: Duration::from_secs(600),
            max_turn_retries: 2,
        }
    }
}

/// The workflow services and their background worker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    planners: PlannerRegistry,
    settings: EngineSettings,
    /// Hosts implementation threads; `None` until an agent runtime is configured, in which case
    /// approved tasks wait in `implementation_queued`.
    runtime: Option<Arc<dyn AgentRuntime>>,
    /// This process's name on claims and events.
    owner: String,
    wake: Notify,
    /// Planning turns running at once in this process.
    permits: Arc<Semaphore>,
    /// Implementation turns running at once in this process (the per-instance limit is enforced
    /// at dispatch, in the store).
    implementation_permits: Arc<Semaphore>,
}

impl Engine {
    /// An engine that plans but has no agent runtime for implementation.
    pub fn new(store: Store, planners: PlannerRegistry, settings: EngineSettings) -> Self {
        Self::build(store, planners, None, settings)
    }

    /// An engine whose implementation threads run on `runtime`.
    pub fn with_runtime(
        store: Store,
        planners: PlannerRegistry,
        runtime: Arc<dyn AgentRuntime>,
        settings: EngineSettings,
    ) -> Self {
        Self::build(store, planners, Some(runtime), settings)
    }

    fn build(
        store: Store,
        planners: PlannerRegistry,
        runtime: Option<Arc<dyn AgentRuntime>>,
        settings: EngineSettings,
    ) -> Self {
        let owner = format!(
            "{}/{}-{}",
            settings.replica_id,
            std::process::id(),
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let permits = Arc::new(Semaphore::new(settings.max_concurrent_turns.max(1)));
        let implementation_permits = Arc::new(Semaphore::new(
            (settings.max_parallel_threads.max(1))
                .saturating_mul(settings.max_active_instances.max(1)),
        ));
        Self {
            inner: Arc::new(Inner {
                store,
                planners,
                settings,
                runtime,
                owner,
                wake: Notify::new(),
                permits,
                implementation_permits,
            }),
        }
    }

    /// Whether `agent` names an implementation agent this server can run (always true without a
    /// runtime: the task then waits for one to be configured).
    pub fn knows_agent(&self, agent: &str) -> bool {
        self.inner
            .runtime
            .as_ref()
            .is_none_or(|runtime| runtime.knows_agent(agent))
    }

    /// Whether implementation threads can run here.
    pub fn has_runtime(&self) -> bool {
        self.inner.runtime.is_some()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn planners(&self) -> &PlannerRegistry {
        &self.inner.planners
    }

    /// Asks the worker to look for work now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
}
