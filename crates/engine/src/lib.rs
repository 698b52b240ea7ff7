//! spectask's workflows: the services that move tasks through their lifecycle by combining the
//! store (durable state) with the runtimes (planners and agents).
//!
//! - [`planning`]: starting, revising and approving a task's specs (transactions in the store),
//!   with the planner chosen per task ([`planning::route`], [`planners`]) and run over an LLM or an
//!   ACP agent.
//! - [`implementation`]: work sessions, agent instances and threads, and the orchestrator that
//!   moves approved tasks into implementation and dispatches work as dependencies allow.
//! - [`agent_tools`] (spectask's MCP server for agents) and [`permissions`] (the desk where a
//!   human answers agents' permission requests).
//! - [`review_git`]: the reviewer's view of the task branch (paged diffs of the task and of a
//!   work session) and the merge into the base branch at approval.
//! - [`worker`]: the background worker. Planning and implementation turns are durable and claimed
//!   under a lease, so a crash or restart re-runs a turn in the same session rather than losing
//!   it or starting a second one.
//!
//! Architecture invariant: the engine writes state only through the store's transactional
//! operations and never keeps anything needed for recovery in memory.

pub mod agent_tools;
mod agent_turn;
mod error;
pub mod implementation;
mod overlap;
pub mod permissions;
pub mod planners;
pub mod planning;
mod projection;
pub mod review_git;
mod traceability;
pub mod worker;
mod workspace;

use std::sync::Arc;
use std::time::Duration;

use spectask_domain::OverlapPolicy;
use spectask_runtimes::agent::AgentRuntime;
use spectask_store::Store;
use tokio::sync::{Notify, Semaphore};

pub use error::EngineError;
pub use permissions::PermissionDesk;
pub use planners::{PlannerProfile, PlannerRegistry};
/// What the runtime says about its agent profiles and a check of one (`Engine::agent_catalog`,
/// `Engine::check_agent`), for the API.
pub use spectask_runtimes::agent::catalog as agent_catalog;

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
    /// This replica's name, the first part of its claim owners (`<replica>/<process>`, unique
    /// per process). Which turns are known dead at start is decided by `predecessor_owner`, not
    /// by this name, so processes sharing it never requeue each other's turns.
    pub replica_id: String,
    /// The least time between two writes of one turn's streamed output. Output gathers into the
    /// next batch while a write is in flight anyway, so this is only a floor on batching: zero
    /// relays a trickle with the latency of one write.
    pub flush_interval: Duration,
    /// Threads running at once in one instance (one SpecTask).
    pub max_parallel_threads: usize,
    /// Instances (SpecTasks in implementation) dispatching at once on this server: the instance
    /// leases this replica holds at most, and its share of the cluster's capacity.
    pub max_active_instances: usize,
    /// How long this replica owns a SpecTask's instance without renewing the lease (renewed every
    /// worker tick); a dead replica's instances are taken over once it has passed.
    pub instance_lease: Duration,
    /// An implementation turn with no agent event for this long is cancelled and counted as a
    /// failure.
    pub turn_timeout: Duration,
    /// Failed implementation turns of one work session retried before it fails for good.
    pub max_turn_retries: i32,
    /// The longest an agent's MCP token lives (it dies sooner with its work session, a newer
    /// set-up of its thread, its instance or the process that minted it; see
    /// `spectask_store::agent_tokens`). A turn that finds its thread's token dead sets the thread
    /// up again, which mints a fresh one.
    pub mcp_token_ttl: Duration,
    /// Work sessions agents may spawn per SpecTask (all spawns count, humans' too).
    pub max_spawned_sessions: u32,
    /// How deep agents may spawn: 1 lets the plan's sessions spawn, 2 lets their spawns spawn
    /// once more, and so on.
    pub max_spawn_depth: u32,
    /// The claim owner of the previous process on this data directory, known dead (the
    /// data-directory lock held by this process proves it ended): its running turns are requeued
    /// at start and its MCP tokens revoked. `None` for a first start, or when unknown (its turns
    /// then wait for their leases to expire).
    pub predecessor_owner: Option<String>,
    /// What happens when two running work sessions of a task edit the same file, for tasks whose
    /// `workspace_config` names no `overlap_policy`: `warn` (an `overlap` event on both) or
    /// `serialize` (the later one waits for the earlier to end).
    pub default_overlap_policy: OverlapPolicy,
    /// Git isolation: where worktrees live, who commits, the defaults.
    pub git: GitSettings,
    /// The longest one check command may run after a work session's turn.
    pub check_timeout: Duration,
    /// Check rounds a work session gets: after the last one still fails, the session fails.
    pub max_check_rounds: i32,
}

/// How work sessions are isolated in git (`workspace/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSettings {
    /// Where work sessions' worktrees are made (`<data-dir>/worktrees`); `None` turns worktree
    /// isolation off (every task runs `shared`).
    pub worktrees_dir: Option<std::path::PathBuf>,
    /// The author and committer of spectask's commits and merges.
    pub author: spectask_git::Signature,
    /// The isolation of a task whose `workspace_config` names none (`worktree` applies only to a
    /// project that is a git repository with a commit; others run `shared`).
    pub default_isolation: spectask_domain::WorkspaceIsolation,
    /// Follow-up turns a work session gets to resolve a merge conflict before it is blocked.
    pub max_merge_attempts: i32,
}

impl Default for GitSettings {
    fn default() -> Self {
        Self {
            worktrees_dir: None,
            author: spectask_git::Signature::default(),
            default_isolation: spectask_domain::WorkspaceIsolation::Worktree,
            max_merge_attempts: 2,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            turn_lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_concurrent_turns: 4,
            max_turn_attempts: 10,
            replica_id: "local".to_owned(),
            flush_interval: Duration::ZERO,
            max_parallel_threads: 4,
            max_active_instances: 8,
            instance_lease: Duration::from_secs(30),
            turn_timeout: Duration::from_secs(600),
            max_turn_retries: 2,
            mcp_token_ttl: Duration::from_secs(24 * 3600),
            max_spawned_sessions: 16,
            max_spawn_depth: 2,
            predecessor_owner: None,
            git: GitSettings::default(),
            default_overlap_policy: OverlapPolicy::Warn,
            check_timeout: Duration::from_secs(600),
            max_check_rounds: 3,
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
    /// When the worktree reaper last ran (it runs at start and every `REAP_INTERVAL`).
    last_reap: std::sync::Mutex<Option<std::time::Instant>>,
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
                last_reap: std::sync::Mutex::new(None),
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

    /// The agent profiles the runtime can run, with the default agent; empty without a runtime.
    pub fn agent_catalog(&self) -> agent_catalog::AgentCatalog {
        self.inner
            .runtime
            .as_ref()
            .map(|runtime| runtime.describe_agents())
            .unwrap_or_default()
    }

    /// Checks agent profile `name` with a throw-away agent's handshake
    /// ([`AgentRuntime::check_agent`]); `None` when no runtime has that profile. The check runs
    /// in a task of its own, so a caller that goes away (a closed request) does not cut it short
    /// and leave its agent behind.
    pub async fn check_agent(&self, name: &str) -> Option<agent_catalog::AgentCheck> {
        let runtime = self.inner.runtime.clone()?;
        let check_id = spectask_domain::InstanceId::from_ulid(ulid::Ulid::new());
        let owned = name.to_owned();
        let started = std::time::Instant::now();
        match tokio::spawn(async move { runtime.check_agent(&owned, &check_id).await }).await {
            Ok(check) => check,
            Err(err) => {
                tracing::error!(agent = %name, %err, "agent check task failed");
                Some(agent_catalog::AgentCheck {
                    name: name.to_owned(),
                    ok: false,
                    handshake: None,
                    duration: started.elapsed(),
                    error: Some(format!("the check itself failed: {err}")),
                })
            }
        }
    }

    /// Whether implementation threads can run here.
    pub fn has_runtime(&self) -> bool {
        self.inner.runtime.is_some()
    }

    /// This process's claim owner, `<replica>/<unique per process>`; a successor on the same
    /// data directory passes it back as [`EngineSettings::predecessor_owner`].
    pub fn owner(&self) -> &str {
        &self.inner.owner
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
