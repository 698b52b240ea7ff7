//! spectask's workflows: the services that move tasks through their lifecycle by combining the
//! store (durable state) with the runtimes (planners and agents).
//!
//! Today: planning. Starting, revising and approving are transactions in the store; the planning
//! itself runs as durable turns that a background worker claims under a lease
//! ([`planning::worker`]), so a crash or restart re-runs a turn in the same session rather than
//! losing it or starting a second one.
//!
//! Architecture invariant: the engine writes state only through the store's transactional
//! operations and never keeps anything needed for recovery in memory.

mod error;
pub mod planners;
pub mod planning;
mod projection;

use std::sync::Arc;
use std::time::Duration;

use spectask_store::Store;
use tokio::sync::{Notify, Semaphore};

pub use error::EngineError;
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
    /// Claims per turn before it fails (each crash or restart mid-turn costs one).
    pub max_turn_attempts: i32,
    /// How long streamed output is batched before it is written.
    pub flush_interval: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            turn_lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_concurrent_turns: 4,
            max_turn_attempts: 3,
            flush_interval: Duration::from_millis(100),
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
    /// This process's name on claims and events.
    owner: String,
    wake: Notify,
    permits: Arc<Semaphore>,
}

impl Engine {
    pub fn new(store: Store, planners: PlannerRegistry, settings: EngineSettings) -> Self {
        let owner = format!(
            "spectask-{}-{}",
            std::process::id(),
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let permits = Arc::new(Semaphore::new(settings.max_concurrent_turns.max(1)));
        Self {
            inner: Arc::new(Inner {
                store,
                planners,
                settings,
                owner,
                wake: Notify::new(),
                permits,
            }),
        }
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
